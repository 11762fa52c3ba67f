// The Telegram adapter's connection to the Bot API, through real telegraf: an unreachable API at
// start-up is retried a bounded number of times, a stop() meanwhile ends start() at once (and so
// does a signal to `vistyle start`), and an outage of long polling shows in status() and the logs
// at a sane rate.
import { createServer, type Server } from 'node:net';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { TelegramAdapter } from '../../adapters/telegram/index.js';
import { runStart } from '../../src/cli/commands/start.js';
import type { BotCore } from '../../src/bot/types.js';
import { isVistyleError } from '../../src/errors.js';
import { FakeTelegram } from '../support/fake-telegram/index.js';
import { ScriptedEngine } from '../support/scripted-engine.js';
import { LogCapture, settledReplies, sleep, startBot, tempDir, type BotUnderTest } from './harness.js';

const temp = tempDir();
let fake: FakeTelegram | undefined;
let bot: BotUnderTest | undefined;
let deadEnd: Server | undefined;

afterEach(async () => {
  await bot?.stop();
  bot = undefined;
  await fake?.close();
  fake = undefined;
  await new Promise<void>((resolve) => (deadEnd ? deadEnd.close(() => resolve()) : resolve()));
  deadEnd = undefined;
});
afterAll(() => temp.remove());

/** A Bot API root where every connection is dropped at once (an unreachable or broken API). */
async function unreachableApiRoot(): Promise<string> {
  deadEnd = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve) => deadEnd!.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(deadEnd.address() as AddressInfo).port}`;
}

/** start() fails before the core is ever used. */
const unusedCore = {} as BotCore;

describe('Telegram connection', () => {
  it('gives up start() after a bounded number of getMe attempts on an unreachable API, logging at a sane rate', async () => {
    const logs = new LogCapture();
    const adapter = new TelegramAdapter({ core: unusedCore, logger: logs.logger, token: '42:AAfake_token_for_connection_tests', apiRoot: await unreachableApiRoot(), startAttempts: 2 });
    const startedAt = Date.now();
    const starting = adapter.start().then(
      () => undefined,
      (error: unknown) => error,
    );
    await sleep(500);
    expect(adapter.status()).toMatchObject({ platform: 'telegram', state: 'starting', connected: false });
    expect(adapter.status().lastError).toBeTruthy();
    const error = await starting;
    expect(isVistyleError(error, 'NETWORK')).toBe(true);
    expect(Date.now() - startedAt).toBeLessThan(10_000);
    expect(adapter.status().state).toBe('stopped');
    expect(logs.parsed().filter((line) => String(line.msg).startsWith('Telegram Bot API'))).toHaveLength(1);
    expect(logs.lines.join('\n')).not.toContain('AAfake_token_for_connection_tests');
    await adapter.stop();
  });

  it('ends start() at once when stop() comes while it waits to retry', async () => {
    const logs = new LogCapture();
    const adapter = new TelegramAdapter({ core: unusedCore, logger: logs.logger, token: '42:AAfake_token_for_connection_tests', apiRoot: await unreachableApiRoot() });
    const starting = adapter.start().then(
      () => undefined,
      (error: unknown) => error,
    );
    await sleep(500); // the first getMe failed; it now waits 2 s (then 4, 6, 8: ~20 s in all)
    const stoppedAt = Date.now();
    await adapter.stop();
    const error = await starting;
    expect(Date.now() - stoppedAt).toBeLessThan(1000);
    expect(isVistyleError(error, 'CANCELLED')).toBe(true);
  });

  it('`vistyle start` stops at once on a signal while the Bot API is still being retried', async () => {
    const home = mkdtempSync(join(tmpdir(), 'vistyle-start-stop-'));
    let logs = '';
    const logDestination = new Writable({
      write(chunk, _encoding, done) {
        logs += String(chunk);
        done();
      },
    });
    const stop = new AbortController();
    try {
      const running = runStart({
        env: {
          TELEGRAM_BOT_TOKEN: '42:AAfake_token_for_connection_tests',
          TELEGRAM_API_ROOT: await unreachableApiRoot(),
          VISTYLE_HOME: home,
          VISTYLE_MODEL_DIR: home, // never loaded: the engine comes from the factory
        },
        signal: stop.signal,
        logDestination,
        engineFactory: async () => new ScriptedEngine(() => 'never asked'),
      });
      const deadline = Date.now() + 15_000;
      while (!logs.includes('Telegram Bot API unreachable') && Date.now() < deadline) await sleep(50);
      expect(logs).toContain('Telegram Bot API unreachable');
      const stoppedAt = Date.now();
      stop.abort();
      await running;
      expect(Date.now() - stoppedAt).toBeLessThan(2000);
      expect(logs).toContain('"msg":"stop requested during start-up; stopping now"');
      expect(logs).toContain('"msg":"stopped"');
      expect(logs).not.toContain('AAfake_token_for_connection_tests');
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('shows a long-polling outage in status() and the logs (once), and its end', { timeout: 30_000 }, async () => {
    fake = await FakeTelegram.start();
    const logs = new LogCapture();
    bot = await startBot({ fake, engine: new ScriptedEngine(() => 'ok'), dbPath: join(temp.dir, 'connection.db'), logs });
    const alice = fake.user(3001);
    const first = fake.sendCommand(alice, '/help');
    await settledReplies(fake, alice.id, first.message_id);
    expect(bot.adapter.status()).toMatchObject({ state: 'connected', connected: true, reconnectingSince: null });

    // The next getUpdates calls fail (telegraf retries them by itself, 5 s apart, without a word).
    fake.failNext('getUpdates', { error_code: 502, description: 'Bad Gateway' }, { times: 2 });
    const second = fake.sendCommand(alice, '/styles'); // ends the pending long poll
    await fake.waitFor(() => bot!.adapter.status().state === 'reconnecting', 10_000, 'the outage');
    expect(bot.adapter.status()).toMatchObject({ connected: false, lastError: 'Bad Gateway' });
    await settledReplies(fake, alice.id, second.message_id);
    await fake.waitFor(() => fake!.callsTo('getUpdates').filter((c) => c.error?.error_code === 502).length === 2, 10_000, 'two failed polls');
    const third = fake.sendCommand(alice, '/help'); // a poll that succeeds
    await settledReplies(fake, alice.id, third.message_id);
    await fake.waitFor(() => bot!.adapter.status().connected, 10_000, 'the connection to be back');
    const lines = logs.parsed().map((line) => String(line.msg));
    expect(lines.filter((msg) => msg === 'Telegram Bot API unreachable; retrying with back-off')).toHaveLength(1);
    expect(lines.filter((msg) => msg === 'Telegram Bot API still unreachable; retrying')).toEqual([]);
    expect(lines).toContain('Telegram Bot API connection is back');
  });
});
