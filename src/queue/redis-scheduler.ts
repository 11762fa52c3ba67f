// The scheduler of a front end (AnswerScheduler, like the in-process Scheduler) whose limits and
// queue hold for the whole deployment: admission is one Lua script in Redis (admission.ts), the
// waiting line is the shared BullMQ queue (positions come from it, through the RemoteEngine the
// run calls), and a job "starts" when a worker takes it, which is also when its time-out starts.
// Every submitted job's `result` settles exactly once. While Redis is unreachable nothing is
// dropped: requests keep their place (commands wait in the client's offline queue) and their
// users are told (notice 'queueReconnecting').
import { VistyleError, isVistyleError } from '../errors.js';
import { errorFields, type Logger } from '../log.js';
import type { AnswerScheduler } from '../scheduler/answer-scheduler.js';
import { drainRuns } from '../scheduler/drain.js';
import type { BotMetrics } from '../metrics/metrics.js';
import { LimitError, type Job, type JobSpec, type SchedulerStatus } from '../scheduler/scheduler.js';
import type { Admissions, QueueCounts } from './admission.js';
import { queueJobContext, type QueueJobLink } from './job-context.js';

export interface RedisSchedulerOptions {
  admissions: Admissions;
  userInFlight: number;
  userPerMinute: number;
  maxQueueLength: number;
  requestTimeoutMs: number;
  logger: Logger;
  metrics?: BotMetrics;
}

interface Entry {
  id: string;
  userKey: string;
  acceptedAt: number;
  state: 'admitting' | 'waiting' | 'running' | 'done';
  position: number;
  controller: AbortController;
  spec: JobSpec<unknown>;
  restartListeners: Array<() => void>;
  timer: NodeJS.Timeout | undefined;
  settle: (outcome: { ok: true; value: unknown } | { ok: false; error: unknown }) => void;
  /** Settles when the run has returned. */
  finished: Promise<void>;
}

export class RedisScheduler implements AnswerScheduler {
  private readonly entries = new Map<string, Entry>();
  private closing = false;
  private counts: QueueCounts = { admitted: 0, running: 0, capacity: 0, workers: 0, waiting: 0 };

  constructor(private readonly o: RedisSchedulerOptions) {}

  submit<T>(spec: JobSpec<T>): Job<T> {
    if (this.closing) throw new LimitError('SHUTTING_DOWN', 'the bot is shutting down', 'shutting-down');
    if (this.entries.has(spec.id)) throw new VistyleError('INTERNAL', `duplicate job id ${spec.id}`);
    let settleResult!: Entry['settle'];
    const result = new Promise<T>((resolve, reject) => {
      settleResult = (outcome) => (outcome.ok ? resolve(outcome.value as T) : reject(outcome.error));
    });
    let markFinished!: () => void;
    const entry: Entry = {
      id: spec.id,
      userKey: spec.userKey,
      acceptedAt: Date.now(),
      state: 'admitting',
      position: 0,
      controller: new AbortController(),
      spec: spec as JobSpec<unknown>,
      restartListeners: [],
      timer: undefined,
      settle: () => undefined,
      finished: new Promise<void>((resolve) => (markFinished = resolve)),
    };
    entry.settle = (outcome) => {
      if (entry.state === 'done') return;
      entry.state = 'done';
      clearTimeout(entry.timer);
      this.entries.delete(entry.id);
      settleResult(outcome);
    };
    this.entries.set(spec.id, entry);
    void this.admitAndRun(entry).finally(markFinished);
    return { id: spec.id, result };
  }

  private async admitAndRun(entry: Entry): Promise<void> {
    let admitted = false;
    try {
      const admission = await this.o.admissions.admit(
        entry.id,
        entry.userKey,
        { userInFlight: this.o.userInFlight, userPerMinute: this.o.userPerMinute, maxQueueLength: this.o.maxQueueLength },
        entry.spec.exempt === true,
      );
      if (!admission.ok) {
        entry.settle({ ok: false, error: limitError(admission) });
        return;
      }
      admitted = true;
      if (entry.state === 'done') return; // cancelled while Redis decided
      entry.state = 'waiting';
      this.report(entry, admission.position);
      const link: QueueJobLink = {
        requestId: entry.id,
        userKey: entry.userKey,
        acceptedAt: entry.acceptedAt,
        position: (position) => {
          if (entry.state === 'waiting') this.report(entry, position);
        },
        started: () => this.started(entry),
        restarted: () => this.restarted(entry),
      };
      const value = await queueJobContext.run(link, () =>
        entry.spec.run({
          signal: entry.controller.signal,
          waitedMs: 0,
          onRestart: (listener) => entry.restartListeners.push(listener),
        }),
      );
      entry.settle({ ok: true, value });
    } catch (error) {
      const { signal } = entry.controller;
      const reason = signal.aborted ? signal.reason : error;
      entry.settle({ ok: false, error: isVistyleError(reason) ? reason : error });
    } finally {
      if (admitted) {
        await this.o.admissions.release(entry.id, entry.userKey).catch((error: unknown) => {
          this.o.logger.warn({ error: errorFields(error), requestId: entry.id }, 'could not release the request in Redis (its lease will lapse)');
        });
      }
    }
  }

  private report(entry: Entry, position: number): void {
    if (position <= 0 || position === entry.position) return;
    entry.position = position;
    try {
      entry.spec.onPosition?.(position);
    } catch {
      // a hook's failure must not disturb the queue
    }
  }

  private started(entry: Entry): void {
    if (entry.state !== 'waiting') return;
    entry.state = 'running';
    this.o.metrics?.queueWait.observe((Date.now() - entry.acceptedAt) / 1000);
    this.startTimer(entry);
    try {
      entry.spec.onStart?.();
    } catch {
      // a hook's failure must not lose the job
    }
  }

  private restarted(entry: Entry): void {
    if (entry.state === 'done') return;
    for (const listener of entry.restartListeners) listener();
    this.notice(entry, 'answerRestarted');
    if (entry.state === 'running') this.startTimer(entry); // the new attempt gets the whole time again
  }

  private startTimer(entry: Entry): void {
    clearTimeout(entry.timer);
    const { controller } = entry;
    entry.timer = setTimeout(() => {
      const error = new VistyleError('TIMEOUT', `the request ran longer than ${this.o.requestTimeoutMs} ms`);
      controller.abort(error);
      entry.settle({ ok: false, error });
    }, this.o.requestTimeoutMs);
  }

  private notice(entry: Entry, notice: 'answerRestarted' | 'queueReconnecting'): void {
    try {
      entry.spec.onNotice?.(notice);
    } catch {
      // a hook's failure must not disturb the queue
    }
  }

  /** Redis is unreachable (the front end noticed): everyone waiting or running is told. */
  connectionLost(): void {
    for (const entry of this.entries.values()) {
      entry.position = 0; // told again once positions are known
      this.notice(entry, 'queueReconnecting');
    }
  }

  cancel(id: string, code: 'CANCELLED' | 'SHUTTING_DOWN' = 'CANCELLED'): boolean {
    const entry = this.entries.get(id);
    if (!entry || entry.state === 'done') return false;
    const error = new VistyleError(code, code === 'CANCELLED' ? 'cancelled' : 'the bot is shutting down');
    entry.controller.abort(error);
    entry.settle({ ok: false, error });
    return true;
  }

  /** Requests this front end holds in Redis, for lease renewal. */
  liveEntries(): { requestId: string; userKey: string; waiting: boolean }[] {
    return [...this.entries.values()]
      .filter((entry) => entry.state === 'waiting' || entry.state === 'running')
      .map((entry) => ({ requestId: entry.id, userKey: entry.userKey, waiting: entry.state === 'waiting' }));
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  /** Refreshes the deployment-wide counts behind status() and the gauges. */
  async refreshCounts(): Promise<QueueCounts> {
    this.counts = await this.o.admissions.counts();
    this.o.metrics?.queueLength.set(this.counts.waiting);
    this.o.metrics?.inFlight.set(this.counts.running);
    return this.counts;
  }

  status(): SchedulerStatus {
    const now = Date.now();
    let oldest = now;
    for (const entry of this.entries.values()) if (entry.state === 'waiting' || entry.state === 'admitting') oldest = Math.min(oldest, entry.acceptedAt);
    return {
      waiting: this.counts.waiting,
      inFlight: this.counts.running,
      oldestWaitMs: now - oldest,
      slots: this.counts.capacity,
      maxQueueLength: this.o.maxQueueLength,
    };
  }

  async shutdown(drainMs: number): Promise<void> {
    this.closing = true;
    for (const entry of [...this.entries.values()]) if (entry.state !== 'running') this.cancel(entry.id, 'SHUTTING_DOWN');
    const running = [...this.entries.values()];
    const runs = running.map((entry) => entry.finished);
    await drainRuns(runs, drainMs, () => {
      for (const entry of running) this.cancel(entry.id, 'SHUTTING_DOWN');
    });
  }
}

function limitError(admission: Exclude<Awaited<ReturnType<Admissions['admit']>>, { ok: true }>): LimitError {
  switch (admission.reason) {
    case 'in-flight':
      return new LimitError('RATE_LIMITED', `user has ${admission.inFlight} request(s) in progress`, 'in-flight', { inFlight: admission.inFlight });
    case 'per-minute':
      return new LimitError('RATE_LIMITED', 'user made too many requests in the last minute', 'per-minute', { retryAfterMs: admission.retryAfterMs });
    case 'queue-full':
      return new LimitError('QUEUE_FULL', `the queue is full (${admission.waiting} waiting)`, 'queue-full', { waiting: admission.waiting });
  }
}
