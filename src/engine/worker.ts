// Entry of the engine worker thread (started by worker-client.ts); the work is in worker-main.ts.
import { startWorker } from './worker-main.js';

await startWorker();
