// `vistyle start`: refuses to run without a platform token (naming the variables), names a bad
// variable, and runs end to end — real telegraf against the fake Bot API, the real engine on a
// tiny checkpoint, metrics on an HTTP port — then shuts down cleanly.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { runVistyle } from '../support/run-cli.js';
import { runStart, type RunningBot } from '../../src/cli/commands/start.js';
import { FakeTelegram } from '../support/fake-telegram/index.js';
import { tinyModel } from '../support/tiny-model.js';

const PNG = readFileSync(new URL('../fixtures/images/test_image_64x48.png', import.meta.url));

afterEach(() => {
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
});

const cli = (args: string[]) => runVistyle(args);

/** `vistyle start` in this process: real telegraf against a fake Bot API, the real engine. */
async function startOnFakeTelegram(options: { env?: Record<string, string>; signal?: AbortSignal; beforeStart?: () => void } = {}) {
  const { modelDir } = await tinyModel();
  const fake = await FakeTelegram.start();
  const home = mkdtempSync(join(tmpdir(), 'vistyle-start-'));
  const bot = {
    fake,
    logs: '',
    app: undefined as RunningBot | undefined,
    running: undefined as unknown as Promise<void>,
    async cleanup() {
      await fake.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
  const logDestination = new Writable({
    write(chunk, _enc, done) {
      bot.logs += String(chunk);
      done();
    },
  });
  options.beforeStart?.();
  bot.running = runStart({
    env: {
      TELEGRAM_BOT_TOKEN: fake.token,
      TELEGRAM_API_ROOT: fake.apiRoot,
      VISTYLE_MODEL_DIR: modelDir,
      VISTYLE_HOME: home,
      VISTYLE_THREADS: '1',
      VISTYLE_SHUTDOWN_DRAIN_SECONDS: '5',
      ...options.env,
    },
    ...(options.signal ? { signal: options.signal } : {}),
    logDestination,
    onStarted: (started) => {
      bot.app = started;
    },
  });
  return bot;
}

describe('vistyle start', () => {
  it('says exactly which variables to set and exits non-zero when no platform is configured', async () => {
    vi.stubEnv('VISTYLE_ENV_FILE', '/nonexistent/.env');
    vi.stubEnv('TELEGRAM_BOT_TOKEN', '');
    vi.stubEnv('DISCORD_TOKEN', '');
    vi.stubEnv('DISCORD_APPLICATION_ID', '');
    const { code, stderr } = await cli(['start']);
    expect(code).toBe(78); // EX_CONFIG: systemd does not restart it (RestartPreventExitStatus)
    expect(stderr).toContain('TELEGRAM_BOT_TOKEN');
    expect(stderr).toContain('DISCORD_TOKEN');
    expect(stderr).toContain('DISCORD_APPLICATION_ID');
  });

  it('names an invalid variable', async () => {
    vi.stubEnv('VISTYLE_ENV_FILE', '/nonexistent/.env');
    vi.stubEnv('TELEGRAM_BOT_TOKEN', '123456:abcdefghijk');
    vi.stubEnv('VISTYLE_USER_PER_MINUTE', 'lots');
    const { code, stderr } = await cli(['start']);
    expect(code).toBe(78);
    expect(stderr).toContain('VISTYLE_USER_PER_MINUTE');
    expect(stderr).not.toContain('abcdefghijk');
  });

  it('keeps serving after a stray rejection, and shuts down gracefully on an uncaught exception', async () => {
    // vitest's own listeners (taken before the bot adds its own) would fail the run on these
    // events: they are handed to the bot's listeners alone below.
    let saved = { rejection: [] as NodeJS.UnhandledRejectionListener[], exception: [] as NodeJS.UncaughtExceptionListener[] };
    const bot = await startOnFakeTelegram({
      beforeStart: () => {
        saved = { rejection: process.listeners('unhandledRejection'), exception: process.listeners('uncaughtException') };
      },
    });
    const { fake } = bot;
    const previousExitCode = process.exitCode;
    try {
      for (const listener of saved.rejection) process.off('unhandledRejection', listener);
      for (const listener of saved.exception) process.off('uncaughtException', listener);
      // during start-up (the model is loading): logged, and start-up goes on
      process.emit('unhandledRejection', new Error(`stray failure for ${fake.token}`), Promise.resolve());
      expect(bot.logs).toContain('unhandled promise rejection; the bot keeps running');
      await vi.waitFor(() => expect(bot.app).toBeDefined(), { timeout: 120_000, interval: 50 });
      expect(bot.logs).not.toContain('"msg":"shutting down"');
      expect(bot.logs).not.toContain(fake.token);

      // while running
      bot.logs = '';
      process.emit('unhandledRejection', new Error(`stray failure for ${fake.token}`), Promise.resolve());
      expect(bot.logs).toContain('unhandled promise rejection; the bot keeps running');
      const alice = fake.user(1002, { language_code: 'en' });
      await fake.sendPhoto(alice, PNG, { caption: 'still there?' });
      await fake.waitFor(() => bot.logs.includes('"msg":"request answered"'));

      (process.emit as (event: string, ...args: unknown[]) => boolean)('uncaughtException', new Error('boom'));
      await bot.running;
      expect(bot.logs).toContain('uncaught exception; shutting down gracefully');
      expect(bot.logs).toContain('"msg":"stopped"');
      expect(process.exitCode).toBe(1);
      expect(bot.logs).not.toContain(fake.token);
      // released once stopped: no listener of the bot's is left behind
      expect(process.listeners('unhandledRejection')).toHaveLength(0);
    } finally {
      for (const listener of saved.rejection) process.on('unhandledRejection', listener);
      for (const listener of saved.exception) process.on('uncaughtException', listener);
      process.exitCode = previousExitCode;
      await bot.cleanup();
    }
  });

  it('runs the Telegram adapter against the model, answers a photo, serves metrics, and shuts down', async () => {
    const stop = new AbortController();
    const bot = await startOnFakeTelegram({ env: { VISTYLE_METRICS_PORT: '0', VISTYLE_LOG_LEVEL: 'info' }, signal: stop.signal });
    const { fake } = bot;
    try {
      await vi.waitFor(() => expect(bot.app).toBeDefined(), { timeout: 120_000, interval: 50 });
      expect(bot.app!.adapters.map((a) => a.name)).toEqual(['telegram']);

      const alice = fake.user(1001, { language_code: 'en' });
      await fake.sendPhoto(alice, PNG, { caption: 'what is this?' });
      const metricsUrl = `http://127.0.0.1:${bot.app!.metricsPort}/metrics`;
      await vi.waitFor(
        async () => {
          const text = await (await fetch(metricsUrl)).text();
          expect(text).toMatch(/vistyle_requests_total\{platform="telegram",outcome="answered"\} 1/);
        },
        { timeout: 60_000, interval: 100 },
      );
      expect(fake.messagesIn(alice.id).length).toBeGreaterThan(0);

      // /style is persisted in the configured database
      fake.sendCommand(alice, '/style grumpy');
      await fake.waitFor(() => bot.app!.core.showStyle({ user: { platform: 'telegram', id: '1001' }, chat: { platform: 'telegram', id: '1001', kind: 'private' } }).current.id === 'grumpy');
    } finally {
      stop.abort();
      await bot.running;
      await bot.cleanup();
    }
    expect(bot.logs).toContain('"msg":"request answered"');
    expect(bot.logs).toContain('"msg":"stopped"');
    expect(bot.logs).not.toContain(fake.token);
  });
});
