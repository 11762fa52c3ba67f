// A worker entry for tests: the real engine worker (src/engine/worker-main.ts), whose FIRST start
// exits mid-answer once an answer has `crashAfterTokens` tokens, with no goodbye, like an OOM
// kill; restarted workers serve normally. Use it through crashingWorker() (crash-hook.ts).
import { startWorker } from '../../src/engine/worker-main.js';
import { CRASH_EXIT_CODE } from './crash-hook.js';

await startWorker({
  onToken: (count, init) => {
    const { crashAfterTokens } = (init.extra ?? {}) as { crashAfterTokens?: number };
    if (init.start === 1 && crashAfterTokens !== undefined && count >= crashAfterTokens) process.exit(CRASH_EXIT_CODE);
  },
});
