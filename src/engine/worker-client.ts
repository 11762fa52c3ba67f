// The engine as the bot sees it: the model runs in a worker thread (onnxruntime's run() blocks the
// thread that calls it), and this client on the main thread forwards requests, streams deltas back
// and keeps the worker alive. If the worker dies (crash, out of memory, process.exit), every
// request in flight fails with ENGINE_CRASHED, the worker is restarted with backoff, and later
// requests are served by the new one.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { VistyleError, fromSerializedError } from '../errors.js';
import { errorFields, moduleLogger, type Logger } from '../log.js';
import { DeltaStream, cancelledResult } from './stream.js';
import type { Engine, EngineOptions, GenerateRequest, GenerationStream, ModelInfo } from './types.js';
import type { FromWorker, RequestCommand, RequestEvent, ToWorker, WorkerInit } from './worker-protocol.js';
import { ensureDawnRuntimeDir } from './providers.js';

export interface WorkerEngineOptions extends EngineOptions {
  /** Restart backoff after a crash: first delay, doubled per consecutive crash up to the maximum. */
  restartDelayMs?: number;
  maxRestartDelayMs?: number;
  logger?: Logger;
  /**
   * Another worker entry module, for tests that wrap the real one: it calls startWorker() from
   * worker-main.ts with hooks (tests/support/crash-worker.ts dies mid-answer like an OOM kill).
   * A `.ts` entry is loaded through tsx. Default: worker.js (worker.ts from sources).
   */
  workerEntry?: URL;
  /** Passed to the worker entry as WorkerInit.extra. */
  workerData?: unknown;
}

export interface WorkerGenerateOptions {
  signal?: AbortSignal;
  /**
   * Hand the request's image buffers to the worker without copying them. The caller's
   * ArrayBuffers are detached afterwards. Default false: the bytes are copied once, then the copy is
   * transferred (never structured-cloned).
   */
  transferImages?: boolean;
}

interface InFlight {
  id: number;
  stream: DeltaStream;
  port: MessagePort | undefined;
  request: GenerateRequest;
  options: WorkerGenerateOptions;
  onAbort: () => void;
}

type State = 'starting' | 'ready' | 'down' | 'closing' | 'closed';

/**
 * How to start the worker: worker.js next to this file when running from dist; when running from
 * the TypeScript sources (tests), worker.ts loaded through tsx. Node 20 does not apply `--import
 * tsx` loader hooks inside a worker thread, so a tiny eval'd bootstrap loads the entry with tsx's
 * tsImport() API instead.
 */
function workerSpawn(workerData: WorkerInit, entryUrl?: URL): Worker {
  const here = fileURLToPath(import.meta.url);
  // Dawn reads XDG_RUNTIME_DIR from the process environment, which a worker cannot change
  if (workerData.options.provider === 'webgpu') ensureDawnRuntimeDir(process.env);
  const common = { workerData, stdout: false, stderr: false };
  if (entryUrl ? entryUrl.pathname.endsWith('.ts') : here.endsWith('.ts')) {
    const entry = (entryUrl ?? new URL('./worker.ts', import.meta.url)).href;
    const bootstrap = `import(${JSON.stringify(tsxEsmApi())}).then((api) => api.tsImport(${JSON.stringify(entry)}, ${JSON.stringify(import.meta.url)}));`;
    return new Worker(bootstrap, { ...common, eval: true });
  }
  const url = entryUrl ?? new URL('./worker.js', import.meta.url);
  if (!existsSync(url)) throw new VistyleError('INTERNAL', `engine worker ${fileURLToPath(url)} is missing`);
  return new Worker(url, common);
}

/** file: URL of tsx's ESM API (a devDependency, present when running from sources). */
function tsxEsmApi(): string {
  const require = createRequire(import.meta.url);
  const pkgPath = require.resolve('tsx/package.json');
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { exports: Record<string, { import?: { default?: string } } | string> };
  const entry = pkg.exports['./esm/api'];
  const file = typeof entry === 'object' ? entry.import?.default : undefined;
  if (!file) throw new VistyleError('INTERNAL', 'cannot find tsx/esm/api to run the engine worker from TypeScript sources');
  return pathToFileURL(join(dirname(pkgPath), file)).href;
}

export class WorkerEngine implements Engine {
  private worker: Worker | undefined;
  private state: State = 'starting';
  private infoValue: ModelInfo | undefined;
  private readonly inFlight = new Map<number, InFlight>();
  /** Requests waiting for a (re)started worker. */
  private readonly waiting: InFlight[] = [];
  private nextId = 1;
  private crashes = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private readyWaiters: Array<{ resolve: () => void; reject: (error: unknown) => void }> = [];
  private closedPromise: Promise<void> | undefined;
  /** Workers started so far (1 + restarts). */
  starts = 0;

  constructor(private readonly options: WorkerEngineOptions) {
    this.log = options.logger ?? moduleLogger('engine-client');
  }

  get info(): ModelInfo {
    if (!this.infoValue) throw new VistyleError('INTERNAL', 'engine info read before the engine started');
    return this.infoValue;
  }

  /** Starts the worker and waits until the model is loaded (or fails to load). */
  start(): Promise<void> {
    const ready = new Promise<void>((resolve, reject) => this.readyWaiters.push({ resolve, reject }));
    this.spawn();
    return ready;
  }

  private spawn(): void {
    this.restartTimer = undefined;
    this.state = 'starting';
    this.starts++;
    const { workerEntry, workerData, logger: _logger, restartDelayMs: _d, maxRestartDelayMs: _m, ...engineOptions } = this.options;
    const init: WorkerInit = { options: engineOptions, logLevel: this.log.level, start: this.starts, ...(workerData === undefined ? {} : { extra: workerData }) };
    const worker = workerSpawn(init, workerEntry);
    this.worker = worker;
    worker.on('message', (message: FromWorker) => this.onWorkerMessage(worker, message));
    worker.on('error', (error) => {
      this.log.error({ error: errorFields(error, { stack: true }) }, 'engine worker error');
    });
    worker.on('exit', (code) => this.onWorkerExit(worker, code));
  }

  private onWorkerMessage(worker: Worker, message: FromWorker): void {
    if (worker !== this.worker) return;
    switch (message.type) {
      case 'ready': {
        this.infoValue = message.info;
        this.state = 'ready';
        for (const waiter of this.readyWaiters.splice(0)) waiter.resolve();
        for (const job of this.waiting.splice(0)) this.dispatch(job);
        break;
      }
      case 'init-failed': {
        const error = fromSerializedError(message.error);
        this.state = 'down';
        this.worker = undefined;
        void worker.terminate();
        this.log.error({ code: error.code, err: error.message }, 'engine worker failed to load the model');
        for (const waiter of this.readyWaiters.splice(0)) waiter.reject(error);
        for (const job of this.waiting.splice(0)) this.finish(job, () => job.stream.fail(error));
        break;
      }
      case 'closed':
        break;
    }
  }

  private onWorkerExit(worker: Worker, code: number): void {
    if (worker !== this.worker) return;
    this.worker = undefined;
    if (this.state === 'closing' || this.state === 'closed') {
      this.state = 'closed';
      return;
    }
    const wasStarting = this.state === 'starting';
    this.state = 'down';
    this.crashes++;
    const crash = new VistyleError('ENGINE_CRASHED', `the engine worker stopped unexpectedly (exit code ${code})`, {
      details: { exitCode: code },
    });
    this.log.warn({ exitCode: code, inFlight: this.inFlight.size, crashes: this.crashes }, 'engine worker died');
    for (const job of [...this.inFlight.values()]) this.finish(job, () => job.stream.fail(crash));
    for (const waiter of this.readyWaiters.splice(0)) waiter.reject(crash);
    if (wasStarting && this.starts === 1) {
      // Never came up: there is nothing to restart into; requests get the crash.
      for (const job of this.waiting.splice(0)) this.finish(job, () => job.stream.fail(crash));
      return;
    }
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    if (this.restartTimer || this.state === 'closing' || this.state === 'closed') return;
    const first = this.options.restartDelayMs ?? 250;
    const max = this.options.maxRestartDelayMs ?? 10_000;
    const delay = Math.min(max, first * 2 ** Math.max(0, this.crashes - 1));
    this.log.info({ delayMs: delay }, 'restarting the engine worker');
    this.restartTimer = setTimeout(() => this.spawn(), delay);
  }

  generate(request: GenerateRequest, options: WorkerGenerateOptions = {}): GenerationStream {
    const stream = new DeltaStream();
    if (this.state === 'closing' || this.state === 'closed') {
      stream.fail(new VistyleError('SHUTTING_DOWN', 'the engine is closed'));
      return stream;
    }
    if (options.signal?.aborted) {
      stream.end(cancelledResult());
      return stream;
    }
    const job: InFlight = { id: this.nextId++, stream, port: undefined, request, options, onAbort: () => this.cancel(job) };
    options.signal?.addEventListener('abort', job.onAbort, { once: true });
    if (this.state === 'ready') this.dispatch(job);
    else {
      this.waiting.push(job);
      if (this.state === 'down') this.scheduleRestart();
    }
    return stream;
  }

  private dispatch(job: InFlight): void {
    const worker = this.worker;
    if (!worker) {
      this.waiting.push(job);
      return;
    }
    const channel = new MessageChannel();
    job.port = channel.port1;
    this.inFlight.set(job.id, job);
    channel.port1.on('message', (event: RequestEvent) => this.onRequestEvent(job, event));
    const transfer: Array<MessagePort | ArrayBuffer> = [channel.port2];
    let request = job.request;
    if (request.images && request.images.length > 0) {
      const seen = new Set<ArrayBufferLike>();
      const images = request.images.map((image) => {
        const whole = image.byteOffset === 0 && image.byteLength === image.buffer.byteLength && image.buffer instanceof ArrayBuffer;
        // copy exactly the image bytes once (a buffer can be transferred only once)
        const bytes = job.options.transferImages && whole && !seen.has(image.buffer) ? image : new Uint8Array(image);
        seen.add(bytes.buffer);
        if (bytes.byteLength > 0) transfer.push(bytes.buffer as ArrayBuffer);
        return bytes;
      });
      request = { ...request, images };
    }
    const message: ToWorker = { type: 'generate', id: job.id, request, port: channel.port2 };
    try {
      worker.postMessage(message, transfer);
    } catch (error) {
      this.finish(job, () => job.stream.fail(new VistyleError('INTERNAL', `cannot send the request to the engine worker: ${(error as Error).message}`, { cause: error })));
    }
  }

  private onRequestEvent(job: InFlight, event: RequestEvent): void {
    switch (event.type) {
      case 'delta':
        job.stream.push(event.text);
        break;
      case 'done':
        this.crashes = 0;
        this.finish(job, () => job.stream.end(event.result));
        break;
      case 'error':
        this.finish(job, () => job.stream.fail(fromSerializedError(event.error)));
        break;
    }
  }

  private cancel(job: InFlight): void {
    if (job.port) {
      const command: RequestCommand = { type: 'cancel' };
      job.port.postMessage(command);
      return;
    }
    const index = this.waiting.indexOf(job);
    if (index >= 0) {
      this.waiting.splice(index, 1);
      this.finish(job, () => job.stream.end(cancelledResult()));
    }
  }

  private finish(job: InFlight, settle: () => void): void {
    this.inFlight.delete(job.id);
    job.options.signal?.removeEventListener('abort', job.onAbort);
    job.port?.close();
    job.port = undefined;
    settle();
  }

  /**
   * Whether the engine answers now (for /readyz): not while its worker is (re)starting after a
   * crash, nor once it is closing.
   */
  readiness(): { ready: boolean; detail?: string } {
    switch (this.state) {
      case 'ready':
        return { ready: true };
      case 'starting':
        return { ready: false, detail: this.starts > 1 ? 'the engine worker is restarting after a crash' : 'loading the model' };
      case 'down':
        return { ready: false, detail: 'the engine worker stopped; it restarts with the next request' };
      default:
        return { ready: false, detail: 'the engine is shutting down' };
    }
  }

  /** Requests sent to the worker and not finished. */
  get inFlightCount(): number {
    return this.inFlight.size;
  }

  close(): Promise<void> {
    this.closedPromise ??= this.shutdown();
    return this.closedPromise;
  }

  private async shutdown(): Promise<void> {
    this.state = 'closing';
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    const closing = new VistyleError('SHUTTING_DOWN', 'the engine is shutting down');
    for (const job of this.waiting.splice(0)) this.finish(job, () => job.stream.fail(closing));
    for (const job of [...this.inFlight.values()]) this.cancel(job);
    const worker = this.worker;
    if (!worker) {
      this.state = 'closed';
      return;
    }
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage({ type: 'close' } satisfies ToWorker);
    const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 30_000).unref());
    if ((await Promise.race([exited, timeout])) === 'timeout') await worker.terminate();
    for (const job of [...this.inFlight.values()]) this.finish(job, () => job.stream.fail(closing));
    this.state = 'closed';
  }
}

/**
 * Starts the engine in a worker thread and resolves once the model is loaded. Rejects with the
 * load error (MODEL_NOT_FOUND, MODEL_INVALID, PROVIDER_UNAVAILABLE...) when it cannot start.
 */
export async function createEngine(options: WorkerEngineOptions): Promise<WorkerEngine> {
  const engine = new WorkerEngine(options);
  try {
    await engine.start();
  } catch (error) {
    await engine.close();
    throw error;
  }
  return engine;
}
