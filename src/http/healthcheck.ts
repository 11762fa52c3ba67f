// The container health check (deploy/Dockerfile HEALTHCHECK, deploy/docker-compose.yml):
//   node dist/src/http/healthcheck.js [/readyz|/healthz]
// asks the running vistyle's HTTP server, found the way `vistyle start` chose it (VISTYLE_HTTP_PORT,
// else VISTYLE_METRICS_PORT, else 8484; its host, a wildcard meaning this machine), and exits 0 when
// it answers 200 within 5 s, else 1, with one line saying why. Deliberately tiny: it runs every
// 30 s and loads nothing of the app but its .env reader.
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { loadDotEnv } from '../config/dotenv.js';
import { DEFAULT_HTTP_PORT } from './defaults.js';

export interface HealthTarget {
  host: string;
  port: number;
  path: string;
}

export function healthTarget(env: NodeJS.ProcessEnv, path = '/readyz'): HealthTarget {
  const value = (name: string) => env[name]?.trim() || undefined;
  const usesMetrics = value('VISTYLE_HTTP_PORT') === undefined && value('VISTYLE_METRICS_PORT') !== undefined;
  const port = Number(value('VISTYLE_HTTP_PORT') ?? value('VISTYLE_METRICS_PORT') ?? DEFAULT_HTTP_PORT);
  let host = (usesMetrics ? value('VISTYLE_METRICS_HOST') : value('VISTYLE_HTTP_HOST')) ?? '127.0.0.1';
  if (host === '0.0.0.0') host = '127.0.0.1';
  if (host === '::' || host === '[::]') host = '::1';
  return { host: host.replace(/^\[|\]$/g, ''), port, path };
}

/** Resolves with the status line to print and whether it is healthy. */
export function checkHealth(target: HealthTarget, timeoutMs = 5_000): Promise<{ ok: boolean; line: string }> {
  return new Promise((resolve) => {
    const req = request({ host: target.host, port: target.port, path: target.path, method: 'GET', timeout: timeoutMs }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        if (body.length < 4096) body += chunk;
      });
      response.on('end', () => {
        const ok = response.statusCode === 200;
        resolve({ ok, line: `${target.path} ${response.statusCode}${ok ? '' : `: ${body.trim().slice(0, 400)}`}` });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (error) => resolve({ ok: false, line: `${target.path} unreachable on ${target.host}:${target.port}: ${error.message}` }));
    req.end();
  });
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  loadDotEnv();
  const path = process.argv[2] ?? '/readyz';
  const { ok, line } = await checkHealth(healthTarget(process.env, path));
  (ok ? process.stdout : process.stderr).write(`${line}\n`);
  process.exitCode = ok ? 0 : 1;
}
