// Options for createEngine() whose first worker dies after `tokens` generated tokens of an answer
// (tests/support/crash-worker.ts wraps the real worker); restarted workers serve normally.
import type { WorkerEngineOptions } from '../../src/engine/worker-client.js';

/** Exit code of the crashing worker. */
export const CRASH_EXIT_CODE = 70;

export function crashingWorker(tokens: number): Pick<WorkerEngineOptions, 'workerEntry' | 'workerData'> {
  return { workerEntry: new URL('./crash-worker.ts', import.meta.url), workerData: { crashAfterTokens: tokens } };
}
