// The state of an adapter's connection to its platform (PlatformAdapter.status(), read by the
// HTTP helper's /readyz), the back-off between reconnection attempts, and logging of an outage at
// a sane rate: one warning when the connection is lost, then one line a minute while it stays
// down, and one line when it is back — never a line per attempt.
import type { AdapterStatus, Platform } from '../../src/bot/types.js';
import type { Logger } from '../../src/log.js';

export interface BackoffOptions {
  /** Wait before the second attempt (the first retry is immediate). Default 1000 ms. */
  initialMs?: number;
  /** The wait doubles per failed attempt up to this. Default 60 s. */
  maxMs?: number;
}

/** Exponential back-off with ±20 % jitter; `attempt` 0 is the first try (no wait). */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  if (attempt <= 0) return 0;
  const initial = options.initialMs ?? 1000;
  const max = options.maxMs ?? 60_000;
  const base = Math.min(max, initial * 2 ** (attempt - 1));
  return Math.round(base * (0.8 + 0.4 * random()));
}

export interface ConnectionTrackerOptions {
  platform: Platform;
  logger: Logger;
  /** What the platform connection is called in log lines ("discord gateway", "Telegram Bot API"). */
  what: string;
  /** Least time between two "still down" lines (default 60 s). */
  reportEveryMs?: number;
  now?: () => number;
}

export class ConnectionTracker {
  private state: AdapterStatus['state'] = 'starting';
  private downSince: number | null = null;
  private failures = 0;
  private lastError: string | null = null;
  private lastErrorAt: number | null = null;
  private lastReportAt = 0;
  /** The current outage (or failing start) has had its first warning. */
  private outageReported = false;
  private everConnected = false;
  private readonly now: () => number;
  private readonly reportEveryMs: number;

  constructor(private readonly options: ConnectionTrackerOptions) {
    this.now = options.now ?? Date.now;
    this.reportEveryMs = options.reportEveryMs ?? 60_000;
  }

  status(): AdapterStatus {
    return {
      platform: this.options.platform,
      state: this.state,
      connected: this.state === 'connected',
      reconnectingSince: this.state === 'connected' || this.state === 'stopped' ? null : this.downSince,
      lastError: this.lastError,
      lastErrorAt: this.lastErrorAt,
    };
  }

  /** Failed attempts since the last success (the back-off's attempt number). */
  get failedAttempts(): number {
    return this.failures;
  }

  get stopped(): boolean {
    return this.state === 'stopped';
  }

  /** start() began connecting. */
  starting(): void {
    if (this.state === 'stopped') return;
    this.state = 'starting';
    this.downSince ??= this.now();
  }

  /** Receiving events. Logs the end of an outage (not the first connection: the adapter does). */
  connected(): void {
    if (this.state === 'stopped') return;
    const wasDown = this.everConnected && this.downSince !== null;
    if (wasDown) {
      this.options.logger.info(
        { platform: this.options.platform, attempts: this.failures, downMs: this.now() - this.downSince! },
        `${this.options.what} connection is back`,
      );
    }
    this.state = 'connected';
    this.everConnected = true;
    this.downSince = null;
    this.failures = 0;
    this.lastReportAt = 0;
    this.outageReported = false;
  }

  /** An error worth showing in status() and the outage log (already log-safe). */
  error(message: string): void {
    this.lastError = message;
    this.lastErrorAt = this.now();
  }

  /**
   * An attempt failed or the connection was lost; `nextRetryMs` is the wait before the next one.
   * Logs the first failure of an outage as a warning and then at most one line per `reportEveryMs`.
   */
  failed(nextRetryMs?: number, detail?: string): void {
    if (this.state === 'stopped') return;
    if (detail) this.error(detail);
    const now = this.now();
    const first = !this.outageReported;
    this.outageReported = true;
    if (this.state === 'connected' || this.downSince === null) this.downSince = now;
    if (this.state !== 'starting') this.state = 'reconnecting';
    this.failures += 1;
    if (!first && now - this.lastReportAt < this.reportEveryMs) return;
    this.lastReportAt = now;
    const fields = {
      platform: this.options.platform,
      attempts: this.failures,
      downMs: now - this.downSince,
      ...(nextRetryMs !== undefined ? { nextRetryMs } : {}),
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
    if (first) this.options.logger.warn(fields, `${this.options.what} unreachable; retrying with back-off`);
    else this.options.logger.warn(fields, `${this.options.what} still unreachable; retrying`);
  }

  /** The adapter stopped (or gave up starting). */
  stop(): void {
    this.state = 'stopped';
  }
}

/** A sleep that ends early (resolving false) when `signal` aborts. */
export function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    timer.unref();
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
