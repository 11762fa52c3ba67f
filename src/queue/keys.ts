// Every Redis key and BullMQ queue name of one deployment, under VISTYLE_QUEUE_PREFIX.
//
// Routing: a BullMQ job waits in exactly one list and any worker of that queue may take it, so the
// capability a job needs has to be in the queue's name. Each worker serves one queue named after
// its set of LoRA adapters (its "profile"): workers with the same adapters share a queue (the
// usual case: one queue, plain BullMQ), and the front end puts a job naming adapter X on the
// least-loaded queue whose profile has X (see routing.ts).
import { createHash } from 'node:crypto';

/** BullMQ queue name for workers that serve exactly these adapters. */
export function profileQueueName(adapters: readonly string[]): string {
  const sorted = [...new Set(adapters)].sort();
  if (sorted.length === 0) return 'answers-base';
  return `answers-${createHash('sha1').update(sorted.join('\n')).digest('hex').slice(0, 12)}`;
}

/** Adapter names are folder names; only these characters travel in jobs and queue names. */
export const ADAPTER_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export class QueueKeys {
  constructor(readonly prefix: string) {}

  /** BullMQ's own key prefix (its keys are `${prefix}:${queue}:...`). */
  get bullPrefix(): string {
    return this.prefix;
  }

  // limits (admission.ts)
  userInFlight(userKey: string): string {
    return `${this.prefix}:limits:inflight:${userKey}`;
  }
  userRecent(userKey: string): string {
    return `${this.prefix}:limits:recent:${userKey}`;
  }
  /** Admitted requests no worker has started yet (member: request id, score: lease expiry). */
  get waiting(): string {
    return `${this.prefix}:limits:waiting`;
  }
  /** Requests a worker is running (member: request id, score: lease expiry). */
  get running(): string {
    return `${this.prefix}:limits:running`;
  }

  // workers (registry.ts)
  /** Alive workers (member: worker id, score: heartbeat expiry). */
  get workers(): string {
    return `${this.prefix}:workers`;
  }
  /** Slots of each worker (field: worker id), 0 while it drains. */
  get capacity(): string {
    return `${this.prefix}:workers:capacity`;
  }
  worker(id: string): string {
    return `${this.prefix}:worker:${id}`;
  }

  // jobs
  /** A picture of a job, deleted when the job ends (and expiring anyway). */
  blob(jobId: string, index: number): string {
    return `${this.prefix}:blob:${jobId}:${index}`;
  }
  /** Set when a job is cancelled, for a worker that starts it afterwards or missed the message. */
  cancelled(jobId: string): string {
    return `${this.prefix}:cancelled:${jobId}`;
  }
  /** Pub/sub channel of cancellations (message: job id). */
  get cancelChannel(): string {
    return `${this.prefix}:cancel`;
  }
  /** The stream a front end reads its jobs' events from (started, deltas, result). */
  replies(frontEndId: string): string {
    return `${this.prefix}:replies:${frontEndId}`;
  }
}
