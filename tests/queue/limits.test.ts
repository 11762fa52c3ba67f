// The deployment-wide limits (src/queue/admission.ts, redis-scheduler.ts) against a real Redis:
// two front ends' schedulers share per-user limits and the queue cap atomically; leases of a dead
// front end lapse; Redis URLs with auth connect and never show the password.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { redactSecrets, createLogger } from '../../src/log.js';
import { Admissions } from '../../src/queue/admission.js';
import { openRedis, parseRedisUrl } from '../../src/queue/connection.js';
import { QueueKeys } from '../../src/queue/keys.js';
import { RedisScheduler } from '../../src/queue/redis-scheduler.js';
import { WorkerRegistration } from '../../src/queue/registry.js';
import { LimitError } from '../../src/scheduler/scheduler.js';
import { skipWithoutRedis, TestRedis } from '../support/redis-server.js';

const logger = createLogger({ level: 'silent' });

describe('Redis URLs', () => {
  it('parses redis:// and rediss:// with auth, and describes them without the password', () => {
    const plain = parseRedisUrl('redis://127.0.0.1:6390/3');
    expect(plain.options).toMatchObject({ host: '127.0.0.1', port: 6390, db: 3 });
    expect(plain.options.tls).toBeUndefined();
    const tls = parseRedisUrl('rediss://queue-user:p%40ss-w0rd-xyz@redis.example:6380');
    expect(tls.options).toMatchObject({ host: 'redis.example', port: 6380, db: 0, username: 'queue-user', password: 'p@ss-w0rd-xyz' });
    expect(tls.options.tls).toEqual({ servername: 'redis.example' });
    expect(tls.description).toBe('rediss://queue-user:***@redis.example:6380/0');
    expect(tls.description).not.toContain('w0rd');
  });

  it('registers the password as a secret and never echoes the URL in a config error', () => {
    loadConfig({ VISTYLE_QUEUE_URL: 'rediss://u:hunter2-but-longer@h:6380' });
    expect(redactSecrets('auth failed for hunter2-but-longer')).not.toContain('hunter2-but-longer');
    expect(() => loadConfig({ VISTYLE_QUEUE_URL: 'http://u:other-secret-pw@h' })).toThrow(/VISTYLE_QUEUE_URL/);
    try {
      loadConfig({ VISTYLE_QUEUE_URL: 'http://u:other-secret-pw@h' });
    } catch (error) {
      expect(String((error as Error).message)).not.toContain('other-secret-pw');
    }
  });
});

describe.skipIf(skipWithoutRedis())('deployment-wide limits in Redis', () => {
  let server: TestRedis;
  const connections: Redis[] = [];
  let prefixCounter = 0;

  beforeAll(async () => {
    server = await TestRedis.start({ password: 'queue-test-password' });
  }, 20_000);
  afterAll(async () => {
    for (const redis of connections) redis.disconnect();
    await server?.remove();
  });

  function frontEnd(keys: QueueKeys, limits: { userInFlight?: number; userPerMinute?: number; maxQueueLength?: number } = {}, leaseMs?: number) {
    const redis = openRedis(parseRedisUrl(server.url), 'test');
    connections.push(redis);
    const admissions = new Admissions(redis, keys, leaseMs);
    const scheduler = new RedisScheduler({
      admissions,
      userInFlight: limits.userInFlight ?? 2,
      userPerMinute: limits.userPerMinute ?? 0,
      maxQueueLength: limits.maxQueueLength ?? 100,
      requestTimeoutMs: 60_000,
      logger,
    });
    return { redis, admissions, scheduler };
  }

  /** A job whose run waits until released; settles with its outcome. */
  function hold(scheduler: RedisScheduler, id: string, userKey: string) {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const positions: number[] = [];
    const job = scheduler.submit({ id, userKey, onPosition: (p) => positions.push(p), run: () => gate.then(() => id) });
    const outcome = job.result.then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    return { release, outcome, positions };
  }

  it('connects with the password in the URL', async () => {
    const redis = openRedis(parseRedisUrl(server.url), 'auth-test');
    connections.push(redis);
    expect(await redis.ping()).toBe('PONG');
  });

  it('holds a user’s in-flight limit across two front ends, atomically', async () => {
    const keys = new QueueKeys(`t${prefixCounter++}`);
    const a = frontEnd(keys, { userInFlight: 2 });
    const b = frontEnd(keys, { userInFlight: 2 });
    const jobs = Array.from({ length: 6 }, (_, i) => hold(i % 2 ? a.scheduler : b.scheduler, `r${i}`, 'telegram:7'));
    const other = hold(a.scheduler, 'other', 'telegram:8');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const refused = await Promise.all(jobs.map((job) => Promise.race([job.outcome, new Promise((resolve) => setTimeout(() => resolve('held'), 50))])));
    const held = refused.filter((outcome) => outcome === 'held');
    expect(held).toHaveLength(2);
    for (const outcome of refused.filter((o) => o !== 'held') as { ok: false; error: unknown }[]) {
      expect(outcome.error).toBeInstanceOf(LimitError);
      expect((outcome.error as LimitError).reason).toBe('in-flight');
    }
    // someone else is not affected
    expect(await Promise.race([other.outcome, new Promise((resolve) => setTimeout(() => resolve('held'), 50))])).toBe('held');

    // a finished request frees its slot for the user, on either front end
    for (const job of jobs) job.release();
    other.release();
    await Promise.all(jobs.map((job) => job.outcome));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const again = hold(b.scheduler, 'r-again', 'telegram:7');
    await new Promise((resolve) => setTimeout(resolve, 200));
    again.release();
    expect(await again.outcome).toEqual({ ok: true, value: 'r-again' });
  });

  it('holds the per-minute limit across front ends and says when to retry', async () => {
    const keys = new QueueKeys(`t${prefixCounter++}`);
    const a = frontEnd(keys, { userInFlight: 10, userPerMinute: 3 });
    const b = frontEnd(keys, { userInFlight: 10, userPerMinute: 3 });
    const outcomes = [];
    for (let i = 0; i < 4; i++) {
      const job = hold(i % 2 ? a.scheduler : b.scheduler, `m${i}`, 'discord:1');
      job.release();
      outcomes.push(await job.outcome);
    }
    expect(outcomes.slice(0, 3).every((o) => o.ok)).toBe(true);
    const last = outcomes[3] as { ok: false; error: LimitError };
    expect(last.ok).toBe(false);
    expect(last.error.reason).toBe('per-minute');
    expect(Number(last.error.details?.retryAfterMs)).toBeGreaterThan(55_000);
    expect(Number(last.error.details?.retryAfterMs)).toBeLessThanOrEqual(60_000);
  });

  it('caps the waiting line over the free worker slots, with positions from the shared count', async () => {
    const keys = new QueueKeys(`t${prefixCounter++}`);
    const a = frontEnd(keys, { maxQueueLength: 2 });
    const b = frontEnd(keys, { maxQueueLength: 2 });
    const registration = new WorkerRegistration(a.redis, keys, { name: 'w', queue: 'answers-base', adapters: [], slots: 1, info: undefined }, 1_000);
    await registration.register();
    const jobs = [];
    for (let i = 0; i < 4; i++) {
      jobs.push(hold(i % 2 ? a.scheduler : b.scheduler, `q${i}`, `telegram:${100 + i}`));
      await new Promise((resolve) => setTimeout(resolve, 60)); // in order
    }
    const last = await jobs[3]!.outcome;
    expect(last.ok).toBe(false);
    expect((last as { error: LimitError }).error.reason).toBe('queue-full');
    expect(jobs.slice(0, 3).map((job) => job.positions[0])).toEqual([1, 1, 2]);
    await a.scheduler.refreshCounts();
    expect(a.scheduler.status()).toMatchObject({ waiting: 2, slots: 1 });
    for (const job of jobs) job.release();
    await Promise.all(jobs.map((job) => job.outcome));
    await registration.remove();
  });

  it('admits a request id once: the same admission sent again (after a lost reply) is ok, not refused for its own slot', async () => {
    const keys = new QueueKeys(`t${prefixCounter++}`);
    const front = frontEnd(keys, { userInFlight: 1 });
    const limits = { userInFlight: 1, userPerMinute: 1, maxQueueLength: 10 };
    const first = await front.admissions.admit('resent-1', 'telegram:11', limits, false);
    expect(first.ok).toBe(true);
    // what ioredis does when the connection drops after the script ran: the same command again
    const again = await front.admissions.admit('resent-1', 'telegram:11', limits, false);
    expect(again).toEqual({ ok: true, position: 1 });
    expect((await front.admissions.counts()).admitted).toBe(1);
    // a different request of that user is still held to both limits
    expect(await front.admissions.admit('resent-2', 'telegram:11', limits, false)).toMatchObject({ ok: false, reason: 'in-flight' });
    await front.admissions.release('resent-1', 'telegram:11');
    expect(await front.admissions.admit('resent-3', 'telegram:11', limits, false)).toMatchObject({ ok: false, reason: 'per-minute' });
  });

  it('frees the slots of a front end that died when its leases lapse', async () => {
    const keys = new QueueKeys(`t${prefixCounter++}`);
    const dead = frontEnd(keys, { userInFlight: 1 }, 300);
    const first = await dead.admissions.admit('gone-1', 'telegram:9', { userInFlight: 1, userPerMinute: 0, maxQueueLength: 10 }, false);
    expect(first.ok).toBe(true);
    const refused = await dead.admissions.admit('gone-2', 'telegram:9', { userInFlight: 1, userPerMinute: 0, maxQueueLength: 10 }, false);
    expect(refused).toMatchObject({ ok: false, reason: 'in-flight' });
    await new Promise((resolve) => setTimeout(resolve, 400)); // nobody renews
    const later = await dead.admissions.admit('gone-3', 'telegram:9', { userInFlight: 1, userPerMinute: 0, maxQueueLength: 10 }, false);
    expect(later.ok).toBe(true);
    expect((await dead.admissions.counts()).admitted).toBe(1);
  });
});
