// The scheduler's limits held in Redis for the whole deployment, each decision one Lua script (so
// two front ends can never both take a user's last slot):
// - per user: requests in flight (a sorted set of request ids), requests in the last minute (a
//   sliding window of acceptance times);
// - the queue cap: admitted requests no worker has started, less the free worker slots (the
//   same "really waiting" count as the in-process Scheduler).
// Entries are leases (score = expiry) that their owner renews: a front end or worker that dies
// without cleaning up frees its users' slots when the lease runs out, instead of leaking them.
// Admitting the same request id again is a no-op that answers 'ok' (a command resent after a lost
// connection must not count the request twice).
import type { Redis } from 'ioredis';
import type { QueueKeys } from './keys.js';

const CLEAN_AND_CAPACITY = `
local function capacity(workersKey, capacityKey, now)
  redis.call('ZREMRANGEBYSCORE', workersKey, '-inf', now)
  local total = 0
  for _, id in ipairs(redis.call('ZRANGE', workersKey, 0, -1)) do
    total = total + (tonumber(redis.call('HGET', capacityKey, id)) or 0)
  end
  return total
end
`;

/** KEYS: inflight, recent, waiting, running, workers, capacity. ARGV: now, id, inFlight, perMinute, maxQueue, leaseMs, exempt. */
const ADMIT = `${CLEAN_AND_CAPACITY}
local now = tonumber(ARGV[1])
local id = ARGV[2]
local leaseMs = tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
if redis.call('ZSCORE', KEYS[1], id) then
  -- this request is admitted already: the script ran, but its reply was lost with the connection
  -- and ioredis sent it again on reconnecting. Admitting is idempotent, or the request would be
  -- refused for holding its own slot.
  local free = capacity(KEYS[5], KEYS[6], now) - redis.call('ZCARD', KEYS[4])
  if free < 0 then free = 0 end
  local position = redis.call('ZCARD', KEYS[3]) - free
  if position < 1 then position = 1 end
  return {'ok', position}
end
local perMinute = tonumber(ARGV[4])
if ARGV[7] ~= '1' then
  local inFlight = redis.call('ZCARD', KEYS[1])
  if inFlight >= tonumber(ARGV[3]) then return {'in-flight', inFlight} end
  if perMinute > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60000)
    local recent = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    if redis.call('ZCARD', KEYS[2]) >= perMinute then
      return {'per-minute', tonumber(recent[2]) + 60000 - now}
    end
  end
end
local free = capacity(KEYS[5], KEYS[6], now) - redis.call('ZCARD', KEYS[4])
if free < 0 then free = 0 end
local beyond = redis.call('ZCARD', KEYS[3]) - free
if beyond < 0 then beyond = 0 end
if beyond >= tonumber(ARGV[5]) then return {'queue-full', beyond} end
redis.call('ZADD', KEYS[1], now + leaseMs, id)
redis.call('PEXPIRE', KEYS[1], leaseMs * 2)
if perMinute > 0 then
  redis.call('ZADD', KEYS[2], now, id)
  redis.call('PEXPIRE', KEYS[2], 61000)
end
redis.call('ZADD', KEYS[3], now + leaseMs, id)
return {'ok', beyond + 1}
`;

/** KEYS: inflight, waiting, running. ARGV: id. */
const RELEASE = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
`;

/** KEYS: waiting, running. ARGV: id, lease expiry. A worker started the request. */
const STARTED = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
`;

/** KEYS: waiting, running, workers, capacity. ARGV: now. */
const COUNTS = `${CLEAN_AND_CAPACITY}
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), capacity(KEYS[3], KEYS[4], now), redis.call('ZCARD', KEYS[3])}
`;

export type Admission =
  | { ok: true; position: number }
  | { ok: false; reason: 'in-flight'; inFlight: number }
  | { ok: false; reason: 'per-minute'; retryAfterMs: number }
  | { ok: false; reason: 'queue-full'; waiting: number };

export interface AdmissionLimits {
  userInFlight: number;
  userPerMinute: number;
  maxQueueLength: number;
}

export interface QueueCounts {
  /** Admitted, not started by a worker. */
  admitted: number;
  running: number;
  /** Slots of the alive workers that take jobs. */
  capacity: number;
  workers: number;
  /** Jobs that really wait (the admitted less the free slots). */
  waiting: number;
}

type Scripted = Redis & {
  vistyleAdmit(...args: (string | number)[]): Promise<[string, number]>;
  vistyleRelease(...args: (string | number)[]): Promise<number>;
  vistyleStarted(...args: (string | number)[]): Promise<number>;
  vistyleCounts(...args: (string | number)[]): Promise<[number, number, number, number]>;
};

export class Admissions {
  private readonly redis: Scripted;

  /** `redis` is a connection of the caller's (the scripts are defined on it). */
  constructor(
    redis: Redis,
    private readonly keys: QueueKeys,
    /** How long an entry lives unless renewed. */
    readonly leaseMs = 60_000,
  ) {
    const scripted = redis as Scripted;
    if (!('vistyleAdmit' in scripted)) {
      redis.defineCommand('vistyleAdmit', { numberOfKeys: 6, lua: ADMIT });
      redis.defineCommand('vistyleRelease', { numberOfKeys: 3, lua: RELEASE });
      redis.defineCommand('vistyleStarted', { numberOfKeys: 2, lua: STARTED });
      redis.defineCommand('vistyleCounts', { numberOfKeys: 4, lua: COUNTS });
    }
    this.redis = scripted;
  }

  async admit(requestId: string, userKey: string, limits: AdmissionLimits, exempt: boolean, now = Date.now()): Promise<Admission> {
    const k = this.keys;
    const [status, value] = await this.redis.vistyleAdmit(
      k.userInFlight(userKey),
      k.userRecent(userKey),
      k.waiting,
      k.running,
      k.workers,
      k.capacity,
      now,
      requestId,
      limits.userInFlight,
      limits.userPerMinute,
      limits.maxQueueLength,
      this.leaseMs,
      exempt ? 1 : 0,
    );
    if (status === 'ok') return { ok: true, position: Number(value) };
    if (status === 'in-flight') return { ok: false, reason: 'in-flight', inFlight: Number(value) };
    if (status === 'per-minute') return { ok: false, reason: 'per-minute', retryAfterMs: Number(value) };
    return { ok: false, reason: 'queue-full', waiting: Number(value) };
  }

  /** The request ended (answered, failed, cancelled): its user's slot and its queue place are free. */
  async release(requestId: string, userKey: string): Promise<void> {
    await this.redis.vistyleRelease(this.keys.userInFlight(userKey), this.keys.waiting, this.keys.running, requestId);
  }

  /** A worker started the request: it no longer waits. */
  async started(requestId: string, now = Date.now()): Promise<void> {
    await this.redis.vistyleStarted(this.keys.waiting, this.keys.running, requestId, now + this.leaseMs);
  }

  /** Renews the leases of requests this front end still holds (in flight for their user; waiting). */
  async renewAdmitted(entries: { requestId: string; userKey: string; waiting: boolean }[], now = Date.now()): Promise<void> {
    if (entries.length === 0) return;
    const expiry = now + this.leaseMs;
    const pipeline = this.redis.pipeline();
    for (const entry of entries) {
      pipeline.zadd(this.keys.userInFlight(entry.userKey), 'XX', expiry, entry.requestId);
      pipeline.pexpire(this.keys.userInFlight(entry.userKey), this.leaseMs * 2);
      if (entry.waiting) pipeline.zadd(this.keys.waiting, 'XX', expiry, entry.requestId);
    }
    await pipeline.exec();
  }

  /** Renews the leases of requests this worker runs. */
  async renewRunning(requestIds: string[], now = Date.now()): Promise<void> {
    if (requestIds.length === 0) return;
    const expiry = now + this.leaseMs;
    const pipeline = this.redis.pipeline();
    for (const id of requestIds) pipeline.zadd(this.keys.running, 'XX', expiry, id);
    await pipeline.exec();
  }

  /** A worker finished running the request (the front end releases the rest). */
  async finishedRunning(requestId: string): Promise<void> {
    await this.redis.zrem(this.keys.running, requestId);
  }

  async counts(now = Date.now()): Promise<QueueCounts> {
    const k = this.keys;
    const [admitted, running, capacity, workers] = await this.redis.vistyleCounts(k.waiting, k.running, k.workers, k.capacity, now);
    const free = Math.max(0, capacity - running);
    return { admitted, running, capacity, workers, waiting: Math.max(0, admitted - free) };
  }
}
