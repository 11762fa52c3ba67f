// How the RedisScheduler and the RemoteEngine of one front end find each other for a request.
// The bot core calls `scheduler.submit({ run })` and, inside `run`, `engine.generate(request)`,
// exactly as with the local engine; the scheduler runs `run` inside this context, so the remote
// engine knows which request a generate() call belongs to and can report the job's life back to
// the scheduler: its position in the shared queue, when a worker started it, and when it started
// over on another worker. A RemoteEngine used outside a RedisScheduler simply has no link.
import { AsyncLocalStorage } from 'node:async_hooks';

export interface QueueJobLink {
  requestId: string;
  userKey: string;
  acceptedAt: number;
  /** 1 = next in its queue. */
  position(position: number): void;
  /** A worker started the job (called for each job of the request; the first one counts). */
  started(): void;
  /** The job started over on another worker: text so far is void. */
  restarted(): void;
}

export const queueJobContext = new AsyncLocalStorage<QueueJobLink>();
