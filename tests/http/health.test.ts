// Health: the readiness registry (push and pull checks, failures and time-outs), the server's
// /healthz, /readyz and /metrics, the store check, and the container health check command
// (src/http/healthcheck.ts, what deploy/Dockerfile's HEALTHCHECK runs) against a real server.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adapterCheck, storeCheck } from '../../src/health/checks.js';
import { Readiness } from '../../src/health/readiness.js';
import { healthTarget } from '../../src/http/healthcheck.js';
import { startHttpServer, type HttpServer } from '../../src/http/server.js';
import { BotMetrics } from '../../src/metrics/metrics.js';

describe('the readiness registry', () => {
  it('is ready when every part is, and says why a part is not', async () => {
    const readiness = new Readiness();
    expect(await readiness.evaluate()).toEqual({ ready: true, checks: {} });
    readiness.report('engine', false, 'loading the model');
    const removeStore = readiness.register('store', () => ({ ready: true }));
    expect(await readiness.evaluate()).toEqual({ ready: false, checks: { engine: { ready: false, detail: 'loading the model' }, store: { ready: true } } });
    readiness.report('engine', true);
    expect((await readiness.evaluate()).ready).toBe(true);
    removeStore();
    expect(readiness.names()).toEqual(['engine']);
  });

  it('counts a check that throws or does not answer in time as not ready', async () => {
    const readiness = new Readiness();
    readiness.register('queue', () => {
      throw new Error('redis is unreachable');
    });
    readiness.register('slow', () => new Promise(() => undefined));
    readiness.register('async', async () => ({ ready: true }));
    const report = await readiness.evaluate({ timeoutMs: 100 });
    expect(report.ready).toBe(false);
    expect(report.checks).toEqual({
      queue: { ready: false, detail: 'redis is unreachable' },
      slow: { ready: false, detail: 'no answer within 100 ms' },
      async: { ready: true },
    });
  });

  it('reads an adapter\'s connection status', () => {
    let started = false;
    let status = { platform: 'telegram', state: 'reconnecting', connected: false, reconnectingSince: 1, lastError: 'getUpdates: 502 Bad Gateway', lastErrorAt: 1 };
    const check = adapterCheck({ status: () => status }, () => started);
    expect(check()).toEqual({ ready: false, detail: 'connecting' });
    started = true;
    expect(check()).toEqual({ ready: false, detail: 'reconnecting: getUpdates: 502 Bad Gateway' });
    status = { ...status, state: 'connected', connected: true, lastError: null as unknown as string };
    expect(check()).toEqual({ ready: true });
    expect(adapterCheck({}, () => true)()).toEqual({ ready: true });
  });

  it('checks that the store can be written', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vistyle-store-check-'));
    try {
      expect(storeCheck(join(dir, 'new.db'))()).toEqual({ ready: true });
      writeFileSync(join(dir, 'old.db'), '');
      expect(storeCheck(join(dir, 'old.db'))()).toEqual({ ready: true });
      expect(storeCheck(join(dir, 'gone', 'x.db'))()).toEqual({ ready: false, detail: 'the database folder is not writable' });
      // what the store itself saw: its last write was refused
      expect(storeCheck(join(dir, 'x.db'), { health: () => ({ writable: false, lastFailure: 'SQLITE_FULL' }) })()).toEqual({ ready: false, detail: 'the database refused a write (SQLITE_FULL)' });
      expect(storeCheck(join(dir, 'x.db'), { health: () => ({ writable: true }) })()).toEqual({ ready: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the health server', () => {
  const readiness = new Readiness();
  const metrics = new BotMetrics();
  let server: HttpServer;

  beforeAll(async () => {
    server = await startHttpServer({ host: '127.0.0.1', port: 0, metrics, readiness, logger: pino({ level: 'silent' }) });
  });
  afterAll(() => server?.close());

  it('answers /healthz, and /readyz with each part', async () => {
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.text()).toBe('ok\n');

    readiness.report('engine', false, 'loading the model');
    let ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ ready: false, checks: { engine: { ready: false, detail: 'loading the model' } } });
    readiness.report('engine', true);
    ready = await fetch(`${server.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ ready: true, checks: { engine: { ready: true } } });

    expect((await fetch(`${server.url}/healthz`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${server.url}/healthz`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${server.url}/nothing`)).status).toBe(404);
  });

  it('serves the metrics, counting its own requests', async () => {
    await fetch(`${server.url}/healthz`);
    const response = await fetch(`${server.url}/metrics`);
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(text).toContain('vistyle_queue_length');
    expect(text).toMatch(/vistyle_http_requests_total\{route="\/healthz",status="200"\} \d+/);
  });

  it('says how to turn the API on when it is off', async () => {
    const response = await fetch(`${server.url}/v1/models`);
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ error: { code: 'unknown_url', message: expect.stringContaining('VISTYLE_HTTP_PORT') } });
  });

  it('the container health check command exits 0 when ready and 1 when not or unreachable', async () => {
    // A child process (not spawnSync: the server under test runs on this process's event loop).
    const run = (env: Record<string, string>, ...args: string[]) =>
      new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
        execFile(
          process.execPath,
          ['--import', 'tsx', 'src/http/healthcheck.ts', ...args],
          { env: { PATH: process.env.PATH, VISTYLE_ENV_FILE: '/nonexistent/.env', ...env }, encoding: 'utf8', timeout: 30_000 },
          (error, stdout, stderr) => resolve({ status: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }),
        );
      });
    readiness.report('engine', true);
    const ok = await run({ VISTYLE_HTTP_PORT: String(server.port), VISTYLE_HTTP_HOST: '0.0.0.0' });
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toBe('/readyz 200\n');

    readiness.report('engine', false, 'the worker is restarting');
    const notReady = await run({ VISTYLE_METRICS_PORT: String(server.port) });
    expect(notReady.status).toBe(1);
    expect(notReady.stderr).toContain('/readyz 503');
    expect(notReady.stderr).toContain('the worker is restarting');
    // /healthz is only "the process answers"
    expect((await run({ VISTYLE_HTTP_PORT: String(server.port) }, '/healthz')).status).toBe(0);
    readiness.report('engine', true);

    const unreachable = await run({ VISTYLE_HTTP_PORT: '1' });
    expect(unreachable.status).toBe(1);
    expect(unreachable.stderr).toMatch(/unreachable on 127\.0\.0\.1:1/);
  });

  it('finds the server the way vistyle start chose it', () => {
    expect(healthTarget({})).toEqual({ host: '127.0.0.1', port: 8484, path: '/readyz' });
    expect(healthTarget({ VISTYLE_HTTP_PORT: '9000', VISTYLE_HTTP_HOST: '::' }, '/healthz')).toEqual({ host: '::1', port: 9000, path: '/healthz' });
    expect(healthTarget({ VISTYLE_METRICS_PORT: '9464', VISTYLE_METRICS_HOST: '0.0.0.0', VISTYLE_HTTP_HOST: '10.0.0.5' })).toEqual({ host: '127.0.0.1', port: 9464, path: '/readyz' });
  });
});
