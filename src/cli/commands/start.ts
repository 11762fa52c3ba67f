// `vistyle start`: runs the bot. Every platform adapter whose token is configured
// (TELEGRAM_BOT_TOKEN; DISCORD_TOKEN + DISCORD_APPLICATION_ID) is started against one engine (the
// model in --model, VISTYLE_MODEL_DIR, or the pulled model), one scheduler and one store. With no
// token it says exactly what to set and exits non-zero, before loading anything.
// SIGINT/SIGTERM shut down gracefully: new requests are refused politely, queued users are told,
// running answers get VISTYLE_SHUTDOWN_DRAIN_SECONDS to finish, then the adapters, the engine and
// the store close. A second signal exits at once. A signal while an adapter is still connecting
// stops at once (no waiting for its retries). The HTTP server (src/http/app.ts) starts before
// the model loads: health and metrics always (127.0.0.1:8484 by default), the OpenAI-compatible API
// and web page too when VISTYLE_HTTP_PORT is set; `vistyle serve` runs the same without platforms.
// With VISTYLE_QUEUE_URL it is a front end only: no model here; answers go through Redis (BullMQ)
// to `vistyle worker`s (src/queue), with the same limits, positions and streaming.
import type { Command } from 'commander';
import { createDiscordAdapter } from '../../../adapters/discord/index.js';
import { createTelegramAdapter } from '../../../adapters/telegram/index.js';
import { createBotCore, type BotCoreImpl } from '../../bot/core.js';
import type { PlatformAdapter } from '../../bot/types.js';
import { engineOptionsOf, loadConfig, type AppConfig } from '../../config/config.js';
import { createEngine } from '../../engine/engine.js';
import type { Engine } from '../../engine/types.js';
import { EXIT, startupExitStatus, VistyleError, withExitStatus } from '../../errors.js';
import { createLogger, errorFields, guardStdout, setRootLogger, type Logger } from '../../log.js';
import { registerFaultMetrics } from '../../fault-metrics.js';
import { checkBeforeLoading } from '../../doctor/preflight.js';
import { adapterCheck, engineCheck, storeCheck } from '../../health/checks.js';
import { Readiness } from '../../health/readiness.js';
import { httpPlan, startVistyleHttp, type HttpPlanOverrides } from '../../http/app.js';
import type { HttpServer } from '../../http/server.js';
import { BotMetrics } from '../../metrics/metrics.js';
import { QueueFrontEnd, hasQueue } from '../../queue/front-end.js';
import { Store } from '../../store/store.js';
import { openStyleRegistry, type LiveStyleRegistry } from '../../styles/registry.js';

export const NO_PLATFORM_MESSAGE =
  'no chat platform is configured. Set TELEGRAM_BOT_TOKEN (from @BotFather) to run on Telegram, ' +
  'and/or DISCORD_TOKEN and DISCORD_APPLICATION_ID (from the Discord developer portal) to run on Discord ' +
  '(in the environment or in a .env file); or set VISTYLE_HTTP_PORT, or run `vistyle serve`, for the HTTP API alone';

export interface StartOptions {
  /** Built model folder (default: VISTYLE_MODEL_DIR, then the pulled model). */
  model?: string;
  /** Environment to read (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Stop when this aborts (tests); SIGINT/SIGTERM always stop. */
  signal?: AbortSignal;
  /** Log destination (default stderr). */
  logDestination?: NodeJS.WritableStream;
  /** Called once every adapter is running. */
  onStarted?: (app: RunningBot) => void;
  /** Engine factory (tests). */
  engineFactory?: (config: AppConfig) => Promise<Engine>;
  /** `vistyle serve`: the HTTP API and web page only, no chat platform. */
  serve?: boolean;
  /** --host / --port of `vistyle serve`. */
  http?: HttpPlanOverrides;
  /** Extra CA certificates trusted for https image URLs (tests). */
  imageUrlCa?: string | Buffer;
}

export interface RunningBot {
  config: AppConfig;
  core: BotCoreImpl;
  adapters: PlatformAdapter[];
  /** Port of the HTTP server (health, metrics and, when on, the API); same as httpPort. */
  metricsPort?: number;
  httpPort?: number;
  /** The readiness registry behind /readyz; other parts register their checks here. */
  readiness: Readiness;
  /** With VISTYLE_QUEUE_URL: the queue client (readiness, metrics). */
  queue?: QueueFrontEnd;
}

export function registerStartCommand(program: Command): void {
  program
    .command('start')
    .description(
      'run the bot on every platform whose token is configured (TELEGRAM_BOT_TOKEN; DISCORD_TOKEN + DISCORD_APPLICATION_ID)',
    )
    .option('-m, --model <dir>', 'built model folder (default: VISTYLE_MODEL_DIR, then the pulled model)')
    .action(async (options: { model?: string }) => {
      try {
        await runStart(options.model ? { model: options.model } : {});
      } catch (error) {
        // a start-up that cannot work says so in its status (docs/deploy.md), for systemd/Docker
        throw withExitStatus(error, startupExitStatus(error));
      }
      // Everything is closed; if a library still holds a handle open, don't hang on it.
      setTimeout(() => process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0), 3_000).unref();
    });
}

/** Runs the bot until a signal (or `options.signal`) stops it. Throws VistyleError on bad setup. */
export async function runStart(options: StartOptions = {}): Promise<void> {
  const env = options.env ?? process.env;
  const config = loadConfig(options.model ? { ...env, VISTYLE_MODEL_DIR: options.model } : env);
  const serve = options.serve === true;
  if (!serve && !config.telegram && !config.discord && config.http.port === undefined) throw new VistyleError('CONFIG_INVALID', NO_PLATFORM_MESSAGE);

  // Nothing that happens to stdout/stderr (a closed pipe, a full disk) may stop or spin the bot.
  guardStdout();
  const logger = createLogger({
    level: config.logLevel,
    file: config.logFile,
    ...(config.logFormat ? { format: config.logFormat } : {}),
    ...(options.logDestination ? { destination: options.logDestination } : {}),
  });
  setRootLogger(logger);
  const log = logger.child({ module: 'start' });
  // From here on a stray rejection (e.g. during a platform login) is logged, not fatal, and an
  // uncaught exception or a signal leads to the graceful shutdown below once start-up is done.
  const stop = watchForStop(options.signal, log);
  const closers: Array<{ name: string; close: () => unknown }> = [];
  const closeAll = async () => {
    for (const { name, close } of closers.reverse()) {
      try {
        await close();
      } catch (error) {
        log.warn({ error: errorFields(error), part: name }, 'error while closing');
      }
    }
    closers.length = 0;
  };

  let core: BotCoreImpl | undefined;
  const adapters: PlatformAdapter[] = [];
  const readiness = new Readiness();
  try {
    const styles: LiveStyleRegistry = openStyleRegistry({ file: config.stylesFile, logger: logger.child({ module: 'styles' }) });
    closers.push({ name: 'styles', close: () => styles.close() });
    const store = Store.open(config.dbPath, { logger: logger.child({ module: 'store' }) });
    closers.push({ name: 'store', close: () => store.close() });
    // The fast checks (model folder, platform tokens) before anything slow: ports, the queue, the model.
    await checkBeforeLoading(config, { model: !options.engineFactory && !hasQueue(config), platforms: !serve, env, log });
    readiness.register('store', storeCheck(config.dbPath, store));
    // The HTTP server is up before the model loads: /healthz answers, /readyz says what it waits for.
    const metrics = new BotMetrics({ defaultMetrics: true });
    registerFaultMetrics(metrics.registry, { store });
    readiness.report('engine', false, hasQueue(config) ? 'connecting to the queue' : 'loading the model');
    const http: HttpServer | undefined = await startVistyleHttp({
      config,
      plan: httpPlan(config, serve, options.http),
      metrics,
      readiness,
      styles,
      core: () => core,
      logger: logger.child({ module: 'http' }),
      ...(options.imageUrlCa ? { imageUrlCa: options.imageUrlCa } : {}),
    });
    if (http) closers.push({ name: 'http', close: () => http.close() });
    let engine: Engine;
    let frontEnd: QueueFrontEnd | undefined;
    if (hasQueue(config)) {
      frontEnd = new QueueFrontEnd(config, logger.child({ module: 'queue' }), metrics);
      closers.push({ name: 'queue', close: () => frontEnd!.close() });
      await frontEnd.start();
      engine = frontEnd.engine;
      const queue = frontEnd;
      readiness.register('queue', () => {
        const state = queue.readiness();
        return state.ready ? { ready: true } : { ready: false, detail: state.reasons.join('; ') };
      });
    } else {
      log.info({ modelDir: config.model.dir, provider: config.model.provider, db: config.dbPath }, 'loading the model');
      engine = await (options.engineFactory ?? ((c: AppConfig) => defaultEngine(c, logger)))(config);
      closers.push({ name: 'engine', close: () => engine.close() });
    }
    readiness.register('engine', engineCheck(engine));
    core = createBotCore({
      engine,
      styles,
      store,
      config,
      logger: logger.child({ module: 'bot' }),
      metrics,
      ...(frontEnd ? { scheduler: frontEnd.scheduler } : {}),
    });

    if (config.telegram && !serve) {
      adapters.push(
        createTelegramAdapter({
          core,
          logger,
          token: config.telegram.token,
          ...(config.telegram.apiRoot ? { apiRoot: config.telegram.apiRoot } : {}),
          ...(config.telegram.webhook ? { webhook: config.telegram.webhook } : {}),
        }),
      );
    }
    if (config.discord && !serve) {
      const discord = config.discord;
      adapters.push(
        createDiscordAdapter({
          core,
          logger,
          styles,
          token: discord.token,
          applicationId: discord.applicationId,
          mentionMode: discord.mentionMode,
          ...(discord.guildId ? { guildId: discord.guildId } : {}),
          ...(discord.apiRoot ? { apiRoot: discord.apiRoot } : {}),
          ...(discord.gatewayUrl ? { gatewayUrl: discord.gatewayUrl } : {}),
        }),
      );
    }
    // A signal while an adapter is still connecting (an unreachable platform is retried for a
    // while) stops at once: stopEverything's adapter.stop() ends the pending start().
    let stoppedEarly: string | undefined;
    for (const adapter of adapters) {
      let started = false;
      readiness.register(`adapter:${adapter.name}`, adapterCheck(adapter, () => started));
      const starting = adapter.start();
      const outcome = await Promise.race([starting.then(() => undefined), stop.reason]);
      if (outcome !== undefined) {
        starting.catch(() => undefined); // it ends with CANCELLED once the adapter stops
        stoppedEarly = outcome;
        break;
      }
      started = true;
      log.info({ platform: adapter.name }, 'adapter started');
    }
    if (stoppedEarly !== undefined) {
      log.info({ reason: stoppedEarly }, 'stop requested during start-up; stopping now');
      if (stoppedEarly === 'uncaught exception') process.exitCode = 1;
      await stopEverything(core, adapters, 0, closeAll, log);
      stop.release();
      log.info('stopped');
      return;
    }
    log.info({ platforms: adapters.map((a) => a.name), ...(http ? { http: http.url } : {}) }, 'vistyle is running');
    options.onStarted?.({ config, core, adapters, readiness, ...(http ? { metricsPort: http.port, httpPort: http.port } : {}), ...(frontEnd ? { queue: frontEnd } : {}) });

    const reason = await stop.reason;
    readiness.report('shutdown', false, 'shutting down');
    log.info({ reason }, 'shutting down');
    if (reason === 'uncaught exception') process.exitCode = 1;
  } catch (error) {
    log.error({ error: errorFields(error) }, 'start failed');
    await stopEverything(core, adapters, 0, closeAll, log);
    stop.release();
    throw error;
  }
  await stopEverything(core, adapters, config.limits.shutdownDrainMs, closeAll, log);
  stop.release();
  log.info('stopped');
}

async function defaultEngine(config: AppConfig, logger: Logger): Promise<Engine> {
  return createEngine({
    logger: logger.child({ module: 'engine-client' }),
    ...engineOptionsOf(config),
  });
}

/** Core first (users are told while the adapters can still talk), then adapters, engine, store. */
async function stopEverything(
  core: BotCoreImpl | undefined,
  adapters: PlatformAdapter[],
  drainMs: number,
  closeAll: () => Promise<void>,
  log: Logger,
): Promise<void> {
  if (core) await core.shutdown({ drainMs });
  for (const adapter of adapters) {
    try {
      await adapter.stop();
    } catch (error) {
      log.warn({ error: errorFields(error), platform: adapter.name }, 'adapter did not stop cleanly');
    }
  }
  await closeAll();
}

/**
 * Resolves with the reason to stop: a signal, `signal` aborting, or an uncaught exception. While
 * the bot runs, a stray promise rejection (a library's background call failing) is logged and the
 * bot keeps serving; an uncaught exception is logged and ends in the same graceful shutdown as a
 * signal (queued users told, running answers drained) with exit status 1, for the supervisor to
 * restart it, rather than an abrupt crash that would drop the queue.
 */
interface StopWatch {
  /** Why to stop: a signal, `signal` aborting, or an uncaught exception. */
  reason: Promise<string>;
  /** Removes every process listener (call once everything is closed). */
  release: () => void;
}

/**
 * Watches for the reason to stop. While the bot runs, a stray promise rejection (a library's
 * background call failing) is logged and the bot keeps serving; an uncaught exception is logged
 * and ends in the same graceful shutdown as a signal (queued users told, running answers drained)
 * with exit status 1, for the supervisor to restart it, rather than an abrupt crash that would
 * drop the queue. A second signal during shutdown exits at once.
 */
function watchForStop(signal: AbortSignal | undefined, log: Logger): StopWatch {
  let settle: (reason: string) => void = () => undefined;
  const reason = new Promise<string>((resolve) => {
    settle = resolve;
  });
  let stopping = false;
  const onRejection = (cause: unknown) => {
    log.error({ error: errorFields(cause) }, 'unhandled promise rejection; the bot keeps running');
  };
  const onException = (error: unknown) => {
    if (stopping) {
      log.fatal({ error: errorFields(error) }, 'uncaught exception while shutting down');
      return;
    }
    log.fatal({ error: errorFields(error) }, 'uncaught exception; shutting down gracefully');
    begin('uncaught exception');
  };
  const force = () => {
    log.warn('second signal: exiting now');
    process.exit(EXIT.FORCED);
  };
  const onSignal = (name: NodeJS.Signals) => {
    if (stopping) return force();
    begin(name);
  };
  const onAbort = () => begin('stop requested');
  const begin = (why: string) => {
    if (stopping) return;
    stopping = true;
    settle(why);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  if (signal?.aborted) onAbort();
  else signal?.addEventListener('abort', onAbort, { once: true });
  return {
    reason,
    release: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
      signal?.removeEventListener('abort', onAbort);
    },
  };
}
