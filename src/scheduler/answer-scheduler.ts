// What the bot core needs from a scheduler. Two implementations: `Scheduler` (scheduler.ts, the
// default: one process, limits in memory) and `RedisScheduler` (src/queue, with VISTYLE_QUEUE_URL:
// limits, the queue cap and positions shared by every front end through Redis).
import type { Job, JobSpec, SchedulerStatus } from './scheduler.js';

export interface AnswerScheduler {
  /**
   * Accepts a job. A refusal (RATE_LIMITED, QUEUE_FULL, SHUTTING_DOWN) is a LimitError, thrown here
   * when the scheduler can decide at once (the local one) or rejecting `result` before any hook
   * runs when the decision is made elsewhere (in Redis). `result` settles exactly once.
   */
  submit<T>(spec: JobSpec<T>): Job<T>;
  /** Cancels a waiting or running job. Returns false when it is unknown or already finished. */
  cancel(id: string, code?: 'CANCELLED' | 'SHUTTING_DOWN'): boolean;
  /** Whether this job is still waiting or running. */
  has(id: string): boolean;
  /** The queue as of now (the Redis implementation: as of its last refresh, at most a second old). */
  status(): SchedulerStatus;
  /** Stops accepting jobs, cancels waiting ones, lets running ones finish for up to `drainMs`. */
  shutdown(drainMs: number): Promise<void>;
}
