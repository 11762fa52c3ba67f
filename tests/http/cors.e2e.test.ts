// Cross-origin calls to the API from a page on another origin, in real headless Chromium (the
// browser does the preflight and enforces the answer; nothing here imitates it) against `vistyle
// serve` with the tiny model and VISTYLE_HTTP_CORS_ORIGINS naming one origin: that origin lists the
// models, streams an answer and can read an error; another origin is refused by the browser.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { PNG_DATA_URL, serve, type Served } from './support/serve.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI === 'true') throw new Error(`${CHROMIUM} is required under CI (apt-get install chromium; see .ci/run)`);
if (!haveChromium) console.warn(`skipping the CORS browser tests: ${CHROMIUM} is missing (apt-get install chromium)`);

const KEY = 'sk-vistyle-cors-0123456789abcdef';

/** A page server on its own port: another origin than vistyle's. */
async function pageOrigin(): Promise<{ origin: string; server: Server }> {
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>other</title>'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

/** Runs `fetch` in the page; resolves with what the page could read, or the browser's refusal. */
type Outcome = { status: number; body: string } | { blocked: string };

describe('VISTYLE_HTTP_CORS_ORIGINS', () => {
  it('reads origins and *, normalises a trailing slash, and refuses a URL with a path', () => {
    const cors = (value: string) => loadConfig({ VISTYLE_HOME: '/tmp/vistyle-unused', VISTYLE_HTTP_CORS_ORIGINS: value }).http.corsOrigins;
    expect(loadConfig({ VISTYLE_HOME: '/tmp/vistyle-unused' }).http.corsOrigins).toEqual([]);
    expect(cors(' https://chat.example.com/ , http://localhost:3000')).toEqual(['https://chat.example.com', 'http://localhost:3000']);
    expect(cors('*')).toEqual(['*']);
    expect(() => cors('https://chat.example.com/app')).toThrow(/VISTYLE_HTTP_CORS_ORIGINS: "https:\/\/chat\.example\.com\/app" is not an origin/);
    expect(() => cors('chat.example.com')).toThrow(/is not an origin/);
  });
});

describe.skipIf(!haveChromium)('cross-origin API calls from a browser', () => {
  let served: Served;
  let allowed: { origin: string; server: Server };
  let other: { origin: string; server: Server };
  let context: BrowserContext;
  let profile: string;

  beforeAll(async () => {
    allowed = await pageOrigin();
    other = await pageOrigin();
    served = await serve({ VISTYLE_API_KEYS: `web=${KEY}`, VISTYLE_HTTP_CORS_ORIGINS: allowed.origin, VISTYLE_USER_PER_MINUTE: '0' });
    profile = mkdtempSync(join(tmpdir(), 'vistyle-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
      timeout: 60_000,
    });
  }, 120_000);
  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await served?.stop();
    allowed?.server.close();
    other?.server.close();
  });

  /** Opens `origin` and runs one fetch to vistyle from it. */
  async function fetchFrom(origin: string, path: string, init: { method?: string; key?: string; body?: unknown }): Promise<Outcome> {
    const page = await context.newPage();
    try {
      await page.goto(`${origin}/`);
      return await page.evaluate(async ({ url, init }) => {
        try {
          const headers: Record<string, string> = {};
          if (init.key) headers.authorization = `Bearer ${init.key}`;
          if (init.body !== undefined) headers['content-type'] = 'application/json';
          const response = await fetch(url, { method: init.method ?? 'GET', headers, ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}) });
          return { status: response.status, body: await response.text() };
        } catch (error) {
          return { blocked: String(error) };
        }
      }, { url: `${served.url}${path}`, init });
    } finally {
      await page.close();
    }
  }

  it('the allowed origin lists the models and streams an answer, with its key', async () => {
    const models = await fetchFrom(allowed.origin, '/v1/models', { key: KEY });
    expect(models).toMatchObject({ status: 200 });
    expect(JSON.parse((models as { body: string }).body).data.map((m: { id: string }) => m.id)).toContain('vistyle/grumpy');

    const stream = await fetchFrom(allowed.origin, '/v1/chat/completions', {
      method: 'POST',
      key: KEY,
      body: { model: 'vistyle/plain', stream: true, max_tokens: 4, messages: [{ role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image_url', image_url: { url: PNG_DATA_URL } }] }] },
    });
    expect(stream).toMatchObject({ status: 200 });
    expect((stream as { body: string }).body).toContain('data: [DONE]');
  });

  it('an error reaches the page too (a wrong key: 401 it can read, not a CORS failure)', async () => {
    const wrong = await fetchFrom(allowed.origin, '/v1/models', { key: 'sk-vistyle-wrong-0000000000000' });
    expect(wrong).toMatchObject({ status: 401 });
    expect(JSON.parse((wrong as { body: string }).body).error.code).toBe('invalid_api_key');
  });

  it('another origin is refused by the browser, and the server logs the refused preflight', async () => {
    const refused = await fetchFrom(other.origin, '/v1/models', { key: KEY });
    expect(refused).toHaveProperty('blocked');
    expect((refused as { blocked: string }).blocked).toMatch(/Failed to fetch/);
    expect(served.logs()).toMatch(/"method":"OPTIONS","route":"\/v1\/models","status":403/);
  });
});
