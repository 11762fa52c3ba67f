// Messages between the engine worker (worker.ts) and its client on the main thread
// (worker-client.ts). Everything here is structured-clone friendly plain data.
import type { MessagePort } from 'node:worker_threads';
import type { SerializedError } from '../errors.js';
import type { EngineOptions, GenerateRequest, GenerationResult, ModelInfo } from './types.js';

/** Passed as workerData. */
export interface WorkerInit {
  options: EngineOptions;
  /** Which start of the worker this is (1, then 2 after a restart...). */
  start: number;
  /** WorkerEngineOptions.workerData, for a wrapping entry (tests). */
  extra?: unknown;
  /** pino level for the worker's own logger. */
  logLevel?: string;
}

/** main -> worker, on the worker's parentPort. */
export type ToWorker =
  | { type: 'generate'; id: number; request: GenerateRequest; port: MessagePort }
  | { type: 'close' };

/** worker -> main, on the worker's parentPort. */
export type FromWorker =
  | { type: 'ready'; info: ModelInfo }
  | { type: 'init-failed'; error: SerializedError }
  | { type: 'closed' };

/** worker -> main, on a request's own port. */
export type RequestEvent =
  | { type: 'delta'; text: string }
  | { type: 'done'; result: GenerationResult }
  | { type: 'error'; error: SerializedError };

/** main -> worker, on a request's own port. */
export type RequestCommand = { type: 'cancel' };
