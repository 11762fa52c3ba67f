// `vistyle worker`: on each GPU host, loads the engine (the model in --model, VISTYLE_MODEL_DIR, or
// the pulled model) and takes answer jobs from the Redis queue in VISTYLE_QUEUE_URL,
// VISTYLE_WORKER_CONCURRENCY at a time, streaming tokens back to the front end that asked
// (`vistyle start` with the same VISTYLE_QUEUE_URL). SIGTERM/SIGINT: finish the running answers,
// take no new ones, then exit; a second signal exits at once (its jobs run again elsewhere).
import type { Command } from 'commander';
import { engineOptionsOf, loadConfig } from '../../config/config.js';
import { createEngine } from '../../engine/engine.js';
import type { Engine } from '../../engine/types.js';
import { VistyleError } from '../../errors.js';
import { createLogger, errorFields, setRootLogger } from '../../log.js';
import { WorkerMetrics } from '../../queue/metrics.js';
import { QueueWorker } from '../../queue/worker.js';
import { engineCheck } from '../../health/checks.js';
import { Readiness } from '../../health/readiness.js';
import { httpPlan, startVistyleHttp } from '../../http/app.js';
import type { HttpServer } from '../../http/server.js';
import { BotMetrics } from '../../metrics/metrics.js';

export interface WorkerRunOptions {
  model?: string;
  env?: NodeJS.ProcessEnv;
  /** Drain and stop when this aborts (tests); SIGINT/SIGTERM always do. */
  signal?: AbortSignal;
  logDestination?: NodeJS.WritableStream;
  onStarted?: (worker: QueueWorker, metricsPort: number | undefined) => void;
}

export function registerWorkerCommand(program: Command): void {
  program
    .command('worker')
    .description('take answer jobs from the queue in VISTYLE_QUEUE_URL and run them on this host’s model (see docs/deploy.md)')
    .option('-m, --model <dir>', 'built model folder (default: VISTYLE_MODEL_DIR, then the pulled model)')
    .action(async (options: { model?: string }) => {
      await runWorker(options.model ? { model: options.model } : {});
      setTimeout(() => process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0), 3_000).unref();
    });
}

export async function runWorker(options: WorkerRunOptions = {}): Promise<void> {
  const env = options.env ?? process.env;
  const config = loadConfig(options.model ? { ...env, VISTYLE_MODEL_DIR: options.model } : env);
  if (!config.queue) {
    throw new VistyleError('CONFIG_INVALID', 'vistyle worker needs VISTYLE_QUEUE_URL (redis://host:port of the queue the front end uses)');
  }
  const logger = createLogger({ level: config.logLevel, ...(options.logDestination ? { destination: options.logDestination } : {}) });
  setRootLogger(logger);
  const log = logger.child({ module: 'worker' });

  let stopping: ((why: string) => void) | undefined;
  const stopped = new Promise<string>((resolve) => (stopping = resolve));
  let signals = 0;
  const onSignal = (name: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      log.warn('second signal: exiting now (running jobs will run again on another worker)');
      process.exit(130);
    }
    stopping?.(name);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const onAbort = () => stopping?.('stop requested');
  options.signal?.addEventListener('abort', onAbort, { once: true });

  let engine: Engine | undefined;
  let worker: QueueWorker | undefined;
  let metricsServer: HttpServer | undefined;
  // Health and metrics as `vistyle start` serves them (never the API: a worker has no bot core).
  const readiness = new Readiness();
  readiness.report('engine', false, 'loading the model');
  try {
    const metrics = new BotMetrics({ defaultMetrics: true });
    metricsServer = await startVistyleHttp({
      config,
      plan: { ...httpPlan(config, false), api: false },
      metrics,
      readiness,
      logger: logger.child({ module: 'http' }),
    });
    log.info({ modelDir: config.model.dir, provider: config.model.provider }, 'loading the model');
    engine = await createEngine({
      logger: logger.child({ module: 'engine-client' }),
      ...engineOptionsOf(config),
    });
    readiness.register('engine', engineCheck(engine));
    let redisUp = () => false;
    const workerMetrics = new WorkerMetrics(metrics.registry, () => redisUp());
    worker = new QueueWorker({ queue: config.queue, engine, logger: log, metrics: workerMetrics });
    redisUp = () => worker!.redisUp();
    const queueWorker = worker;
    readiness.register('worker', () => {
      const state = queueWorker.readiness();
      return state.ready ? { ready: true } : { ready: false, detail: state.reasons.join('; ') };
    });
    await Promise.race([worker.start(), stopped]);
    options.onStarted?.(worker, metricsServer?.port);
    const reason = await stopped;
    log.info({ reason }, 'shutting down');
    await worker.drain();
  } catch (error) {
    log.error({ error: errorFields(error) }, 'worker failed');
    await worker?.close().catch(() => undefined);
    throw error;
  } finally {
    await metricsServer?.close().catch(() => undefined);
    await engine?.close().catch(() => undefined);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    options.signal?.removeEventListener('abort', onAbort);
  }
  log.info('stopped');
}
