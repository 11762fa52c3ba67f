// vistyle's one HTTP server (node:http): GET /healthz (the process is up and its event loop
// answers), GET /readyz (every part reporting into the readiness registry is ready: 200, else
// 503, with each part's state as JSON), GET /metrics (Prometheus), and, when enabled, the
// OpenAI-compatible API under /v1 and the web page at /.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readiness } from '../health/readiness.js';
import { errorFields, type Logger } from '../log.js';
import type { BotMetrics } from '../metrics/metrics.js';
import { ApiError } from './api-error.js';
import { CorsPolicy } from './cors.js';
import { sendJson, type OpenAiApi } from './openai-api.js';
import type { PageAssets } from './page.js';

export { DEFAULT_HTTP_PORT } from './defaults.js';

export interface HttpServerOptions {
  host: string;
  port: number;
  metrics: BotMetrics;
  readiness: Readiness;
  logger: Logger;
  /** The OpenAI-compatible API; without it, /v1 answers 404 saying how to turn it on. */
  api?: OpenAiApi;
  /** The web page (served with the API). */
  page?: PageAssets;
  /** Browser origins allowed to call /v1 from other pages (default: none). */
  cors?: CorsPolicy;
}

export interface HttpServer {
  readonly host: string;
  readonly port: number;
  /** http://host:port (with 127.0.0.1 for a wildcard host). */
  readonly url: string;
  /** Stops listening, lets open requests finish for up to `graceMs` (default 5 s), then closes every connection. */
  close(options?: { graceMs?: number }): Promise<void>;
}

const ROUTES = ['/healthz', '/readyz', '/metrics', '/v1/chat/completions', '/v1/models'];

function routeOf(path: string): string {
  if (ROUTES.includes(path)) return path;
  if (path.startsWith('/v1/models/')) return '/v1/models/{id}';
  if (path.startsWith('/v1/')) return '/v1/other';
  return 'page';
}

export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  const { metrics, readiness, logger } = options;
  const cors = options.cors ?? new CorsPolicy([]);
  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const path = safePath(request.url);
    const method = request.method ?? 'GET';
    const route = routeOf(path);
    const startedAt = Date.now();
    response.setHeader('x-content-type-options', 'nosniff');
    response.once('close', () => {
      const status = response.headersSent ? response.statusCode : 499;
      metrics.httpRequests.inc({ route, status: String(status) });
      const fields = { method, route, status, ms: Date.now() - startedAt };
      if (route.startsWith('/v1/')) logger.info(fields, 'http request');
      else logger.debug(fields, 'http request');
    });
    try {
      const readOnly = method === 'GET' || method === 'HEAD';
      if (path === '/healthz' && readOnly) {
        response.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' }).end('ok\n');
      } else if (path === '/readyz' && readOnly) {
        const report = await readiness.evaluate();
        sendJson(response, report.ready ? 200 : 503, report, { 'cache-control': 'no-store' });
      } else if (path === '/metrics' && readOnly) {
        const text = await metrics.text();
        response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text);
      } else if (path.startsWith('/v1/') || path === '/v1') {
        if (cors.handle(request, response)) return; // a preflight, answered
        const handled = options.api ? await options.api.handle(request, response, path) : false;
        if (!handled) {
          const message = options.api
            ? `Unknown path ${path}. vistyle serves /v1/chat/completions and /v1/models.`
            : 'The API is not enabled here: set VISTYLE_HTTP_PORT for `vistyle start`, or run `vistyle serve`.';
          throw new ApiError(404, message, 'invalid_request_error', 'unknown_url');
        }
      } else if (options.page && readOnly && options.page.serve(path, response)) {
        // served
      } else if (ROUTES.includes(path)) {
        response.writeHead(405, { allow: 'GET, HEAD' }).end();
      } else {
        response.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
      }
    } catch (error) {
      if (!(error instanceof ApiError)) logger.error({ error: errorFields(error, { stack: true }), route }, 'http handler failed');
      const apiError = error instanceof ApiError ? error : new ApiError(500, 'Something went wrong on the server.', 'server_error', 'internal_error');
      if (response.headersSent) {
        response.end();
        return;
      }
      sendJson(response, apiError.status, apiError.body(), apiError.retryAfter ? { 'retry-after': String(apiError.retryAfter) } : {});
    }
  };

  const server: Server = createServer((request, response) => void handle(request, response));
  // Slow or idle clients may not hold a connection forever; streamed answers keep writing.
  server.headersTimeout = 30_000;
  server.requestTimeout = 0;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (error) => logger.warn({ error: errorFields(error) }, 'http server error'));
  const port = (server.address() as AddressInfo).port;
  const shownHost = options.host === '0.0.0.0' || options.host === '::' ? '127.0.0.1' : options.host.includes(':') ? `[${options.host}]` : options.host;
  let closing: Promise<void> | undefined;
  return {
    host: options.host,
    port,
    url: `http://${shownHost}:${port}`,
    close: ({ graceMs = 5_000 } = {}) => {
      closing ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.closeAllConnections(), graceMs);
        timer.unref();
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        server.closeIdleConnections();
      });
      return closing;
    },
  };
}

function safePath(url: string | undefined): string {
  try {
    return new URL(url ?? '/', 'http://localhost').pathname;
  } catch {
    return '/';
  }
}
