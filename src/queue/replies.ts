// Tokens on their way back: each front end reads ONE Redis stream of its own
// (`keys.replies(frontEndId)`), to which workers XADD every event of its jobs in order: started,
// each text delta as it is made, then the result or the error. One XADD per token on the worker,
// one blocking XREAD (many entries per round trip under load) on the front end.
//
// Why a stream per front end and not BullMQ's events (job.updateProgress + QueueEvents): a
// queue's event stream is shared by every job and every front end, so each front end would read
// (and parse) every token of every answer in the deployment, and each progress update is a Lua
// script that also rewrites the job's hash. A reply stream carries only this front end's tokens,
// survives a Redis restart with AOF like the jobs do, and a reader that reconnects continues from
// the last id it saw, so no token is lost or repeated. docs/deploy.md has the measured latency.
import type { Redis } from 'ioredis';
import { VistyleError, type SerializedError } from '../errors.js';
import type { GenerationResult } from '../engine/types.js';

export type ReplyEvent =
  | { type: 'started'; jobId: string; attempt: string; worker: string }
  | { type: 'delta'; jobId: string; attempt: string; text: string }
  | { type: 'done'; jobId: string; attempt: string; result: GenerationResult }
  | { type: 'error'; jobId: string; attempt: string; error: SerializedError };

/** Entries kept in a reply stream at most (approximately); a reader far behind loses the oldest. */
const MAX_LENGTH = 100_000;

/** Appends one event (the worker side). */
export async function sendReply(redis: Redis, stream: string, event: ReplyEvent): Promise<void> {
  const payload =
    event.type === 'delta' ? event.text : event.type === 'started' ? event.worker : JSON.stringify(event.type === 'done' ? event.result : event.error);
  await redis.xadd(stream, 'MAXLEN', '~', MAX_LENGTH, '*', 't', event.type, 'j', event.jobId, 'a', event.attempt, 'd', payload);
}

function parseEntry(fields: string[]): ReplyEvent | undefined {
  const map = new Map<string, string>();
  for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!);
  const type = map.get('t');
  const jobId = map.get('j');
  const attempt = map.get('a') ?? '';
  const data = map.get('d') ?? '';
  if (!jobId) return undefined;
  switch (type) {
    case 'started':
      return { type, jobId, attempt, worker: data };
    case 'delta':
      return { type, jobId, attempt, text: data };
    case 'done':
      return { type, jobId, attempt, result: JSON.parse(data) as GenerationResult };
    case 'error':
      return { type, jobId, attempt, error: JSON.parse(data) as SerializedError };
    default:
      return undefined;
  }
}

/**
 * Reads a front end's reply stream on its own (blocking) connection and hands each event to
 * `onEvent`, in order. Survives Redis restarts: it waits for the connection and goes on from the
 * last id it handled. Entries it handled are trimmed from the stream now and then.
 */
export class ReplyReader {
  private lastId = '0-0';
  private stopped = false;
  private loop: Promise<void> | undefined;
  private handledSinceTrim = 0;

  constructor(
    private readonly redis: Redis,
    readonly stream: string,
    private readonly onEvent: (event: ReplyEvent) => void,
    private readonly onError: (error: unknown) => void = () => undefined,
  ) {}

  start(): void {
    this.loop ??= this.run();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let reply: [string, [string, string[]][]][] | null;
      try {
        reply = (await this.redis.xread('COUNT', 1000, 'BLOCK', 2000, 'STREAMS', this.stream, this.lastId)) as typeof reply;
      } catch (error) {
        if (this.stopped) return;
        this.onError(error);
        await new Promise((resolve) => setTimeout(resolve, 200));
        continue;
      }
      if (!reply) continue;
      for (const [, entries] of reply) {
        for (const [id, fields] of entries) {
          this.lastId = id;
          this.handledSinceTrim++;
          let event: ReplyEvent | undefined;
          try {
            event = parseEntry(fields);
          } catch {
            event = undefined; // a damaged entry is skipped, not fatal
          }
          if (event) this.onEvent(event);
        }
      }
      if (this.handledSinceTrim >= 500) {
        this.handledSinceTrim = 0;
        // Redis >= 6.2: drop what this reader has handled.
        void this.redis.xtrim(this.stream, 'MINID', '~', this.lastId).catch(() => undefined);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.redis.disconnect();
    await this.loop?.catch(() => undefined);
  }
}

export function replyError(error: SerializedError): VistyleError {
  const out = new VistyleError(error.code, error.message, error.details === undefined ? undefined : { details: error.details });
  return out;
}
