// `vistyle start` with VISTYLE_HTTP_PORT: the API runs beside the Telegram bot (real telegraf
// against the fake Bot API) on one core — one queue, one set of metrics — and /readyz lists the
// engine, the store and the adapter.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import OpenAI from 'openai';
import { describe, expect, it, vi } from 'vitest';
import { runStart, type RunningBot } from '../../src/cli/commands/start.js';
import { FakeTelegram } from '../support/fake-telegram/index.js';
import { tinyModel } from '../support/tiny-model.js';
import { PNG_DATA_URL } from './support/fixtures.js';

const PNG = readFileSync(new URL('../fixtures/images/test_image_64x48.png', import.meta.url));

describe('vistyle start with VISTYLE_HTTP_PORT', () => {
  it('serves the API beside the bot, through the same core', async () => {
    const { modelDir } = await tinyModel();
    const fake = await FakeTelegram.start();
    const home = mkdtempSync(join(tmpdir(), 'vistyle-start-http-'));
    const stop = new AbortController();
    let app: RunningBot | undefined;
    const running = runStart({
      env: {
        TELEGRAM_BOT_TOKEN: fake.token,
        TELEGRAM_API_ROOT: fake.apiRoot,
        VISTYLE_MODEL_DIR: modelDir,
        VISTYLE_HOME: home,
        VISTYLE_THREADS: '1',
        VISTYLE_HTTP_PORT: '0',
        VISTYLE_LOG_LEVEL: 'warn',
        VISTYLE_SHUTDOWN_DRAIN_SECONDS: '2',
      },
      signal: stop.signal,
      logDestination: new Writable({ write: (_chunk, _encoding, done) => done() }),
      onStarted: (started) => (app = started),
    });
    try {
      await vi.waitFor(() => expect(app).toBeDefined(), { timeout: 120_000, interval: 50 });
      const url = `http://127.0.0.1:${app!.httpPort}`;
      // The Telegram adapter counts as connected once its first getUpdates has come back.
      let ready!: Response;
      await vi.waitFor(
        async () => {
          ready = await fetch(`${url}/readyz`);
          expect(ready.status).toBe(200);
        },
        { timeout: 30_000, interval: 100 },
      );
      expect(await ready.json()).toEqual({
        ready: true,
        checks: { store: { ready: true }, engine: { ready: true }, 'adapter:telegram': { ready: true } },
      });

      const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const completion = await openai.chat.completions.create({
        model: 'vistyle/cantonese',
        max_tokens: 4,
        messages: [{ role: 'user', content: [{ type: 'text', text: '呢度有咩？' }, { type: 'image_url', image_url: { url: PNG_DATA_URL } }] }],
      });
      expect(completion.model).toBe('vistyle/cantonese');

      const alice = fake.user(2001, { language_code: 'en' });
      await fake.sendPhoto(alice, PNG, { caption: 'and from Telegram?' });
      await vi.waitFor(
        async () => {
          const metrics = await (await fetch(`${url}/metrics`)).text();
          expect(metrics).toMatch(/vistyle_requests_total\{platform="telegram",outcome="answered"\} 1/);
          expect(metrics).toMatch(/vistyle_requests_total\{platform="api",outcome="answered"\} 1/);
        },
        { timeout: 60_000, interval: 100 },
      );
      // the web page is there too
      expect((await fetch(`${url}/`)).status).toBe(200);
    } finally {
      stop.abort();
      await running;
      await fake.close();
      rmSync(home, { recursive: true, force: true });
    }
  });
});
