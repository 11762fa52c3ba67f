// The Engine a front end uses when the model runs on `vistyle worker`s: generate() turns the
// request into a BullMQ job (pictures beside it in Redis), streams the worker's deltas back from
// this front end's reply stream, and follows the job through BullMQ's events: a job whose worker
// died (stalled) starts over on another worker or, once its retries are used up, fails with
// ENGINE_CRASHED. Cancelling (the request's AbortSignal) removes a waiting job, and tells the
// worker running it to stop at its next decode step. The contract is the local engine's: a
// cancelled stream ends normally with finishReason 'cancelled'; failures reject `result`.
import { randomUUID } from 'node:crypto';
import { Queue, QueueEvents } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Engine, GenerateRequest, GenerationStream, ModelInfo } from '../engine/types.js';
import { VistyleError, isVistyleError } from '../errors.js';
import { errorFields, type Logger } from '../log.js';
import { bullConnection, type RedisTarget } from './connection.js';
import { queueJobContext, type QueueJobLink } from './job-context.js';
import { blobBytes, encodeRequest, type AnswerJobData } from './job-data.js';
import type { QueueKeys } from './keys.js';
import type { WorkerDirectory } from './registry.js';
import { replyError, type ReplyEvent } from './replies.js';
import { cancelledResult } from '../engine/stream.js';
import { RemoteStream } from './remote-stream.js';
import { chooseQueue } from './routing.js';

export interface RemoteEngineOptions {
  redis: Redis;
  target: RedisTarget;
  keys: QueueKeys;
  frontEndId: string;
  replyStream: string;
  directory: WorkerDirectory;
  requestTimeoutMs: number;
  pictureTtlMs: number;
  maxJobBytes: number;
  /** Restarts after a dead worker before the job fails (the workers' VISTYLE_QUEUE_STALLED_RETRIES). */
  stalledRetries: number;
  logger: Logger;
}

interface RemoteJob {
  jobId: string;
  queue: string;
  data: AnswerJobData;
  link: QueueJobLink | undefined;
  stream: RemoteStream;
  /** Lock token of the attempt whose deltas count. */
  attempt: string | undefined;
  /** The current attempt's worker died; the next 'started' is the retry. */
  stale: boolean;
  restarts: number;
  enqueued: boolean;
  position: number;
  signal: AbortSignal | undefined;
  onAbort: () => void;
}

const PLACEHOLDER_INFO: ModelInfo = {
  modelDir: '(on the workers)',
  dtype: 'fp32',
  provider: 'cpu',
  maxContextTokens: 0,
  imageSize: 0,
  imageTokens: 0,
  eosTokenIds: [],
  loraTargets: [],
  slots: 1,
};

export class RemoteEngine implements Engine {
  private readonly jobs = new Map<string, RemoteJob>();
  private readonly queues = new Map<string, Queue>();
  private readonly events = new Map<string, QueueEvents>();
  private readonly waitingByQueue = new Map<string, number>();
  private nextJob = 1;
  private closed = false;
  private positionsTimer: NodeJS.Timeout | undefined;
  private positionsRunning = false;

  constructor(private readonly o: RemoteEngineOptions) {}

  /** The first alive worker's model, with `slots` = the slots of every alive worker. */
  get info(): ModelInfo {
    const alive = this.o.directory.alive;
    const base = alive.find((worker) => worker.info)?.info ?? PLACEHOLDER_INFO;
    return { ...base, slots: Math.max(1, alive.reduce((sum, worker) => sum + (worker.draining ? 0 : worker.slots), 0)) };
  }

  /** Jobs of this front end not finished. */
  get pending(): number {
    return this.jobs.size;
  }

  generate(request: GenerateRequest, options: { signal?: AbortSignal } = {}): GenerationStream {
    const stream = new RemoteStream();
    if (this.closed) {
      stream.fail(new VistyleError('SHUTTING_DOWN', 'the engine is closed'));
      return stream;
    }
    if (options.signal?.aborted) {
      stream.end(cancelledResult(''));
      return stream;
    }
    const link = queueJobContext.getStore();
    void this.enqueue(request, stream, link, options.signal).catch((error: unknown) => {
      stream.fail(isVistyleError(error) ? error : new VistyleError('INTERNAL', `could not queue the request: ${(error as Error)?.message ?? error}`, { cause: error }));
    });
    return stream;
  }

  private async enqueue(request: GenerateRequest, stream: RemoteStream, link: QueueJobLink | undefined, signal: AbortSignal | undefined): Promise<void> {
    const encoded = encodeRequest(request);
    const bytes = blobBytes(encoded.blobs);
    if (bytes > this.o.maxJobBytes) {
      throw new VistyleError('IMAGE_TOO_LARGE', `the pictures of this request have ${bytes} bytes (limit ${this.o.maxJobBytes})`, {
        details: { bytes, limit: this.o.maxJobBytes },
      });
    }
    const route = chooseQueue(encoded.adapter, this.o.directory.alive, this.waitingByQueue);
    if (route.queue === null) {
      throw new VistyleError('ADAPTER_INVALID', `no worker serves the LoRA adapter "${encoded.adapter}"`, { details: { adapter: encoded.adapter } });
    }
    const requestId = link?.requestId ?? randomUUID();
    const jobId = `${requestId}-${this.nextJob++}`;
    const data: AnswerJobData = {
      v: 1,
      requestId,
      userKey: link?.userKey ?? 'api',
      frontEnd: this.o.frontEndId,
      replyTo: this.o.replyStream,
      request: encoded.json,
      blobs: encoded.blobs.length,
      adapter: encoded.adapter,
      timeoutMs: this.o.requestTimeoutMs + 5_000,
      acceptedAt: link?.acceptedAt ?? Date.now(),
    };
    const job: RemoteJob = {
      jobId,
      queue: route.queue,
      data,
      link,
      stream,
      attempt: undefined,
      stale: false,
      restarts: 0,
      enqueued: false,
      position: 0,
      signal,
      onAbort: () => this.cancel(job),
    };
    this.jobs.set(jobId, job);
    signal?.addEventListener('abort', job.onAbort, { once: true });

    if (encoded.blobs.length > 0) {
      const pipeline = this.o.redis.pipeline();
      encoded.blobs.forEach((blob, index) => {
        pipeline.set(this.o.keys.blob(jobId, index), Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength), 'PX', this.o.pictureTtlMs);
      });
      const results = (await pipeline.exec()) ?? [];
      const failed = results.find(([error]) => error);
      if (failed) throw failed[0];
    }
    if (stream.settled) return this.forget(job); // cancelled meanwhile
    this.ensureEvents(job.queue);
    await this.queue(job.queue).add('answer', data, {
      jobId,
      attempts: 1,
      removeOnComplete: true,
      removeOnFail: { age: 3600, count: 1000 },
    });
    job.enqueued = true;
    if (stream.settled) {
      await this.queue(job.queue).remove(jobId).catch(() => undefined);
      return;
    }
    this.schedulePositions();
  }

  // ------------------------------------------------------------------ events from workers

  /** One event of this front end's reply stream (ReplyReader calls it, in order). */
  onReply(event: ReplyEvent): void {
    const job = this.jobs.get(event.jobId);
    if (!job || job.stream.settled) return;
    switch (event.type) {
      case 'started': {
        if (job.attempt === event.attempt) return;
        const first = job.attempt === undefined;
        job.attempt = event.attempt;
        job.position = 0;
        if (first) {
          job.link?.started();
        } else if (job.stale) {
          job.stale = false; // the restart was announced when the job stalled
        } else {
          this.restart(job);
        }
        this.o.logger.debug({ jobId: job.jobId, worker: event.worker, restart: !first }, 'job started on a worker');
        return;
      }
      case 'delta':
        if (event.attempt === job.attempt && !job.stale) job.stream.push(event.text);
        return;
      case 'done':
        if (event.attempt !== job.attempt) return;
        job.stream.end(event.result);
        return this.forget(job);
      case 'error':
        if (event.attempt !== job.attempt && job.attempt !== undefined) return;
        job.stream.fail(replyError(event.error));
        return this.forget(job);
    }
  }

  private restart(job: RemoteJob): void {
    job.restarts++;
    job.stream.restart();
    job.link?.restarted();
    this.o.logger.warn({ jobId: job.jobId, restarts: job.restarts }, 'the worker answering stopped; the job starts over on another worker');
  }

  private onStalled(jobId: string): void {
    const job = this.jobs.get(jobId);
    if (!job || job.stream.settled || job.attempt === undefined || job.stale) return;
    job.stale = true;
    // Past its retries the job fails when a worker next picks it up ('failed' below): no "restarting".
    if (job.restarts < this.o.stalledRetries) this.restart(job);
  }

  private onFailed(jobId: string, reason: string): void {
    const job = this.jobs.get(jobId);
    if (!job || job.stream.settled) return;
    if (/stalled/i.test(reason)) {
      job.stream.fail(new VistyleError('ENGINE_CRASHED', 'the worker answering this request stopped, and its retries are used up', { details: { jobId } }));
      this.forget(job);
      return;
    }
    // The worker's own error comes through the reply stream; give it a moment to arrive first.
    setTimeout(() => {
      if (job.stream.settled) return;
      job.stream.fail(new VistyleError('INTERNAL', `the job failed on the worker: ${reason}`));
      this.forget(job);
    }, 1_000).unref();
  }

  // ------------------------------------------------------------------ cancelling, cleaning up

  private cancel(job: RemoteJob): void {
    if (job.stream.settled) return;
    job.stream.end(cancelledResult(job.stream.text));
    const { redis, keys } = this.o;
    void redis
      .multi()
      .set(keys.cancelled(job.jobId), '1', 'PX', this.o.pictureTtlMs)
      .publish(keys.cancelChannel, job.jobId)
      .exec()
      .catch((error: unknown) => this.o.logger.warn({ error: errorFields(error), jobId: job.jobId }, 'could not send the cancellation'));
    if (job.enqueued) void this.queue(job.queue).remove(job.jobId).catch(() => undefined); // only a job that still waits
    this.forget(job);
  }

  private forget(job: RemoteJob): void {
    this.jobs.delete(job.jobId);
    job.signal?.removeEventListener('abort', job.onAbort);
    if (job.data.blobs > 0) {
      const keys = Array.from({ length: job.data.blobs }, (_, index) => this.o.keys.blob(job.jobId, index));
      void this.o.redis.del(...keys).catch(() => undefined);
    }
  }

  // ------------------------------------------------------------------ positions, routing upkeep

  private schedulePositions(): void {
    if (this.positionsTimer || this.closed) return;
    this.positionsTimer = setTimeout(() => {
      this.positionsTimer = undefined;
      void this.refreshPositions();
    }, 100);
    this.positionsTimer.unref();
  }

  /** Tells each waiting job its place in its queue's wait list (BullMQ takes jobs from its tail). */
  async refreshPositions(force = false): Promise<void> {
    if (this.positionsRunning) return;
    const waiting = [...this.jobs.values()].filter((job) => job.enqueued && job.attempt === undefined && !job.stream.settled);
    if (waiting.length === 0) return;
    this.positionsRunning = true;
    try {
      const pipeline = this.o.redis.pipeline();
      for (const job of waiting) {
        const list = `${this.o.keys.bullPrefix}:${job.queue}:wait`;
        pipeline.lpos(list, job.jobId);
        pipeline.llen(list);
      }
      const results = (await pipeline.exec()) ?? [];
      waiting.forEach((job, index) => {
        const [indexError, at] = results[index * 2] ?? [];
        const [lengthError, length] = results[index * 2 + 1] ?? [];
        if (indexError || lengthError || at === null || at === undefined) return;
        const position = Number(length) - Number(at);
        if (position <= 0 || (position === job.position && !force) || job.attempt !== undefined) return;
        job.position = position;
        job.link?.position(position);
      });
    } catch (error) {
      this.o.logger.debug({ error: errorFields(error) }, 'could not read queue positions');
    } finally {
      this.positionsRunning = false;
    }
  }

  /** Called every second or so by the front end: fresh depths for routing, positions. */
  async tick(): Promise<void> {
    const queues = new Set([...this.o.directory.alive.map((worker) => worker.queue), ...this.queues.keys()]);
    if (queues.size > 0) {
      const pipeline = this.o.redis.pipeline();
      for (const queue of queues) pipeline.llen(`${this.o.keys.bullPrefix}:${queue}:wait`);
      const results = (await pipeline.exec()) ?? [];
      [...queues].forEach((queue, index) => this.waitingByQueue.set(queue, Number(results[index]?.[1] ?? 0)));
    }
    await this.refreshPositions();
  }

  /** Forgets the positions reported so far (after an outage the next refresh tells everyone again). */
  resetPositions(): void {
    for (const job of this.jobs.values()) job.position = 0;
  }

  /** Waiting counts per queue as of the last tick (metrics). */
  queueDepths(): ReadonlyMap<string, number> {
    return this.waitingByQueue;
  }

  queueNames(): string[] {
    return [...new Set([...this.o.directory.alive.map((worker) => worker.queue), ...this.queues.keys()])];
  }

  queue(name: string): Queue {
    let queue = this.queues.get(name);
    if (!queue) {
      queue = new Queue(name, { connection: bullConnection(this.o.target, `vistyle-frontend-${name}`), prefix: this.o.keys.bullPrefix });
      queue.on('error', (error) => this.o.logger.debug({ error: errorFields(error), queue: name }, 'queue connection error'));
      this.queues.set(name, queue);
    }
    return queue;
  }

  private ensureEvents(name: string): void {
    if (this.events.has(name)) return;
    const events = new QueueEvents(name, { connection: bullConnection(this.o.target, `vistyle-events-${name}`), prefix: this.o.keys.bullPrefix });
    events.on('error', (error) => this.o.logger.debug({ error: errorFields(error), queue: name }, 'queue events connection error'));
    events.on('stalled', ({ jobId }) => this.onStalled(jobId));
    events.on('failed', ({ jobId, failedReason }) => this.onFailed(jobId, failedReason));
    const refresh = () => this.schedulePositions();
    events.on('active', refresh);
    events.on('removed', refresh);
    events.on('waiting', refresh);
    this.events.set(name, events);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.positionsTimer) clearTimeout(this.positionsTimer);
    const closing = new VistyleError('SHUTTING_DOWN', 'the engine is closed');
    for (const job of [...this.jobs.values()]) {
      job.stream.fail(closing);
      this.forget(job);
    }
    await Promise.allSettled([...this.events.values()].map((events) => events.close()));
    await Promise.allSettled([...this.queues.values()].map((queue) => queue.close()));
  }
}
