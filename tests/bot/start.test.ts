// `vistyle start`: refuses to run without a platform token (naming the variables), names a bad
// variable, and runs end to end — real telegraf against the fake Bot API, the real engine on a
// tiny checkpoint, metrics on an HTTP port — then shuts down cleanly.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { runStart, type RunningBot } from '../../src/cli/commands/start.js';
import { FakeTelegram } from '../support/fake-telegram/index.js';
import { tinyModel } from '../support/tiny-model.js';

const PNG = readFileSync(new URL('../fixtures/images/test_image_64x48.png', import.meta.url));

afterEach(() => {
  vi.unstubAllEnvs();
  vi.restoreAllMocks();
});

async function cli(args: string[]): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  const code = await runCli(['node', 'vistyle', ...args]);
  vi.mocked(process.stderr.write).mockRestore();
  return { code, stderr };
}

describe('vistyle start', () => {
  it('says exactly which variables to set and exits non-zero when no platform is configured', async () => {
    vi.stubEnv('VISTYLE_ENV_FILE', '/nonexistent/.env');
    vi.stubEnv('TELEGRAM_BOT_TOKEN', '');
    vi.stubEnv('DISCORD_TOKEN', '');
    vi.stubEnv('DISCORD_APPLICATION_ID', '');
    const { code, stderr } = await cli(['start']);
    expect(code).not.toBe(0);
    expect(stderr).toContain('TELEGRAM_BOT_TOKEN');
    expect(stderr).toContain('DISCORD_TOKEN');
    expect(stderr).toContain('DISCORD_APPLICATION_ID');
  });

  it('names an invalid variable', async () => {
    vi.stubEnv('VISTYLE_ENV_FILE', '/nonexistent/.env');
    vi.stubEnv('TELEGRAM_BOT_TOKEN', '123456:abcdefghijk');
    vi.stubEnv('VISTYLE_USER_PER_MINUTE', 'lots');
    const { code, stderr } = await cli(['start']);
    expect(code).toBe(1);
    expect(stderr).toContain('VISTYLE_USER_PER_MINUTE');
    expect(stderr).not.toContain('abcdefghijk');
  });

  it('keeps serving after a stray rejection, and shuts down gracefully on an uncaught exception', async () => {
    const { modelDir } = await tinyModel();
    const fake = await FakeTelegram.start();
    const home = mkdtempSync(join(tmpdir(), 'vistyle-start-'));
    let logs = '';
    const logDestination = new Writable({
      write(chunk, _enc, done) {
        logs += String(chunk);
        done();
      },
    });
    // vitest's own listeners (taken before the bot adds its own) would fail the run on these
    // events: they are handed to the bot's listeners alone below.
    const saved = {
      rejection: process.listeners('unhandledRejection'),
      exception: process.listeners('uncaughtException'),
    };
    let app: RunningBot | undefined;
    const running = runStart({
      env: {
        TELEGRAM_BOT_TOKEN: fake.token,
        TELEGRAM_API_ROOT: fake.apiRoot,
        VISTYLE_MODEL_DIR: modelDir,
        VISTYLE_HOME: home,
        VISTYLE_THREADS: '1',
        VISTYLE_SHUTDOWN_DRAIN_SECONDS: '5',
      },
      logDestination,
      onStarted: (started) => {
        app = started;
      },
    });
    const previousExitCode = process.exitCode;
    try {
      for (const listener of saved.rejection) process.off('unhandledRejection', listener);
      for (const listener of saved.exception) process.off('uncaughtException', listener);
      // during start-up (the model is loading): logged, and start-up goes on
      process.emit('unhandledRejection', new Error(`stray failure for ${fake.token}`), Promise.resolve());
      expect(logs).toContain('unhandled promise rejection; the bot keeps running');
      await vi.waitFor(() => expect(app).toBeDefined(), { timeout: 120_000, interval: 50 });
      expect(logs).not.toContain('"msg":"shutting down"');
      expect(logs).not.toContain(fake.token);

      // while running
      logs = '';
      process.emit('unhandledRejection', new Error(`stray failure for ${fake.token}`), Promise.resolve());
      expect(logs).toContain('unhandled promise rejection; the bot keeps running');
      const alice = fake.user(1002, { language_code: 'en' });
      await fake.sendPhoto(alice, PNG, { caption: 'still there?' });
      await fake.waitFor(() => logs.includes('"msg":"request answered"'));

      (process.emit as (event: string, ...args: unknown[]) => boolean)('uncaughtException', new Error('boom'));
      await running;
      expect(logs).toContain('uncaught exception; shutting down gracefully');
      expect(logs).toContain('"msg":"stopped"');
      expect(process.exitCode).toBe(1);
      expect(logs).not.toContain(fake.token);
      // released once stopped: no listener of the bot's is left behind
      expect(process.listeners('unhandledRejection')).toHaveLength(0);
    } finally {
      for (const listener of saved.rejection) process.on('unhandledRejection', listener);
      for (const listener of saved.exception) process.on('uncaughtException', listener);
      process.exitCode = previousExitCode;
      await fake.close();
      rmSync(home, { recursive: true, force: true });
    }
  });

  it('runs the Telegram adapter against the model, answers a photo, serves metrics, and shuts down', async () => {
    const { modelDir } = await tinyModel();
    const fake = await FakeTelegram.start();
    const home = mkdtempSync(join(tmpdir(), 'vistyle-start-'));
    let logs = '';
    const logDestination = new Writable({
      write(chunk, _enc, done) {
        logs += String(chunk);
        done();
      },
    });
    const stop = new AbortController();
    let app: RunningBot | undefined;
    const running = runStart({
      env: {
        TELEGRAM_BOT_TOKEN: fake.token,
        TELEGRAM_API_ROOT: fake.apiRoot,
        VISTYLE_MODEL_DIR: modelDir,
        VISTYLE_HOME: home,
        VISTYLE_THREADS: '1',
        VISTYLE_METRICS_PORT: '0',
        VISTYLE_LOG_LEVEL: 'info',
        VISTYLE_SHUTDOWN_DRAIN_SECONDS: '5',
      },
      signal: stop.signal,
      logDestination,
      onStarted: (started) => {
        app = started;
      },
    });
    try {
      await vi.waitFor(() => expect(app).toBeDefined(), { timeout: 120_000, interval: 50 });
      expect(app!.adapters.map((a) => a.name)).toEqual(['telegram']);

      const alice = fake.user(1001, { language_code: 'en' });
      await fake.sendPhoto(alice, PNG, { caption: 'what is this?' });
      const metricsUrl = `http://127.0.0.1:${app!.metricsPort}/metrics`;
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
      await fake.waitFor(() => app!.core.showStyle({ user: { platform: 'telegram', id: '1001' }, chat: { platform: 'telegram', id: '1001', kind: 'private' } }).current.id === 'grumpy');
    } finally {
      stop.abort();
      await running;
      await fake.close();
    }
    expect(logs).toContain('"msg":"request answered"');
    expect(logs).toContain('"msg":"stopped"');
    expect(logs).not.toContain(fake.token);
    rmSync(home, { recursive: true, force: true });
  });
});
