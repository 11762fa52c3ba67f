// One edit lane per chat. Platforms punish edit storms (Telegram answers 429 with a retry_after and,
// if pushed, multi-minute flood bans), so every streamed edit and every final send of a chat goes
// through one serial lane that:
// - keeps at least `intervalMs` between the starts of two operations;
// - coalesces streamed edits: only the latest text of a message is ever sent;
// - on a rate-limit error waits the platform's retry_after and doubles the gap (decaying back
//   to the minimum after a run of successes);
// - never loses the final text: final operations are retried after rate limits and settle only
//   when sent (or with the platform's non-rate-limit error, for the adapter to fall back on).
import { VistyleError } from '../../src/errors.js';
import { redactSecrets, type Logger } from '../../src/log.js';

export interface EditSchedulerOptions {
  /** Minimum gap between the starts of two operations in this chat. */
  minIntervalMs: number;
  /** The gap never grows past this after rate limits (default 30 s). */
  maxIntervalMs?: number;
  /**
   * If `error` is a rate limit, the wait the platform asked for in ms (Telegram
   * `parameters.retry_after * 1000`, Discord `retry_after * 1000`); otherwise undefined.
   */
  retryAfterMs?: (error: unknown) => number | undefined;
  /** Rate-limit retries of one final operation before it rejects (default 8). */
  maxFinalAttempts?: number;
  /** Successful operations in a row after which a grown gap halves (default 10). */
  decayAfter?: number;
  /**
   * Optional admission gate shared by several lanes (e.g. Telegram's bot-wide ~30 messages/s):
   * awaited before an operation starts, so the gap is counted from when it really goes out. A
   * streamed update waiting here still takes newer text for its key; one whose key gets sealed
   * meanwhile is dropped.
   */
  admit?: (kind: 'update' | 'final') => Promise<void>;
  /**
   * Log-safe fields for a failed operation. Platform errors can carry credentials (Discord
   * webhook URLs hold the interaction token, Telegram URLs the bot token), so raw errors are
   * never logged; the default keeps only the name and a secret-redacted message.
   */
  describeError?: (error: unknown) => Record<string, unknown>;
  logger?: Logger;
}

function defaultErrorFields(error: unknown): Record<string, unknown> {
  if (error instanceof Error) return { type: error.name, message: redactSecrets(error.message) };
  return { type: typeof error, message: redactSecrets(String(error)) };
}

type Send = (text: string) => Promise<void>;

interface UpdateEntry {
  kind: 'update';
  key: string;
  text: string;
  send: Send;
}

interface FinalEntry {
  kind: 'final';
  key: string | undefined;
  op: () => Promise<unknown>;
  attempts: number;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Entry = UpdateEntry | FinalEntry;

export class EditScheduler {
  private readonly minIntervalMs: number;
  private readonly maxIntervalMs: number;
  private readonly maxFinalAttempts: number;
  private readonly decayAfter: number;
  private readonly retryAfterMsOf: (error: unknown) => number | undefined;
  private readonly admit: ((kind: 'update' | 'final') => Promise<void>) | undefined;
  private readonly logger: Logger | undefined;
  private readonly describeError: (error: unknown) => Record<string, unknown>;
  /** The entry waiting at the admission gate, if any. */
  private admitting: Entry | undefined;

  private readonly queue: Entry[] = [];
  /** Keys whose final operation was queued: later updates for them are dropped. */
  private readonly sealed = new Set<string>();
  private gapMs: number;
  private notBefore = 0;
  private successes = 0;
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private lastActivity = Date.now();

  constructor(options: EditSchedulerOptions) {
    this.minIntervalMs = options.minIntervalMs;
    this.maxIntervalMs = Math.max(options.maxIntervalMs ?? 30_000, options.minIntervalMs);
    this.maxFinalAttempts = options.maxFinalAttempts ?? 8;
    this.decayAfter = options.decayAfter ?? 10;
    this.retryAfterMsOf = options.retryAfterMs ?? (() => undefined);
    this.admit = options.admit;
    this.logger = options.logger;
    this.describeError = options.describeError ?? defaultErrorFields;
    this.gapMs = options.minIntervalMs;
  }

  /** The current gap between operations (grows after rate limits). */
  get intervalMs(): number {
    return this.gapMs;
  }

  /** Operations waiting (for tests and idle detection). */
  get pending(): number {
    return this.queue.length + (this.running ? 1 : 0);
  }

  /** Milliseconds since this lane last did anything, 0 while busy. */
  idleForMs(now = Date.now()): number {
    return this.pending > 0 ? 0 : now - this.lastActivity;
  }

  /**
   * Show `text` in the message identified by `key` soon. Replaces text still waiting for that key;
   * dropped when the key's final operation is already queued. Best effort: a failed edit is logged
   * and forgotten (the next update or the final carries newer text).
   */
  update(key: string, text: string, send: Send): void {
    if (this.closed || this.sealed.has(key)) return;
    const admitting = this.admitting?.kind === 'update' && this.admitting.key === key ? this.admitting : undefined;
    const waiting = admitting ?? this.queue.find((entry): entry is UpdateEntry => entry.kind === 'update' && entry.key === key);
    if (waiting) {
      waiting.text = text;
      waiting.send = send;
    } else {
      this.queue.push({ kind: 'update', key, text, send });
    }
    this.pump();
  }

  /**
   * Run a must-deliver operation (the final edit of `key`, or with no key any send that must not
   * be lost, such as the continuation messages of a long answer). It supersedes pending updates
   * of `key` and seals it. Rate limits are waited out and retried; the promise rejects only with a
   * non-rate-limit error from `op` (or after `maxFinalAttempts` rate limits, or `close()`).
   */
  final<T>(key: string | undefined, op: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new VistyleError('CANCELLED', 'edit scheduler closed'));
    if (key !== undefined) {
      this.sealed.add(key);
      const index = this.queue.findIndex((entry) => entry.kind === 'update' && entry.key === key);
      if (index >= 0) this.queue.splice(index, 1);
    }
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ kind: 'final', key, op, attempts: 0, resolve: resolve as (value: unknown) => void, reject });
      this.pump();
    });
  }

  /** Drop waiting updates of `key` and forget it (e.g. the message was deleted). */
  forget(key: string): void {
    const index = this.queue.findIndex((entry) => entry.kind === 'update' && entry.key === key);
    if (index >= 0) this.queue.splice(index, 1);
    this.sealed.delete(key);
  }

  /** Stop: waiting final operations reject with CANCELLED, updates are dropped. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const entry of this.queue.splice(0)) {
      if (entry.kind === 'final') entry.reject(new VistyleError('CANCELLED', 'edit scheduler closed'));
    }
  }

  private pump(): void {
    if (this.running || this.timer || this.closed || this.queue.length === 0) return;
    const wait = this.notBefore - Date.now();
    if (wait > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, wait);
      return;
    }
    const entry = this.queue.shift()!;
    this.running = true;
    void this.admitThenExecute(entry).finally(() => {
      this.running = false;
      this.lastActivity = Date.now();
      this.pump();
    });
  }

  private async admitThenExecute(entry: Entry): Promise<void> {
    if (this.admit) {
      this.admitting = entry;
      try {
        await this.admit(entry.kind);
      } catch {
        // a broken gate must not stop the lane
      } finally {
        this.admitting = undefined;
      }
      if (this.closed) {
        if (entry.kind === 'final') entry.reject(new VistyleError('CANCELLED', 'edit scheduler closed'));
        return;
      }
      if (entry.kind === 'update' && this.sealed.has(entry.key)) return; // its final is queued
    }
    this.notBefore = Date.now() + this.gapMs;
    await this.execute(entry);
  }

  private async execute(entry: Entry): Promise<void> {
    try {
      const value = entry.kind === 'update' ? await entry.send(entry.text) : await entry.op();
      this.onSuccess();
      if (entry.kind === 'final') entry.resolve(value);
    } catch (error) {
      const retryAfter = this.retryAfterMsOf(error);
      if (retryAfter !== undefined) {
        this.onRateLimit(retryAfter);
        if (entry.kind === 'update') {
          // Retry unless newer text for this message has arrived meanwhile (it will be sent instead).
          const superseded = this.sealed.has(entry.key) || this.queue.some((e) => e.kind === 'update' && e.key === entry.key);
          if (!superseded) this.queue.unshift(entry);
          return;
        }
        entry.attempts += 1;
        if (entry.attempts < this.maxFinalAttempts) {
          this.queue.unshift(entry);
          return;
        }
      } else if (entry.kind === 'update') {
        this.logger?.warn({ error: this.describeError(error), key: entry.key }, 'streamed edit failed; the next one carries newer text');
        return;
      }
      (entry as FinalEntry).reject(error);
    }
  }

  private onSuccess(): void {
    this.successes += 1;
    if (this.gapMs > this.minIntervalMs && this.successes >= this.decayAfter) {
      this.gapMs = Math.max(this.minIntervalMs, Math.floor(this.gapMs / 2));
      this.successes = 0;
    }
  }

  private onRateLimit(retryAfterMs: number): void {
    this.successes = 0;
    this.gapMs = Math.min(this.maxIntervalMs, Math.max(this.gapMs * 2, this.minIntervalMs, 1));
    // Wait what the platform asked for (plus a small margin), and at least the grown gap.
    this.notBefore = Date.now() + Math.max(retryAfterMs + 50, this.gapMs);
    this.logger?.warn({ retryAfterMs, gapMs: this.gapMs }, 'rate limited by the platform; slowing down');
  }
}

/** One EditScheduler per chat, created on demand and dropped after being idle for a while. */
export class EditSchedulers {
  private readonly lanes = new Map<string, EditScheduler>();

  constructor(
    private readonly optionsFor: (chatKey: string) => EditSchedulerOptions,
    private readonly idleDropMs = 10 * 60_000,
  ) {}

  forChat(chatKey: string): EditScheduler {
    this.sweep();
    let lane = this.lanes.get(chatKey);
    if (!lane) {
      lane = new EditScheduler(this.optionsFor(chatKey));
      this.lanes.set(chatKey, lane);
    }
    return lane;
  }

  get size(): number {
    return this.lanes.size;
  }

  closeAll(): void {
    for (const lane of this.lanes.values()) lane.close();
    this.lanes.clear();
  }

  private sweep(): void {
    const now = Date.now();
    for (const [key, lane] of this.lanes) {
      if (lane.idleForMs(now) > this.idleDropMs) this.lanes.delete(key);
    }
  }
}
