// How `vistyle start` and `vistyle serve` run the HTTP server, from the configuration:
//   vistyle serve                      API + web page + health + metrics on VISTYLE_HTTP_HOST
//                                      (127.0.0.1) : VISTYLE_HTTP_PORT (8484), or --host/--port
//   vistyle start, VISTYLE_HTTP_PORT   the same, beside the chat platforms
//   vistyle start, no VISTYLE_HTTP_PORT  health + metrics only, on 127.0.0.1:8484 by default
//                                      (VISTYLE_METRICS_PORT/HOST, the older names, still choose
//                                      that port); when that default port is taken, the bot runs on
//                                      without it (a warning), since nobody asked for it explicitly
// The API's access follows from the keys: keys configured -> every /v1 call needs one; none and a
// loopback address -> open to this machine; none and any other address -> the API is off (403).
import type { BotCoreImpl } from '../bot/core.js';
import type { AppConfig } from '../config/config.js';
import { VistyleError } from '../errors.js';
import type { Readiness } from '../health/readiness.js';
import type { Logger } from '../log.js';
import type { BotMetrics } from '../metrics/metrics.js';
import type { StyleRegistry } from '../styles/types.js';
import { CorsPolicy } from './cors.js';
import { ApiKeys } from './keys.js';
import { OpenAiApi, type ApiAccess } from './openai-api.js';
import { PageAssets } from './page.js';
import { DEFAULT_HTTP_PORT } from './defaults.js';
import { startHttpServer, type HttpServer } from './server.js';

export interface HttpPlan {
  host: string;
  port: number;
  /** Serve the API and the web page. */
  api: boolean;
  /** The operator chose this port: failing to listen on it is an error. */
  explicit: boolean;
}

export interface HttpPlanOverrides {
  host?: string;
  port?: number;
}

/** Where and what to serve for `vistyle serve` (`serve: true`) or `vistyle start`. */
export function httpPlan(config: AppConfig, serve: boolean, overrides: HttpPlanOverrides = {}): HttpPlan {
  const host = overrides.host ?? config.http.host;
  if (serve || config.http.port !== undefined || overrides.port !== undefined) {
    return { host, port: overrides.port ?? config.http.port ?? DEFAULT_HTTP_PORT, api: true, explicit: true };
  }
  if (config.metrics) return { host: config.metrics.host, port: config.metrics.port, api: false, explicit: true };
  return { host, port: DEFAULT_HTTP_PORT, api: false, explicit: false };
}

export function isLoopbackAddress(host: string): boolean {
  const bare = host.replace(/^\[|\]$/g, '').toLowerCase();
  return bare === 'localhost' || bare === '::1' || /^127(\.\d{1,3}){3}$/.test(bare);
}

export interface StartHttpOptions {
  config: AppConfig;
  plan: HttpPlan;
  metrics: BotMetrics;
  readiness: Readiness;
  /** Needed when the plan serves the API. */
  styles?: StyleRegistry;
  /** The bot core once the model is loaded (API only). */
  core?: () => BotCoreImpl | undefined;
  logger: Logger;
  /** Extra CA certificates for https image URLs (tests). */
  imageUrlCa?: string | Buffer;
}

/**
 * Starts the server of `plan`. Throws VistyleError('CONFIG_INVALID') for a bad keys
 * configuration; resolves undefined (after a warning) when a port nobody chose is taken.
 */
export async function startVistyleHttp(options: StartHttpOptions): Promise<HttpServer | undefined> {
  const { config, plan, logger } = options;
  let api: OpenAiApi | undefined;
  let page: PageAssets | undefined;
  if (plan.api) {
    if (!options.styles || !options.core) throw new VistyleError('INTERNAL', 'the API needs the style registry and the bot core');
    const defaults = { inFlight: config.limits.userInFlight, perMinute: config.limits.userPerMinute };
    const keys = ApiKeys.load({ envValue: config.http.apiKeys, file: config.http.apiKeysFile, defaults });
    const access: ApiAccess = keys.size > 0 ? 'keys' : isLoopbackAddress(plan.host) ? 'open' : 'off';
    if (access === 'off') {
      logger.warn({ host: plan.host }, 'the API is off: no API key is configured and the server listens beyond loopback (set VISTYLE_API_KEYS)');
    }
    api = new OpenAiApi({
      core: options.core,
      styles: options.styles,
      keys,
      access,
      defaults,
      maxImageBytes: config.limits.maxImageBytes,
      maxImagesPerMessage: config.http.maxImagesPerMessage,
      allowPrivateImageUrls: config.http.allowPrivateImageUrls,
      media: config.media,
      ...(options.imageUrlCa ? { imageUrlCa: options.imageUrlCa } : {}),
      logger: logger.child({ module: 'api' }),
    });
    page = new PageAssets();
    if (!page.available) logger.warn('the web page files are missing (run `npm run build`); the API works without them');
    logger.info({ access, keys: keys.size }, 'OpenAI-compatible API on /v1');
  }
  try {
    const server = await startHttpServer({
      host: plan.host,
      port: plan.port,
      metrics: options.metrics,
      readiness: options.readiness,
      logger,
      ...(api ? { api } : {}),
      ...(page ? { page } : {}),
      cors: new CorsPolicy(options.config.http.corsOrigins),
    });
    logger.info({ url: server.url, api: plan.api }, plan.api ? 'HTTP server: API, web page, /healthz, /readyz, /metrics' : 'HTTP server: /healthz, /readyz, /metrics');
    return server;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (!plan.explicit && code === 'EADDRINUSE') {
      logger.warn({ port: plan.port, host: plan.host }, 'the health/metrics port is taken; running without /healthz (set VISTYLE_HTTP_PORT to choose one)');
      return undefined;
    }
    const why = code === 'EADDRINUSE' ? 'the port is taken' : code === 'EACCES' ? 'permission denied' : String((error as Error).message ?? error);
    throw new VistyleError('CONFIG_INVALID', `cannot listen on ${plan.host}:${plan.port} for the HTTP server: ${why} (VISTYLE_HTTP_HOST / VISTYLE_HTTP_PORT)`, { cause: error });
  }
}
