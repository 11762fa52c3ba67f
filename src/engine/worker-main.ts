// The engine worker thread: loads the model once (workerData: WorkerInit), then serves requests
// from the client (worker-client.ts). Each request brings its own MessagePort: deltas, the result
// or the error go back on it, and a 'cancel' on it aborts the request at the next decode step.
// Requests go to the local engine, which batches them, so overlapping calls are safe.
// worker.ts is the entry that runs this; a test entry can wrap it with hooks.
import { isMainThread, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { toSerializedError } from '../errors.js';
import { createLogger, setRootLogger } from '../log.js';
import { createLocalEngine, type LocalEngine } from './local-engine.js';
import type { FromWorker, RequestCommand, RequestEvent, ToWorker, WorkerInit } from './worker-protocol.js';

export interface WorkerHooks {
  /** After each generated token of any request (`count`: tokens of that answer so far). */
  onToken?: (count: number, init: WorkerInit) => void;
}

function post(message: FromWorker): void {
  parentPort!.postMessage(message);
}

export async function startWorker(hooks: WorkerHooks = {}): Promise<void> {
  if (isMainThread || !parentPort) throw new Error('src/engine/worker is meant to run as a worker thread');
  const init = workerData as WorkerInit;
  setRootLogger(createLogger(init.logLevel ? { level: init.logLevel } : {}));

  let engine: LocalEngine;
  try {
    engine = await createLocalEngine(init.options);
  } catch (error) {
    post({ type: 'init-failed', error: toSerializedError(error) });
    parentPort.close();
    return;
  }
  post({ type: 'ready', info: engine.info });

  const serve = (message: Extract<ToWorker, { type: 'generate' }>): void => {
    const port: MessagePort = message.port;
    const controller = new AbortController();
    port.on('message', (command: RequestCommand) => {
      if (command.type === 'cancel') controller.abort();
    });
    const send = (event: RequestEvent): void => port.postMessage(event);
    const onToken = hooks.onToken;
    const stream = engine.generate(message.request, {
      signal: controller.signal,
      ...(onToken ? { onToken: (_token: number, count: number) => onToken(count, init) } : {}),
    });
    void (async () => {
      try {
        for await (const text of stream) send({ type: 'delta', text });
        send({ type: 'done', result: await stream.result });
      } catch (error) {
        send({ type: 'error', error: toSerializedError(error) });
      } finally {
        port.close();
      }
    })();
  };

  parentPort.on('message', (message: ToWorker) => {
    switch (message.type) {
      case 'generate':
        serve(message);
        break;
      case 'close':
        void engine.close().finally(() => {
          post({ type: 'closed' });
          parentPort!.close();
        });
        break;
    }
  });
}
