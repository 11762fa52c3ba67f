// Which workers are alive and what they serve. Each `vistyle worker` advertises itself in Redis
// (a hash with its queue, adapters, slots, provider and dtype, and its running totals) and renews
// a heartbeat; a worker whose heartbeat lapses (killed, host gone) drops out by itself. Front ends
// read the directory to route jobs (routing.ts), to report the engine's info and for metrics.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { ModelInfo } from '../engine/types.js';
import type { QueueKeys } from './keys.js';

export interface WorkerAd {
  id: string;
  name: string;
  queue: string;
  adapters: string[];
  /** Jobs it runs at once (0 while it drains). */
  slots: number;
  draining: boolean;
  info: ModelInfo | undefined;
  startedAt: number;
  /** Running totals since it started. */
  jobs: number;
  tokens: number;
  failed: number;
}

export function defaultWorkerName(): string {
  return `${hostname()}:${process.pid}`;
}

/** A worker's own entry: registered at start, renewed, marked draining on SIGTERM, removed at exit. */
export class WorkerRegistration {
  readonly id: string;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly redis: Redis,
    private readonly keys: QueueKeys,
    private readonly ad: Omit<WorkerAd, 'id' | 'jobs' | 'tokens' | 'failed' | 'draining' | 'startedAt'>,
    /** Heartbeat period; the entry lapses after three missed beats. */
    private readonly heartbeatMs: number,
  ) {
    this.id = `${ad.name.replace(/[^\w.@-]/g, '_')}-${randomBytes(3).toString('hex')}`;
  }

  async register(): Promise<void> {
    await this.redis
      .multi()
      .hset(this.keys.worker(this.id), {
        name: this.ad.name,
        queue: this.ad.queue,
        adapters: JSON.stringify(this.ad.adapters),
        slots: String(this.ad.slots),
        draining: '0',
        info: JSON.stringify(this.ad.info ?? null),
        startedAt: String(Date.now()),
        jobs: '0',
        tokens: '0',
        failed: '0',
      })
      .exec();
    await this.beat(this.ad.slots);
    this.timer = setInterval(() => void this.beat().catch(() => undefined), this.heartbeatMs);
    this.timer.unref();
  }

  private draining = false;

  private async beat(slots?: number): Promise<void> {
    const ttl = this.heartbeatMs * 3;
    const pipeline = this.redis.pipeline();
    pipeline.zadd(this.keys.workers, Date.now() + ttl, this.id);
    pipeline.pexpire(this.keys.worker(this.id), ttl * 4);
    pipeline.hset(this.keys.capacity, this.id, String(this.draining ? 0 : (slots ?? this.ad.slots)));
    await pipeline.exec();
  }

  /** Counts a finished job in the advertised totals. */
  async count(outcome: 'answered' | 'failed', tokens: number): Promise<void> {
    const pipeline = this.redis.pipeline();
    pipeline.hincrby(this.keys.worker(this.id), outcome === 'answered' ? 'jobs' : 'failed', 1);
    if (tokens > 0) pipeline.hincrby(this.keys.worker(this.id), 'tokens', tokens);
    await pipeline.exec();
  }

  /** Takes no new jobs from now on: front ends stop counting its slots and routing to it. */
  async drain(): Promise<void> {
    this.draining = true;
    await this.redis.multi().hset(this.keys.worker(this.id), 'draining', '1').hset(this.keys.capacity, this.id, '0').exec();
  }

  async remove(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.redis.multi().zrem(this.keys.workers, this.id).hdel(this.keys.capacity, this.id).del(this.keys.worker(this.id)).exec();
  }
}

/** The front end's view of the workers, refreshed from Redis. */
export class WorkerDirectory {
  private workers: WorkerAd[] = [];

  constructor(
    private readonly redis: Redis,
    private readonly keys: QueueKeys,
  ) {}

  get alive(): readonly WorkerAd[] {
    return this.workers;
  }

  async refresh(now = Date.now()): Promise<readonly WorkerAd[]> {
    const ids = await this.redis.zrangebyscore(this.keys.workers, now, '+inf');
    if (ids.length === 0) {
      this.workers = [];
      return this.workers;
    }
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetall(this.keys.worker(id));
    const results = (await pipeline.exec()) ?? [];
    const workers: WorkerAd[] = [];
    results.forEach(([error, value], index) => {
      const hash = value as Record<string, string> | null;
      if (error || !hash || !hash.queue) return;
      workers.push({
        id: ids[index]!,
        name: hash.name ?? ids[index]!,
        queue: hash.queue,
        adapters: safeJson<string[]>(hash.adapters) ?? [],
        slots: Number(hash.slots ?? 0),
        draining: hash.draining === '1',
        info: safeJson<ModelInfo>(hash.info) ?? undefined,
        startedAt: Number(hash.startedAt ?? 0),
        jobs: Number(hash.jobs ?? 0),
        tokens: Number(hash.tokens ?? 0),
        failed: Number(hash.failed ?? 0),
      });
    });
    this.workers = workers;
    return workers;
  }
}

function safeJson<T>(text: string | undefined): T | undefined {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}
