// Messages between the engine worker (worker.ts) and its client on the main thread
// (worker-client.ts). Everything here is structured-clone friendly plain data.
import type { MessagePort } from 'node:worker_threads';
import type { SerializedError } from '../errors.js';
import type { EngineOptions, GenerateRequest, GenerationResult, ModelInfo } from './types.js';

/** Passed as workerData. */
export interface WorkerInit {
  options: EngineOptions;
  /** Test-only: the worker exits (process.exit(70)) after this many generated tokens. */
  crashAfterTokens?: number;
  /** pino level for the worker's own logger. */
  logLevel?: string;
}

/** main -> worker, on the worker's parentPort. */
export type ToWorker =
  | { type: 'generate'; id: number; request: GenerateRequest; port: MessagePort }
  /** Test-only crash hook: exit after `tokens` more generated tokens. */
  | { type: 'debug-crash-after-tokens'; tokens: number }
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

/** Exit code of the test-only crash hook. */
export const DEBUG_CRASH_EXIT_CODE = 70;
