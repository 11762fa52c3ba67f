// `vistyle worker`'s queue side: takes answer jobs from BullMQ, VISTYLE_WORKER_CONCURRENCY at a
// time, runs them on the engine (loaded by the caller) and streams every delta to the asking front
// end's reply stream as it is made.
// - At start it checks the LoRA adapters in its adapters folder (each must load and run one
//   token), advertises the ones that work, and serves the queue of that adapter set (keys.ts).
// - Cancellation reaches it by pub/sub (plus a key it checks when a job starts and after a
//   reconnect); the engine stops at its next decode step.
// - BullMQ holds a lock per running job and renews it; if this process dies, the lock lapses, a
//   worker of the same queue finds the job stalled and it runs again from the start (or fails
//   once VISTYLE_QUEUE_STALLED_RETRIES are used up).
// - drain() (SIGTERM): advertises zero slots, takes no new job, lets the running ones finish.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UnrecoverableError, WaitingError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { QueueConfig } from '../config/config.js';
import type { Engine, GenerationResult } from '../engine/types.js';
import { VistyleError, isVistyleError, toSerializedError } from '../errors.js';
import { errorFields, type Logger } from '../log.js';
import { Admissions } from './admission.js';
import { bullConnection, openRedis, parseRedisUrl, type RedisTarget } from './connection.js';
import { decodeRequest, type AnswerJobData } from './job-data.js';
import { ADAPTER_NAME_PATTERN, QueueKeys, profileQueueName } from './keys.js';
import type { WorkerMetrics } from './metrics.js';
import { defaultWorkerName, WorkerRegistration } from './registry.js';
import { sendReply } from './replies.js';

export interface QueueWorkerOptions {
  queue: QueueConfig;
  engine: Engine;
  logger: Logger;
  metrics?: WorkerMetrics;
  /** Jobs at once; default queue.workerConcurrency, else the engine's slots, else 1. */
  concurrency?: number;
  /** Test-only: hold each delta this long before sending it (makes "mid-answer" last). Also VISTYLE_DEBUG_WORKER_DELTA_DELAY_MS. */
  debugDeltaDelayMs?: number;
}

interface Running {
  requestId: string;
  controller: AbortController;
}

const ADAPTER_FILES = ['adapter_config.json', 'adapter_model.safetensors'];

export class QueueWorker {
  readonly target: RedisTarget;
  readonly keys: QueueKeys;
  readonly concurrency: number;
  private readonly redis: Redis;
  private readonly subscriber: Redis;
  private readonly admissions: Admissions;
  private readonly running = new Map<string, Running>();
  private readonly log: Logger;
  private readonly deltaDelayMs: number;
  private adapters: string[] = [];
  private registration: WorkerRegistration | undefined;
  private worker: Worker<AnswerJobData> | undefined;
  private leaseTimer: NodeJS.Timeout | undefined;
  private draining: Promise<void> | undefined;
  readonly name: string;

  constructor(private readonly o: QueueWorkerOptions) {
    this.target = parseRedisUrl(o.queue.url);
    this.keys = new QueueKeys(o.queue.prefix);
    this.name = o.queue.workerName ?? defaultWorkerName();
    this.log = o.logger;
    this.concurrency = o.concurrency ?? o.queue.workerConcurrency ?? o.engine.info.slots ?? 1;
    this.redis = openRedis(this.target, `vistyle-worker-${this.name}`);
    this.subscriber = openRedis(this.target, `vistyle-worker-cancel-${this.name}`);
    this.admissions = new Admissions(this.redis, this.keys);
    const envDelay = Number(process.env.VISTYLE_DEBUG_WORKER_DELTA_DELAY_MS ?? 0);
    this.deltaDelayMs = o.debugDeltaDelayMs ?? (Number.isFinite(envDelay) && envDelay > 0 ? envDelay : 0);
  }

  /** The queue this worker serves (known after start). */
  queueName = '';

  get advertisedAdapters(): readonly string[] {
    return this.adapters;
  }

  get runningCount(): number {
    return this.running.size;
  }

  redisUp(): boolean {
    return this.redis.status === 'ready';
  }

  /** For /readyz: taking jobs (started, Redis reachable, not draining). */
  readiness(): { ready: boolean; reasons: string[] } {
    const reasons: string[] = [];
    if (!this.worker) reasons.push('not started');
    if (this.draining) reasons.push('draining (stopping)');
    if (!this.redisUp()) reasons.push(`Redis (${this.target.description}) is not reachable`);
    return { ready: reasons.length === 0, reasons };
  }

  async start(): Promise<void> {
    this.adapters = await this.checkAdapters();
    this.queueName = profileQueueName(this.adapters);
    await this.listenForCancels();
    this.registration = new WorkerRegistration(
      this.redis,
      this.keys,
      { name: this.name, queue: this.queueName, adapters: this.adapters, slots: this.concurrency, info: this.o.engine.info },
      Math.min(5_000, Math.max(500, Math.floor(this.o.queue.lockMs / 3))),
    );
    await this.registration.register();
    const lockMs = this.o.queue.lockMs;
    this.worker = new Worker<AnswerJobData>(this.queueName, (job, token) => this.process(job, token), {
      connection: bullConnection(this.target, `vistyle-worker-jobs-${this.name}`),
      prefix: this.keys.bullPrefix,
      concurrency: this.concurrency,
      lockDuration: lockMs,
      stalledInterval: Math.max(500, Math.floor(lockMs / 2)),
      maxStalledCount: this.o.queue.stalledRetries,
      name: this.name,
    });
    this.worker.on('error', (error) => this.log.debug({ error: errorFields(error) }, 'queue connection error'));
    this.leaseTimer = setInterval(() => void this.admissions.renewRunning([...this.running.values()].map((r) => r.requestId)).catch(() => undefined), this.admissions.leaseMs / 3);
    this.leaseTimer.unref();
    await this.worker.waitUntilReady();
    this.log.info(
      { worker: this.name, id: this.registration.id, redis: this.target.description, queue: this.queueName, adapters: this.adapters, concurrency: this.concurrency },
      'worker is taking jobs',
    );
  }

  /** Adapter folders in the adapters folder that load and run; each is advertised by its name. */
  private async checkAdapters(): Promise<string[]> {
    const dir = this.o.queue.adaptersDir;
    if (!existsSync(dir)) return [];
    const names: string[] = [];
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (!statSync(path).isDirectory()) continue;
      if (!ADAPTER_NAME_PATTERN.test(name)) {
        this.log.warn({ adapter: name }, 'adapter folder name has characters jobs cannot carry (letters, digits, . _ - only); not served');
        continue;
      }
      if (!ADAPTER_FILES.every((file) => existsSync(join(path, file)))) {
        this.log.warn({ adapter: name, path }, `not a PEFT adapter folder (${ADAPTER_FILES.join(' + ')}); not served`);
        continue;
      }
      try {
        const probe = this.o.engine.generate({ messages: [{ role: 'user', content: 'hi' }], lora: { path }, sampling: { maxNewTokens: 1, temperature: 0 } });
        await probe.result;
        names.push(name);
      } catch (error) {
        this.log.warn({ adapter: name, path, code: isVistyleError(error) ? error.code : 'INTERNAL', err: (error as Error)?.message }, 'adapter does not load on this model; not served');
      }
    }
    return names;
  }

  private async listenForCancels(): Promise<void> {
    this.subscriber.on('message', (_channel: string, jobId: string) => this.running.get(jobId)?.controller.abort(new VistyleError('CANCELLED', 'cancelled')));
    // After a reconnect, cancellations published meanwhile are found by their keys.
    this.subscriber.on('ready', () => void this.checkCancelKeys());
    await this.subscriber.subscribe(this.keys.cancelChannel);
  }

  private async checkCancelKeys(): Promise<void> {
    for (const [jobId, run] of this.running) {
      if (await this.redis.exists(this.keys.cancelled(jobId)).catch(() => 0)) run.controller.abort(new VistyleError('CANCELLED', 'cancelled'));
    }
  }

  private async process(job: Job<AnswerJobData>, token: string | undefined): Promise<{ finishReason: string; tokens: number }> {
    const data = job.data;
    const jobId = job.id!;
    const attempt = token ?? `${this.name}:${Date.now()}`;
    const log = this.log.child({ jobId, requestId: data.requestId, userKey: data.userKey });
    if (this.draining) {
      // Fetched just as SIGTERM came: not started, so back to the front of the line for another worker.
      await job.moveToWait(token);
      log.info('draining: job handed back to the queue');
      throw new WaitingError();
    }
    log.info({ attempt, stalled: job.stalledCounter ?? 0 }, 'job started');
    const [[, cancelled], [, frontEndAlive]] = ((await this.redis
      .pipeline()
      .exists(this.keys.cancelled(jobId))
      .exists(`${this.keys.prefix}:frontend:${data.frontEnd}`)
      .exec()) ?? [[null, 0], [null, 0]]) as [[unknown, number], [unknown, number]];
    if (cancelled) {
      log.info({ finishReason: 'cancelled', skipped: 'cancelled before it started' }, 'job finished');
      this.o.metrics?.jobs.inc({ outcome: 'cancelled' });
      return { finishReason: 'cancelled', tokens: 0 };
    }
    if (!frontEndAlive) {
      log.warn({ frontEnd: data.frontEnd, finishReason: 'cancelled', skipped: 'the front end that asked is gone' }, 'job finished');
      this.o.metrics?.jobs.inc({ outcome: 'cancelled' });
      return { finishReason: 'cancelled', tokens: 0 };
    }

    const controller = new AbortController();
    this.running.set(jobId, { requestId: data.requestId, controller });
    this.o.metrics?.running.set(this.running.size);
    const reply = (event: Parameters<typeof sendReply>[2]) => sendReply(this.redis, data.replyTo, event);
    let timer: NodeJS.Timeout | undefined;
    let terminal = false;
    const startedAt = Date.now();
    try {
      await this.admissions.started(data.requestId);
      await reply({ type: 'started', jobId, attempt, worker: this.name });
      await this.redis.pexpire(data.replyTo, 3600_000);
      this.o.metrics?.queueWait.observe(Math.max(0, startedAt - data.acceptedAt) / 1000);

      const blobs = await this.loadBlobs(jobId, data.blobs);
      if (data.adapter !== null && !this.adapters.includes(data.adapter)) {
        throw new VistyleError('ADAPTER_INVALID', `this worker does not serve the LoRA adapter "${data.adapter}"`);
      }
      const request = decodeRequest(data.request, blobs, (name) => join(this.o.queue.adaptersDir, name));
      timer = setTimeout(() => controller.abort(new VistyleError('TIMEOUT', `the job ran longer than ${data.timeoutMs} ms`)), data.timeoutMs);
      const stream = this.o.engine.generate(request, { signal: controller.signal });
      stream.result.catch(() => undefined);
      for await (const text of stream) {
        if (this.deltaDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.deltaDelayMs));
        await reply({ type: 'delta', jobId, attempt, text });
      }
      const result: GenerationResult = await stream.result;
      terminal = true;
      await reply({ type: 'done', jobId, attempt, result });
      const outcome = result.finishReason === 'cancelled' ? 'cancelled' : 'answered';
      this.o.metrics?.jobs.inc({ outcome });
      this.o.metrics?.tokens.inc(result.tokens.length);
      if (result.tokens.length > 1) this.o.metrics?.tokensPerSecond.observe(result.tokensPerSecond);
      void this.registration?.count('answered', result.tokens.length).catch(() => undefined);
      log.info({ finishReason: result.finishReason, tokens: result.tokens.length, ms: Date.now() - startedAt }, 'job finished');
      return { finishReason: result.finishReason, tokens: result.tokens.length };
    } catch (error) {
      terminal = true;
      const serialized = toSerializedError(error);
      delete serialized.stack;
      await reply({ type: 'error', jobId, attempt, error: serialized }).catch(() => undefined);
      this.o.metrics?.jobs.inc({ outcome: 'failed' });
      void this.registration?.count('failed', 0).catch(() => undefined);
      log.warn({ code: serialized.code, err: serialized.message }, 'job failed');
      // Failures of the request itself (bad picture, prompt too long) are final: no BullMQ retry.
      throw new UnrecoverableError(`${serialized.code}: ${serialized.message}`);
    } finally {
      clearTimeout(timer);
      this.running.delete(jobId);
      this.o.metrics?.running.set(this.running.size);
      void this.admissions.finishedRunning(data.requestId).catch(() => undefined);
      if (terminal && data.blobs > 0) {
        void this.redis.del(...Array.from({ length: data.blobs }, (_, i) => this.keys.blob(jobId, i))).catch(() => undefined);
      }
    }
  }

  private async loadBlobs(jobId: string, count: number): Promise<Uint8Array[]> {
    if (count === 0) return [];
    const pipeline = this.redis.pipeline();
    for (let i = 0; i < count; i++) pipeline.getBuffer(this.keys.blob(jobId, i));
    const results = (await pipeline.exec()) ?? [];
    return results.map(([error, value], index) => {
      if (error || !value) {
        throw new VistyleError('IMAGE_MISSING', `picture ${index} of the job is gone (it waited longer than VISTYLE_QUEUE_PICTURE_TTL_SECONDS)`);
      }
      const buffer = value as Buffer;
      return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    });
  }

  /** SIGTERM: no new jobs; the running ones finish; then the worker leaves the directory. */
  drain(): Promise<void> {
    this.draining ??= (async () => {
      // close() marks the BullMQ worker closing at once: a job finishing from now on does not fetch
      // the next one (moveToCompleted's fetchNext), and the fetch loop stops.
      const closing = this.worker?.close();
      this.log.info({ running: this.running.size }, 'draining: finishing running jobs, taking no new ones');
      await this.registration?.drain().catch(() => undefined);
      await closing;
      await this.close();
    })();
    return this.draining;
  }

  /** Leaves at once (running jobs are not waited for: they stall and run again elsewhere). */
  async close(): Promise<void> {
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    if (this.worker && !this.worker.closing) await this.worker.close(true).catch(() => undefined);
    await Promise.race([this.registration?.remove().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 2_000).unref())]);
    this.subscriber.disconnect();
    this.redis.disconnect();
  }
}
