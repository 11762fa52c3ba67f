// The one queue in front of the engine. Bottleneck runs at most `slots` jobs at once, in arrival
// order; around it this module keeps what Bottleneck does not: per-user limits (requests queued or
// running, requests per minute), a cap on the waiting line (beyond it users are told the bot is
// busy), each waiting job's position (reported again whenever it changes), a time-out per running
// job, cancellation of a waiting or running job (running ones are aborted through their
// AbortSignal), and a graceful shutdown. Every submitted job's `result` settles exactly once.
import Bottleneck from 'bottleneck';
import { isVistyleError, VistyleError, type ErrorCode } from '../errors.js';
import type { AnswerScheduler } from './answer-scheduler.js';
import { drainRuns } from './drain.js';
import type { BotMetrics } from '../metrics/metrics.js';

export interface SchedulerOptions {
  /** Jobs the engine runs at once. */
  slots: number;
  /** Jobs one user may have waiting or running. */
  userInFlight: number;
  /** Jobs one user may submit per minute (sliding window); 0 = unlimited. */
  userPerMinute: number;
  /** Waiting jobs beyond which submissions are refused with QUEUE_FULL. */
  maxQueueLength: number;
  /** A running job is aborted with TIMEOUT after this long. */
  requestTimeoutMs: number;
  metrics?: BotMetrics;
  /** Clock, for tests. */
  now?: () => number;
}

export interface RunContext {
  /** Aborted on cancel (reason: VistyleError CANCELLED), time-out (TIMEOUT) or shutdown (SHUTTING_DOWN). */
  signal: AbortSignal;
  /** Milliseconds the job waited in the queue. */
  waitedMs: number;
  /**
   * Registers what to do when the job starts over from its beginning: a distributed scheduler's
   * worker died mid-answer and another one took the job, so the text streamed so far is void.
   * The local scheduler never restarts a job (and does not set this).
   */
  onRestart?: (listener: () => void) => void;
}

export interface JobSpec<T> {
  id: string;
  /** Whose limits the job counts against (e.g. `telegram:42`). */
  userKey: string;
  /** Position in the waiting line (1 = next); called on acceptance and whenever it changes. */
  onPosition?: (position: number) => void;
  /** Called when the job starts running. */
  onStart?: () => void;
  /** Something the user should be told while the job waits or runs (distributed schedulers only). */
  onNotice?: (notice: QueueNotice) => void;
  run: (context: RunContext) => Promise<T>;
  /** Exempt from per-user limits (admins). */
  exempt?: boolean;
}

/**
 * answerRestarted: the worker answering died; the answer starts again on another one.
 * queueReconnecting: the queue server (Redis) is unreachable; the request is kept and goes on once
 * it is back.
 */
export type QueueNotice = 'answerRestarted' | 'queueReconnecting';

export interface Job<T> {
  id: string;
  /** Settles once: the run's value, or a VistyleError (CANCELLED, TIMEOUT, SHUTTING_DOWN, or the run's own). */
  result: Promise<T>;
}

/** Why a submission was refused, with what the user should be told. */
export class LimitError extends VistyleError {
  constructor(
    code: Extract<ErrorCode, 'RATE_LIMITED' | 'QUEUE_FULL' | 'SHUTTING_DOWN'>,
    message: string,
    readonly reason: 'in-flight' | 'per-minute' | 'queue-full' | 'shutting-down',
    details: Record<string, unknown> = {},
  ) {
    super(code, message, { details });
  }
}

export interface SchedulerStatus {
  waiting: number;
  inFlight: number;
  oldestWaitMs: number;
  slots: number;
  maxQueueLength: number;
}

interface Entry {
  id: string;
  userKey: string;
  acceptedAt: number;
  state: 'waiting' | 'running' | 'done';
  position: number;
  controller: AbortController;
  spec: JobSpec<unknown>;
  settle: (outcome: { ok: true; value: unknown } | { ok: false; error: unknown }) => void;
  /** Settles when the run itself has returned (the slot is free again). */
  finished?: Promise<void>;
}

const MINUTE_MS = 60_000;

export class Scheduler implements AnswerScheduler {
  private readonly options: Required<Omit<SchedulerOptions, 'metrics'>> & { metrics?: BotMetrics };
  private readonly limiter: Bottleneck;
  private readonly waiting: Entry[] = [];
  private readonly entries = new Map<string, Entry>();
  private readonly inFlightByUser = new Map<string, number>();
  private readonly recentByUser = new Map<string, number[]>();
  private running = 0;
  private closing = false;

  constructor(options: SchedulerOptions) {
    this.options = { now: Date.now, ...options };
    this.limiter = new Bottleneck({ maxConcurrent: options.slots });
  }

  /** Accepts a job or throws a LimitError (RATE_LIMITED, QUEUE_FULL, SHUTTING_DOWN). */
  submit<T>(spec: JobSpec<T>): Job<T> {
    if (this.closing) throw new LimitError('SHUTTING_DOWN', 'the bot is shutting down', 'shutting-down');
    if (this.entries.has(spec.id)) throw new VistyleError('INTERNAL', `duplicate job id ${spec.id}`);
    const now = this.options.now();
    if (!spec.exempt) this.checkUserLimits(spec.userKey, now);
    if (this.waitingBeyondSlots() >= this.options.maxQueueLength) {
      const waiting = this.waitingBeyondSlots();
      throw new LimitError('QUEUE_FULL', `the queue is full (${waiting} waiting)`, 'queue-full', { waiting });
    }

    let settle!: Entry['settle'];
    const result = new Promise<T>((resolve, reject) => {
      settle = (outcome) => (outcome.ok ? resolve(outcome.value as T) : reject(outcome.error));
    });
    const entry: Entry = {
      id: spec.id,
      userKey: spec.userKey,
      acceptedAt: now,
      state: 'waiting',
      position: 0,
      controller: new AbortController(),
      spec: spec as JobSpec<unknown>,
      settle: () => undefined,
    };
    entry.settle = (outcome) => {
      if (entry.state === 'done') return;
      const wasWaiting = entry.state === 'waiting';
      entry.state = 'done';
      this.entries.delete(entry.id);
      this.release(entry.userKey);
      if (wasWaiting) this.removeWaiting(entry);
      settle(outcome);
    };
    this.entries.set(spec.id, entry);
    this.waiting.push(entry);
    this.inFlightByUser.set(spec.userKey, (this.inFlightByUser.get(spec.userKey) ?? 0) + 1);
    if (this.options.userPerMinute > 0) {
      const recent = (this.recentByUser.get(spec.userKey) ?? []).filter((at) => at > now - MINUTE_MS);
      recent.push(now);
      this.recentByUser.set(spec.userKey, recent);
    }
    this.updateGauges();

    void this.limiter.schedule(() => this.execute(entry)).catch(() => undefined);
    // Report the initial position after the caller has the handle.
    queueMicrotask(() => this.reportPositions());
    return { id: spec.id, result };
  }

  /** Cancels a waiting or running job. Returns false when it is unknown or already finished. */
  cancel(id: string, code: 'CANCELLED' | 'SHUTTING_DOWN' = 'CANCELLED'): boolean {
    const entry = this.entries.get(id);
    if (!entry || entry.state === 'done') return false;
    const error = new VistyleError(code, code === 'CANCELLED' ? 'cancelled' : 'the bot is shutting down');
    if (entry.state === 'waiting') {
      entry.controller.abort(error);
      entry.settle({ ok: false, error });
      this.reportPositions();
    } else {
      entry.controller.abort(error);
      // The run should stop promptly on the signal; its result settles now either way.
      entry.settle({ ok: false, error });
    }
    return true;
  }

  /** Whether this job is still waiting or running. */
  has(id: string): boolean {
    return this.entries.has(id);
  }

  status(): SchedulerStatus {
    const now = this.options.now();
    const oldest = this.waiting[0];
    return {
      waiting: this.waitingBeyondSlots(),
      inFlight: this.running,
      oldestWaitMs: oldest ? now - oldest.acceptedAt : 0,
      slots: this.options.slots,
      maxQueueLength: this.options.maxQueueLength,
    };
  }

  /**
   * Stops accepting jobs, cancels waiting ones with SHUTTING_DOWN, lets running ones finish for up
   * to `drainMs`, then aborts them, and waits for their runs to return.
   */
  async shutdown(drainMs: number): Promise<void> {
    this.closing = true;
    for (const entry of [...this.waiting]) this.cancel(entry.id, 'SHUTTING_DOWN');
    const running = [...this.entries.values()].filter((entry) => entry.state === 'running');
    const runs = running.map((entry) => entry.finished ?? Promise.resolve());
    await drainRuns(runs, drainMs, () => {
      for (const entry of running) this.cancel(entry.id, 'SHUTTING_DOWN');
    });
    await this.limiter.stop({ dropWaitingJobs: true }).catch(() => undefined);
  }

  private checkUserLimits(userKey: string, now: number): void {
    const inFlight = this.inFlightByUser.get(userKey) ?? 0;
    if (inFlight >= this.options.userInFlight) {
      throw new LimitError('RATE_LIMITED', `user has ${inFlight} request(s) in progress`, 'in-flight', { inFlight });
    }
    if (this.options.userPerMinute > 0) {
      const recent = (this.recentByUser.get(userKey) ?? []).filter((at) => at > now - MINUTE_MS);
      if (recent.length > 0) this.recentByUser.set(userKey, recent);
      else this.recentByUser.delete(userKey);
      if (recent.length >= this.options.userPerMinute) {
        const retryAfterMs = recent[0]! + MINUTE_MS - now;
        throw new LimitError('RATE_LIMITED', `user made ${recent.length} requests in the last minute`, 'per-minute', {
          retryAfterMs,
        });
      }
    }
  }

  private async execute(entry: Entry): Promise<void> {
    if (entry.state !== 'waiting') return; // cancelled while waiting: skip, the slot moves on
    const now = this.options.now();
    this.removeWaiting(entry);
    entry.state = 'running';
    this.running += 1;
    this.updateGauges();
    this.options.metrics?.queueWait.observe((now - entry.acceptedAt) / 1000);
    this.reportPositions();

    const { controller } = entry;
    const timer = setTimeout(
      () => controller.abort(new VistyleError('TIMEOUT', `the request ran longer than ${this.options.requestTimeoutMs} ms`)),
      this.options.requestTimeoutMs,
    );
    const onAbort = () => entry.settle({ ok: false, error: controller.signal.reason });
    controller.signal.addEventListener('abort', onAbort, { once: true });
    let markFinished!: () => void;
    entry.finished = new Promise<void>((resolve) => (markFinished = resolve));
    try {
      try {
        entry.spec.onStart?.();
      } catch {
        // a hook's failure must not lose the job
      }
      const value = await entry.spec.run({ signal: controller.signal, waitedMs: now - entry.acceptedAt });
      entry.settle({ ok: true, value });
    } catch (error) {
      // An abort's own reason wins over whatever the run threw while stopping.
      const reason = controller.signal.aborted ? controller.signal.reason : error;
      entry.settle({ ok: false, error: isVistyleError(reason) ? reason : error });
    } finally {
      clearTimeout(timer);
      controller.signal.removeEventListener('abort', onAbort);
      this.running -= 1;
      this.updateGauges();
      markFinished();
    }
  }

  private release(userKey: string): void {
    const count = (this.inFlightByUser.get(userKey) ?? 1) - 1;
    if (count > 0) this.inFlightByUser.set(userKey, count);
    else this.inFlightByUser.delete(userKey);
  }

  private removeWaiting(entry: Entry): void {
    const index = this.waiting.indexOf(entry);
    if (index >= 0) this.waiting.splice(index, 1);
    this.updateGauges();
  }

  /**
   * Jobs that will really wait: the waiting line less the slots that are free (jobs accepted in
   * the same tick sit in the line until Bottleneck starts them).
   */
  private waitingBeyondSlots(): number {
    return Math.max(0, this.waiting.length - Math.max(0, this.options.slots - this.running));
  }

  /** Tells every waiting job whose position changed (1 = next; jobs about to start get none). */
  private reportPositions(): void {
    const free = Math.max(0, this.options.slots - this.running);
    this.waiting.forEach((entry, index) => {
      const position = index + 1 - free;
      if (position <= 0 || entry.position === position) return;
      entry.position = position;
      try {
        entry.spec.onPosition?.(position);
      } catch {
        // a hook's failure must not disturb the queue
      }
    });
  }

  private updateGauges(): void {
    this.options.metrics?.queueLength.set(this.waitingBeyondSlots());
    this.options.metrics?.inFlight.set(this.running);
  }
}
