// Where the HTTP server listens and who may use the API, from the configuration: `vistyle start`
// without VISTYLE_HTTP_PORT serves health and metrics only (on 127.0.0.1:8484 unless told otherwise),
// with it the API too; without keys the API is open on loopback and off beyond it; a port nobody
// chose that is taken is skipped with a warning, a chosen one is an error. No model is needed: the
// API answers from the style registry, or 503 while there is no core.
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { Readiness } from '../../src/health/readiness.js';
import { httpPlan, startVistyleHttp } from '../../src/http/app.js';
import { BotMetrics } from '../../src/metrics/metrics.js';
import { builtinStyleRegistry } from '../../src/styles/registry.js';

const config = (env: Record<string, string> = {}) => loadConfig({ VISTYLE_HOME: '/tmp/vistyle-unused', ...env });

function start(env: Record<string, string>, serve: boolean, overrides: { host?: string; port?: number } = { port: 0 }) {
  let logs = '';
  const logger = pino(
    { level: 'info' },
    new Writable({
      write(chunk, _encoding, done) {
        logs += String(chunk);
        done();
      },
    }),
  );
  const appConfig = config(env);
  const server = startVistyleHttp({
    config: appConfig,
    plan: httpPlan(appConfig, serve, overrides),
    metrics: new BotMetrics(),
    readiness: new Readiness(),
    styles: builtinStyleRegistry(),
    core: () => undefined,
    logger,
  });
  return { server, logs: () => logs };
}

describe('the HTTP configuration', () => {
  it('reads the HTTP variables, and never echoes the API keys in an error', () => {
    expect(config().http).toEqual({ host: '127.0.0.1', apiKeys: null, apiKeysFile: null, allowPrivateImageUrls: false, maxImagesPerMessage: 4, corsOrigins: [] });
    expect(
      config({
        VISTYLE_HTTP_PORT: '8080',
        VISTYLE_HTTP_HOST: '0.0.0.0',
        VISTYLE_API_KEYS: 'a=sk-a-0123456789abcdef',
        VISTYLE_API_KEYS_FILE: '/etc/vistyle/keys.yaml',
        VISTYLE_ALLOW_PRIVATE_IMAGE_URLS: 'true',
        VISTYLE_MAX_IMAGES_PER_MESSAGE: '2',
        VISTYLE_HTTP_CORS_ORIGINS: 'https://chat.example.com',
      }).http,
    ).toEqual({ port: 8080, host: '0.0.0.0', apiKeys: 'a=sk-a-0123456789abcdef', apiKeysFile: '/etc/vistyle/keys.yaml', allowPrivateImageUrls: true, maxImagesPerMessage: 2, corsOrigins: ['https://chat.example.com'] });
    expect(() => config({ VISTYLE_HTTP_PORT: 'eighty' })).toThrow(/VISTYLE_HTTP_PORT: expected a number/);
    expect(() => config({ VISTYLE_MAX_IMAGES_PER_MESSAGE: '0' })).toThrow(/VISTYLE_MAX_IMAGES_PER_MESSAGE/);
  });
});

describe('the HTTP plan', () => {
  it('serves health and metrics only for `vistyle start` unless VISTYLE_HTTP_PORT is set', () => {
    expect(httpPlan(config(), false)).toEqual({ host: '127.0.0.1', port: 8484, api: false, explicit: false });
    expect(httpPlan(config({ VISTYLE_METRICS_PORT: '9464', VISTYLE_METRICS_HOST: '0.0.0.0' }), false)).toEqual({ host: '0.0.0.0', port: 9464, api: false, explicit: true });
    expect(httpPlan(config({ VISTYLE_HTTP_PORT: '8080', VISTYLE_HTTP_HOST: '0.0.0.0' }), false)).toEqual({ host: '0.0.0.0', port: 8080, api: true, explicit: true });
    expect(httpPlan(config(), true)).toEqual({ host: '127.0.0.1', port: 8484, api: true, explicit: true });
    expect(httpPlan(config({ VISTYLE_HTTP_PORT: '8080' }), true, { host: '::1', port: 9000 })).toEqual({ host: '::1', port: 9000, api: true, explicit: true });
  });
});

describe('API access', () => {
  it('is off beyond loopback when no key is configured (403), while health still answers', async () => {
    const { server, logs } = start({}, true, { host: '0.0.0.0', port: 0 });
    const http = (await server)!;
    try {
      const response = await fetch(`${http.url}/v1/models`);
      expect(response.status).toBe(403);
      expect(await response.json()).toMatchObject({ error: { type: 'permission_error', code: 'api_disabled', message: expect.stringContaining('VISTYLE_API_KEYS') } });
      expect((await fetch(`${http.url}/healthz`)).status).toBe(200);
      expect(logs()).toContain('the API is off');
    } finally {
      await http.close();
    }
  });

  it('is open on loopback without keys: the styles are listed, a completion waits for the model (503)', async () => {
    const http = (await start({}, true).server)!;
    try {
      const models = (await (await fetch(`${http.url}/v1/models`)).json()) as { object: string; data: Array<{ id: string }> };
      expect(models.object).toBe('list');
      expect(models.data.map((m: { id: string }) => m.id)).toContain('vistyle/grumpy');
      const response = await fetch(`${http.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'vistyle', messages: [{ role: 'user', content: 'hi' }] }) });
      expect(response.status).toBe(503);
      expect(response.headers.get('retry-after')).toBe('5');
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('model_loading');
      const page = await fetch(`${http.url}/`);
      expect(page.status).toBe(200);
      expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
      expect(await page.text()).toContain('<script type="module" src="app.js">');
      expect((await fetch(`${http.url}/app.js`)).headers.get('content-type')).toMatch(/javascript/);
    } finally {
      await http.close();
    }
  });

  it('needs a key on any address once keys are configured', async () => {
    const http = (await start({ VISTYLE_API_KEYS: 'ops=sk-ops-0123456789abcdef' }, true, { host: '0.0.0.0', port: 0 }).server)!;
    try {
      expect((await fetch(`${http.url}/v1/models`)).status).toBe(401);
      const ok = await fetch(`${http.url}/v1/models`, { headers: { authorization: 'Bearer sk-ops-0123456789abcdef' } });
      expect(ok.status).toBe(200);
    } finally {
      await http.close();
    }
  });

  it('`vistyle start` without VISTYLE_HTTP_PORT has no API', async () => {
    const http = (await start({ VISTYLE_METRICS_PORT: '0' }, false, {}).server)!;
    try {
      expect((await fetch(`${http.url}/v1/models`)).status).toBe(404);
      expect((await fetch(`${http.url}/`)).status).toBe(404);
      expect((await fetch(`${http.url}/metrics`)).status).toBe(200);
    } finally {
      await http.close();
    }
  });

  it('skips a taken port nobody chose, with a warning, and refuses a taken port that was chosen', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as AddressInfo).port;
    try {
      // as for the default port 8484 when VISTYLE_HTTP_PORT is unset, but on a port taken here
      const plan = { host: '127.0.0.1', port, api: false, explicit: false };
      const logs: string[] = [];
      const logger = pino({ level: 'warn' }, new Writable({ write: (chunk, _e, done) => (logs.push(String(chunk)), done()) }));
      const common = { config: config(), metrics: new BotMetrics(), readiness: new Readiness(), styles: builtinStyleRegistry(), core: () => undefined, logger };
      expect(await startVistyleHttp({ ...common, plan })).toBeUndefined();
      expect(logs.join('')).toContain('the health/metrics port is taken');
      await expect(startVistyleHttp({ ...common, plan: { ...plan, explicit: true } })).rejects.toMatchObject({
        code: 'CONFIG_INVALID',
        message: expect.stringContaining(`cannot listen on 127.0.0.1:${port} for the HTTP server: the port is taken`),
      });
    } finally {
      blocker.close();
    }
  });
});
