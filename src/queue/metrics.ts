// Prometheus metrics of the queue roles, registered into the role's registry (BotMetrics'; the
// HTTP module's once it has one). Front end: queue depth and jobs by state per queue, workers
// alive and their slots, each worker's totals (answers, tokens: rate() of these is the per-worker
// throughput), whether Redis is reachable. Worker: its own answers, tokens, running jobs, speed.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Queue } from 'bullmq';
import type { WorkerDirectory } from './registry.js';

export interface FrontEndMetricsSource {
  directory: WorkerDirectory;
  queues: () => Queue[];
  redisUp: () => boolean;
}

const JOB_STATES = ['waiting', 'active', 'delayed', 'prioritized', 'failed', 'completed'] as const;

export function registerFrontEndMetrics(registry: Registry, source: FrontEndMetricsSource): void {
  const registers = [registry];
  new Gauge({
    name: 'vistyle_queue_jobs',
    help: 'Jobs in the shared queues by queue and state (waiting = queue depth)',
    labelNames: ['queue', 'state'],
    registers,
    async collect() {
      this.reset();
      for (const queue of source.queues()) {
        try {
          const counts = await queue.getJobCounts(...JOB_STATES);
          for (const state of JOB_STATES) this.set({ queue: queue.name, state }, counts[state] ?? 0);
        } catch {
          // Redis down: the gauge stays empty for this scrape (vistyle_queue_redis_up says why)
        }
      }
    },
  });
  new Gauge({
    name: 'vistyle_queue_workers_alive',
    help: 'Workers whose heartbeat is current (draining ones included)',
    registers,
    collect() {
      this.set(source.directory.alive.length);
    },
  });
  new Gauge({
    name: 'vistyle_queue_worker_slots',
    help: 'Jobs the alive, non-draining workers run at once, by queue',
    labelNames: ['queue'],
    registers,
    collect() {
      this.reset();
      const byQueue = new Map<string, number>();
      for (const worker of source.directory.alive) if (!worker.draining) byQueue.set(worker.queue, (byQueue.get(worker.queue) ?? 0) + worker.slots);
      for (const [queue, slots] of byQueue) this.set({ queue }, slots);
    },
  });
  const perWorker = (name: string, help: string, field: 'jobs' | 'tokens' | 'failed') =>
    new Gauge({
      name,
      help,
      labelNames: ['worker'],
      registers,
      collect() {
        this.reset();
        for (const worker of source.directory.alive) this.set({ worker: worker.name }, worker[field]);
      },
    });
  perWorker('vistyle_queue_worker_answers_total', 'Answers each alive worker finished since it started (rate() = its throughput)', 'jobs');
  perWorker('vistyle_queue_worker_tokens_total', 'Tokens each alive worker generated since it started (rate() = its tokens per second)', 'tokens');
  perWorker('vistyle_queue_worker_failed_total', 'Jobs that failed on each alive worker since it started', 'failed');
  new Gauge({
    name: 'vistyle_queue_redis_up',
    help: '1 while the connection to Redis is ready',
    registers,
    collect() {
      this.set(source.redisUp() ? 1 : 0);
    },
  });
}

export class WorkerMetrics {
  readonly jobs: Counter<'outcome'>;
  readonly tokens: Counter;
  readonly running: Gauge;
  readonly tokensPerSecond: Histogram;
  readonly queueWait: Histogram;

  constructor(registry: Registry, redisUp: () => boolean) {
    const registers = [registry];
    this.jobs = new Counter({ name: 'vistyle_worker_jobs_total', help: 'Jobs this worker ended, by outcome (answered, cancelled, failed)', labelNames: ['outcome'], registers });
    this.tokens = new Counter({ name: 'vistyle_worker_tokens_total', help: 'Tokens this worker generated', registers });
    this.running = new Gauge({ name: 'vistyle_worker_running', help: 'Jobs this worker runs now', registers });
    this.tokensPerSecond = new Histogram({
      name: 'vistyle_worker_tokens_per_second',
      help: 'Decoding speed per answer on this worker',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
      registers,
    });
    this.queueWait = new Histogram({
      name: 'vistyle_worker_queue_wait_seconds',
      help: 'Time from the front end accepting a request to this worker starting it',
      buckets: [0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
      registers,
    });
    new Gauge({
      name: 'vistyle_queue_redis_up',
      help: '1 while the connection to Redis is ready',
      registers,
      collect() {
        this.set(redisUp() ? 1 : 0);
      },
    });
  }
}
