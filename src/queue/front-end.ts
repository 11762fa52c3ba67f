// `vistyle start` with VISTYLE_QUEUE_URL: everything of a front end that talks to Redis, built
// together because the scheduler and the engine it hands to the bot core are two faces of one
// queue client. Owns the connections (commands; a blocking one for the reply stream; BullMQ's own
// per queue), the one-second upkeep (worker directory, queue depths, positions, counts), the
// leases of its requests, and the outage watch that tells users while Redis is away.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { AppConfig, QueueConfig } from '../config/config.js';
import { errorFields, type Logger } from '../log.js';
import type { BotMetrics } from '../metrics/metrics.js';
import { Admissions } from './admission.js';
import { openRedis, parseRedisUrl, type RedisTarget } from './connection.js';
import { QueueKeys } from './keys.js';
import { registerFrontEndMetrics } from './metrics.js';
import { RedisScheduler } from './redis-scheduler.js';
import { WorkerDirectory } from './registry.js';
import { RemoteEngine } from './remote-engine.js';
import { ReplyReader } from './replies.js';

/** Redis away longer than this: users are told. */
export const OUTAGE_NOTICE_MS = 1_500;

export interface Readiness {
  ready: boolean;
  /** Why not, in words (empty when ready). */
  reasons: string[];
}

export class QueueFrontEnd {
  readonly id: string;
  readonly engine: RemoteEngine;
  readonly scheduler: RedisScheduler;
  readonly directory: WorkerDirectory;
  readonly target: RedisTarget;
  private readonly redis: Redis;
  private readonly reader: ReplyReader;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly keys: QueueKeys;
  private downSince: number | undefined;
  private outageNoticeTimer: NodeJS.Timeout | undefined;
  private ticking = false;
  private closed = false;

  constructor(
    config: AppConfig & { queue: QueueConfig },
    private readonly logger: Logger,
    metrics: BotMetrics,
  ) {
    const queue = config.queue;
    this.target = parseRedisUrl(queue.url);
    this.keys = new QueueKeys(queue.prefix);
    this.id = `fe-${randomBytes(6).toString('hex')}`;
    this.redis = openRedis(this.target, `vistyle-frontend-${this.id}`);
    this.directory = new WorkerDirectory(this.redis, this.keys);
    const admissions = new Admissions(this.redis, this.keys);
    this.scheduler = new RedisScheduler({
      admissions,
      userInFlight: config.limits.userInFlight,
      userPerMinute: config.limits.userPerMinute,
      maxQueueLength: config.limits.maxQueueLength,
      requestTimeoutMs: config.limits.requestTimeoutMs,
      logger,
      metrics,
    });
    const replyStream = this.keys.replies(this.id);
    this.engine = new RemoteEngine({
      redis: this.redis,
      target: this.target,
      keys: this.keys,
      frontEndId: this.id,
      replyStream,
      directory: this.directory,
      requestTimeoutMs: config.limits.requestTimeoutMs,
      pictureTtlMs: queue.pictureTtlMs,
      maxJobBytes: queue.maxJobBytes,
      stalledRetries: queue.stalledRetries,
      logger,
    });
    this.reader = new ReplyReader(openRedis(this.target, `vistyle-replies-${this.id}`), replyStream, (event) => this.engine.onReply(event));
    registerFrontEndMetrics(metrics.registry, {
      directory: this.directory,
      queues: () => this.engine.queueNames().map((name) => this.engine.queue(name)),
      redisUp: () => this.redis.status === 'ready',
    });
    this.watchConnection();
    this.reader.start();
    this.every(1_000, () => this.tick());
    this.every(admissions.leaseMs / 3, () =>
      admissions.renewAdmitted(this.scheduler.liveEntries()).catch((error: unknown) => this.logger.debug({ error: errorFields(error) }, 'lease renewal failed')),
    );
    this.every(10_000, () => this.markAlive());
  }

  /** Waits for the first contact with Redis (logged while it takes), then reads the workers. */
  async start(): Promise<void> {
    const slow = setTimeout(() => this.logger.warn({ redis: this.target.description }, 'waiting for Redis'), 3_000);
    try {
      await this.markAlive();
      await this.tick();
    } finally {
      clearTimeout(slow);
    }
    const workers = this.directory.alive;
    this.logger.info({ redis: this.target.description, frontEnd: this.id, workers: workers.length, queues: [...new Set(workers.map((w) => w.queue))] }, 'front end connected to the queue');
    if (workers.length === 0) this.logger.warn('no `vistyle worker` is running yet: requests wait in the queue until one starts');
  }

  readiness(): Readiness {
    const reasons: string[] = [];
    if (this.redis.status !== 'ready') reasons.push(`Redis (${this.target.description}) is not reachable`);
    else if (this.directory.alive.every((worker) => worker.draining)) reasons.push('no worker is taking jobs');
    return { ready: reasons.length === 0, reasons };
  }

  private markAlive(): Promise<unknown> {
    return this.redis.set(`${this.keys.prefix}:frontend:${this.id}`, String(Date.now()), 'PX', 30_000);
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.closed) return;
    this.ticking = true;
    try {
      await this.directory.refresh();
      await this.engine.tick();
      await this.scheduler.refreshCounts();
    } catch (error) {
      this.logger.debug({ error: errorFields(error) }, 'queue upkeep failed');
    } finally {
      this.ticking = false;
    }
  }

  private every(ms: number, run: () => unknown): void {
    const timer = setInterval(() => void run(), ms);
    timer.unref();
    this.timers.push(timer);
  }

  private watchConnection(): void {
    const lost = () => {
      if (this.closed || this.downSince !== undefined) return;
      this.downSince = Date.now();
      this.logger.warn({ redis: this.target.description }, 'lost the connection to Redis; reconnecting (requests are kept)');
      this.outageNoticeTimer = setTimeout(() => this.scheduler.connectionLost(), OUTAGE_NOTICE_MS);
      this.outageNoticeTimer.unref();
    };
    this.redis.on('close', lost);
    this.redis.on('reconnecting', lost);
    this.redis.on('ready', () => {
      if (this.downSince === undefined) return;
      clearTimeout(this.outageNoticeTimer);
      this.logger.info({ redis: this.target.description, downMs: Date.now() - this.downSince }, 'reconnected to Redis');
      this.downSince = undefined;
      this.engine.resetPositions();
      void this.markAlive().catch(() => undefined);
      void this.tick();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const timer of this.timers) clearInterval(timer);
    clearTimeout(this.outageNoticeTimer);
    // Redis may be away: nothing here waits for it longer than a few seconds.
    await withTimeout(this.engine.close(), 5_000);
    await withTimeout(this.reader.stop(), 2_000);
    await withTimeout(this.redis.del(`${this.keys.prefix}:frontend:${this.id}`), 1_000);
    this.redis.disconnect();
  }
}

export function hasQueue(config: AppConfig): config is AppConfig & { queue: QueueConfig } {
  return config.queue !== undefined;
}

export async function withTimeout(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([work.catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
