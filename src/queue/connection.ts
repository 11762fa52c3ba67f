// Redis connections of the queue roles. VISTYLE_QUEUE_URL is redis://[user:password@]host[:port][/db]
// or rediss://… (TLS). The URL is parsed once into ioredis options; logs only ever see
// `describeRedisUrl()`, which leaves the password out. Every connection retries for ever (a Redis
// restart is a pause, not a failure): commands issued while it is down wait in ioredis's offline
// queue and go out, in order, once it is back.
import type { ConnectionOptions as BullConnectionOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import { VistyleError } from '../errors.js';

export interface RedisTarget {
  options: RedisOptions;
  /** For logs: scheme, user, host, port and db; never the password. */
  description: string;
}

export function parseRedisUrl(url: string): RedisTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new VistyleError('CONFIG_INVALID', 'VISTYLE_QUEUE_URL is not a URL (expected redis://host:port or rediss://user:password@host:port)');
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new VistyleError('CONFIG_INVALID', `VISTYLE_QUEUE_URL must start with redis:// or rediss:// (got ${parsed.protocol}//)`);
  }
  const dbText = parsed.pathname.replace(/^\//, '');
  const db = dbText === '' ? 0 : Number(dbText);
  if (!Number.isInteger(db) || db < 0) throw new VistyleError('CONFIG_INVALID', `VISTYLE_QUEUE_URL names database "${dbText}"; expected a number`);
  const tls = parsed.protocol === 'rediss:';
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  const port = parsed.port ? Number(parsed.port) : 6379;
  const options: RedisOptions = {
    host,
    port,
    db,
    ...(parsed.username ? { username: decodeURIComponent(parsed.username) } : {}),
    ...(parsed.password ? { password: decodeURIComponent(parsed.password) } : {}),
    ...(tls ? { tls: { servername: host } } : {}),
  };
  const user = parsed.username ? `${decodeURIComponent(parsed.username)}${parsed.password ? ':***' : ''}@` : parsed.password ? ':***@' : '';
  return { options, description: `${parsed.protocol}//${user}${host}:${port}/${db}` };
}

/** Options for every connection of ours and BullMQ's: wait through outages, never give up on a command. */
export function connectionOptions(target: RedisTarget, name: string): RedisOptions {
  return {
    ...target.options,
    connectionName: name,
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    // 100 ms, 200 ms, ... up to 2 s between attempts, for ever
    retryStrategy: (times: number) => Math.min(2_000, 100 * times),
  };
}

/** The same, typed for BullMQ's constructors (its RedisOptions mirror ioredis's). */
export function bullConnection(target: RedisTarget, name: string): BullConnectionOptions {
  return connectionOptions(target, name) as BullConnectionOptions;
}

export function openRedis(target: RedisTarget, name: string): Redis {
  const redis = new Redis(connectionOptions(target, name));
  // Connection errors are reported through the owner's state tracking; an 'error' event without a
  // listener would crash the process.
  redis.on('error', () => undefined);
  return redis;
}
