// Which queue a job goes to (see keys.ts for why queues are per adapter set). Among the queues of
// the alive, non-draining workers that can run the job (every worker runs the base model; a job
// naming adapter X needs a worker that advertised X), the one with the fewest waiting jobs per
// slot. Workers of one profile share a queue, so within it BullMQ balances by itself.
import { profileQueueName } from './keys.js';
import type { WorkerAd } from './registry.js';

export type Route = { queue: string } | { queue: null; reason: 'no-worker-with-adapter' };

export function chooseQueue(adapter: string | null, workers: readonly WorkerAd[], waitingByQueue: ReadonlyMap<string, number>): Route {
  const slotsByQueue = new Map<string, number>();
  for (const worker of workers) {
    if (worker.draining || worker.slots <= 0) continue;
    if (adapter !== null && !worker.adapters.includes(adapter)) continue;
    slotsByQueue.set(worker.queue, (slotsByQueue.get(worker.queue) ?? 0) + worker.slots);
  }
  let best: { queue: string; load: number } | undefined;
  for (const [queue, slots] of [...slotsByQueue].sort(([a], [b]) => a.localeCompare(b))) {
    const load = ((waitingByQueue.get(queue) ?? 0) + 1) / slots;
    if (!best || load < best.load) best = { queue, load };
  }
  if (best) return { queue: best.queue };
  if (adapter !== null) {
    // Draining or momentarily gone workers with the adapter: wait in their queue for them (or a
    // replacement) rather than refuse; none at all: nobody can run it.
    const known = workers.find((worker) => worker.adapters.includes(adapter));
    return known ? { queue: known.queue } : { queue: null, reason: 'no-worker-with-adapter' };
  }
  // No worker at all right now (all restarting): wait in the base queue, or any known one.
  return { queue: workers[0]?.queue ?? profileQueueName([]) };
}
