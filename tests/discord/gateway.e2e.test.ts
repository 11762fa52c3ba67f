// The Discord gateway connection through the real discord.js client against the fake Discord:
// an unreachable gateway at start-up is retried with growing waits and start() fails after a
// bounded time; an outage after start is retried with back-off, logged at a sane rate and shown in
// status(); stop() during start-up ends it at once. No engine is needed: no request is asked.
import { afterEach, describe, expect, it } from 'vitest';
import { createDiscordAdapter, type DiscordAdapter } from '../../adapters/discord/index.js';
import type { BotCore } from '../../src/bot/types.js';
import { isVistyleError } from '../../src/errors.js';
import { FakeDiscord } from '../support/fake-discord/index.js';
import { LogCapture, sleep } from './harness.js';

let fake: FakeDiscord | undefined;
let adapter: DiscordAdapter | undefined;

afterEach(async () => {
  await adapter?.stop();
  adapter = undefined;
  await fake?.close();
  fake = undefined;
});

/** The adapter never reaches the core here: registration reads only the limits. */
const core = { limits: { maxImageBytes: 1, maxQuestionChars: 100 } } as unknown as BotCore;

function makeAdapter(f: FakeDiscord, logs: LogCapture, extras: Parameters<typeof createDiscordAdapter>[0] extends infer T ? Partial<T> : never = {}) {
  adapter = createDiscordAdapter({
    core,
    logger: logs.logger,
    token: f.token,
    applicationId: f.applicationId,
    apiRoot: f.apiRoot,
    mentionMode: false,
    guildId: f.guildId,
    reconnectBackoff: { initialMs: 300, maxMs: 1000 },
    ...extras,
  });
  return adapter;
}

const gatewayLines = (logs: LogCapture) => logs.records().filter((r) => /discord gateway/.test(String(r.msg)));

describe('discord gateway connection', () => {
  it('backs off while the gateway is unreachable at start-up and fails start() after the bounded time', async () => {
    fake = await FakeDiscord.start();
    fake.gatewayDown = true;
    const logs = new LogCapture();
    const bot = makeAdapter(fake, logs, { startTimeoutMs: 6000 });
    const startedAt = Date.now();
    const starting = bot.start().then(
      () => undefined,
      (error: unknown) => error,
    );
    await fake.waitFor(() => fake!.gatewayAttempts.length >= 2, 'two connection attempts');
    const during = bot.status();
    expect(during).toMatchObject({ platform: 'discord', state: 'starting', connected: false });
    expect(during.reconnectingSince).toBeGreaterThanOrEqual(startedAt);
    expect(during.lastError).toMatch(/ECONNRESET|socket hang up|closed/i);

    const error = await starting;
    const tookMs = Date.now() - startedAt;
    expect(isVistyleError(error, 'NETWORK')).toBe(true);
    expect((error as Error).message).toMatch(/could not connect to Discord within 6 s/);
    expect(tookMs).toBeGreaterThanOrEqual(5900);
    expect(tookMs).toBeLessThan(11_000);
    expect(bot.status()).toMatchObject({ state: 'stopped', connected: false });

    // Growing waits (0.3 s doubling to 1 s, after discord.js's own 0.5 s), not one attempt every
    // 0.5 s (about 12 in 6 s): the later gaps are longer.
    const attempts = fake.gatewayAttempts;
    const gaps = attempts.slice(1).map((at, i) => at - attempts[i]!);
    expect(attempts.length).toBeLessThanOrEqual(8);
    expect(Math.max(...gaps)).toBeGreaterThanOrEqual(1200);
    // A sane number of log lines: one warning for the outage, not one per attempt.
    expect(gatewayLines(logs).length).toBeLessThanOrEqual(2);
    expect(logs.records().filter((r) => r.level === 40).length).toBeLessThanOrEqual(3);

    // Given up means given up: no attempt comes after start() failed.
    const count = attempts.length;
    fake.gatewayDown = false;
    await sleep(2500);
    expect(fake.gatewayAttempts.length).toBe(count);
    expect(fake.gateway.identifies).toEqual([]);
  }, 30_000);

  it('reports an outage after start in status() and the logs at a sane rate, backs off, and recovers', async () => {
    fake = await FakeDiscord.start();
    const logs = new LogCapture();
    const bot = makeAdapter(fake, logs, { outageReportEveryMs: 60_000 });
    await bot.start();
    expect(bot.status()).toMatchObject({ state: 'connected', connected: true, reconnectingSince: null });

    const outageAt = Date.now();
    fake.gatewayDown = true;
    const before = fake.gatewayAttempts.length;
    fake.gateway.closeAll(4000, 'unknown error');
    await fake.waitFor(() => bot.status().state === 'reconnecting', 'the reconnecting state');
    await sleep(4000);
    const down = bot.status();
    expect(down).toMatchObject({ state: 'reconnecting', connected: false });
    expect(down.reconnectingSince).toBeGreaterThanOrEqual(outageAt - 50);
    expect(down.lastError).toBeTruthy();
    const attempts = fake.gatewayAttempts.slice(before);
    expect(attempts.length).toBeGreaterThanOrEqual(2);
    expect(attempts.length).toBeLessThanOrEqual(6); // every 0.5 s would be 8
    const warnings = logs.records().filter((r) => r.msg === 'discord gateway unreachable; retrying with back-off');
    expect(warnings).toHaveLength(1);
    expect(logs.records().filter((r) => r.msg === 'discord gateway still unreachable; retrying')).toEqual([]);

    fake.gatewayDown = false;
    await fake.waitFor(() => bot.status().connected, 'the connection to come back', 10_000);
    expect(bot.status()).toMatchObject({ state: 'connected', reconnectingSince: null });
    await fake.waitFor(() => logs.records().find((r) => r.msg === 'discord gateway connection is back'), 'the recovery log line');
  }, 30_000);

  it('stops at once when stop() comes while start() is still retrying', async () => {
    fake = await FakeDiscord.start();
    fake.gatewayDown = true;
    const logs = new LogCapture();
    const bot = makeAdapter(fake, logs, { startTimeoutMs: 60_000 });
    const starting = bot.start().then(
      () => undefined,
      (error: unknown) => error,
    );
    await fake.waitFor(() => fake!.gatewayAttempts.length >= 2, 'two connection attempts');
    const stoppedAt = Date.now();
    await bot.stop();
    const error = await starting;
    expect(Date.now() - stoppedAt).toBeLessThan(2000);
    expect(isVistyleError(error, 'CANCELLED')).toBe(true);
    expect(bot.status().state).toBe('stopped');
    const count = fake.gatewayAttempts.length;
    fake.gatewayDown = false;
    await sleep(1500);
    expect(fake.gatewayAttempts.length).toBe(count);
  }, 30_000);

  it('stops while an attempt hangs in its handshake; that attempt failing later is no uncaught error', async () => {
    fake = await FakeDiscord.start();
    fake.gatewayHangs = true;
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      const logs = new LogCapture();
      const bot = makeAdapter(fake, logs, { startTimeoutMs: 60_000 });
      const starting = bot.start().then(
        () => undefined,
        (error: unknown) => error,
      );
      await fake.waitFor(() => fake!.gatewayAttempts.length >= 1, 'a connection attempt');
      await bot.stop();
      expect(isVistyleError(await starting, 'CANCELLED')).toBe(true);
      // the host goes away: the abandoned attempt's socket is reset under the stopped client
      expect(fake.dropHungConnections()).toBe(1);
      await sleep(500);
      expect(uncaught).toEqual([]);
      expect(fake.gatewayAttempts).toHaveLength(1);
    } finally {
      process.off('uncaughtException', onUncaught);
    }
  }, 30_000);

  it('closes an attempt whose handshake completes only after stop()', async () => {
    fake = await FakeDiscord.start();
    fake.gatewayHangs = true;
    const logs = new LogCapture();
    const bot = makeAdapter(fake, logs, { startTimeoutMs: 60_000 });
    const starting = bot.start().catch(() => undefined);
    await fake.waitFor(() => fake!.gatewayAttempts.length >= 1, 'a connection attempt');
    await bot.stop();
    await starting;
    // the hung host answers at last: the stopped client must not keep that connection open
    expect(fake.answerHungConnections()).toBe(1);
    await fake.waitFor(() => fake!.gateway.accepted === 1, 'the late handshake');
    await fake.waitFor(() => fake!.gateway.sessions.size === 0, 'the abandoned connection closed');
  }, 30_000);
});
