// `vistyle worker`: on each GPU host, loads the engine (the model in --model, VISTYLE_MODEL_DIR, or
// the pulled model) and takes answer jobs from the Redis queue in VISTYLE_QUEUE_URL,
// VISTYLE_WORKER_CONCURRENCY at a time, streaming tokens back to the front end that asked
// (`vistyle start` with the same VISTYLE_QUEUE_URL). SIGTERM/SIGINT: finish the running answers,
// take no new ones, then exit; a second signal exits at once (its jobs run again elsewhere).
import type { Command } from 'commander';
import { loadConfig } from '../../config/config.js';
import { createEngine } from '../../engine/engine.js';
import type { Engine } from '../../engine/types.js';
import { VistyleError } from '../../errors.js';
import { createLogger, errorFields, setRootLogger } from '../../log.js';
import { WorkerMetrics } from '../../queue/metrics.js';
import { QueueWorker } from '../../queue/worker.js';
import { BotMetrics } from '../../scheduler/metrics.js';
import { startMetricsServer, type MetricsServer } from '../../scheduler/metrics-server.js';

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
  let metricsServer: MetricsServer | undefined;
  try {
    log.info({ modelDir: config.model.dir, provider: config.model.provider }, 'loading the model');
    engine = await createEngine({
      logger: logger.child({ module: 'engine-client' }),
      modelDir: config.model.dir,
      provider: config.model.provider,
      deviceId: config.model.deviceId,
      threads: config.model.threads,
      maxImageBytes: config.limits.maxImageBytes,
      ...(config.model.maxContextTokens ? { maxContextTokens: config.model.maxContextTokens } : {}),
    });
    const metrics = new BotMetrics({ defaultMetrics: true });
    let redisUp = () => false;
    const workerMetrics = new WorkerMetrics(metrics.registry, () => redisUp());
    worker = new QueueWorker({ queue: config.queue, engine, logger: log, metrics: workerMetrics });
    redisUp = () => worker!.redisUp();
    if (config.metrics) {
      metricsServer = await startMetricsServer(metrics, config.metrics);
      log.info({ port: metricsServer.port, host: config.metrics.host }, 'metrics on /metrics');
    }
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
