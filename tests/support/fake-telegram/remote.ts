// The fake Bot API in its own worker thread (worker.ts), driven by messages: for measurements of
// the bot's main thread that the fake's own work must not disturb. Any FakeTelegram method can be
// called by name; results come back as structured clones (plain data).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { FakeTelegramOptions } from './server.js';
import type { BotMessageState, FakeUser, RecordedCall } from './types.js';

export class RemoteFakeTelegram {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();

  private constructor(
    private readonly worker: Worker,
    readonly apiRoot: string,
    readonly token: string,
    readonly botUser: FakeUser,
  ) {
    worker.on('message', (message: { id: number; result?: unknown; error?: string }) => {
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      if (message.error !== undefined) waiter.reject(new Error(message.error));
      else waiter.resolve(message.result);
    });
  }

  static async start(options: FakeTelegramOptions = {}): Promise<RemoteFakeTelegram> {
    // The worker entry is TypeScript. Node 20 does not apply `--import tsx` hooks inside worker
    // threads, so a small eval'd bootstrap loads it through tsx's tsImport() API.
    const entry = new URL('./worker.ts', import.meta.url).href;
    const bootstrap = `import(${JSON.stringify(tsxEsmApi())}).then((api) => api.tsImport(${JSON.stringify(entry)}, ${JSON.stringify(import.meta.url)}));`;
    const worker = new Worker(bootstrap, { eval: true, workerData: options });
    const ready = await new Promise<{ apiRoot: string; token: string; botUser: FakeUser }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    return new RemoteFakeTelegram(worker, ready.apiRoot, ready.token, ready.botUser);
  }

  call<T>(method: string, ...args: unknown[]): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.worker.postMessage({ id, method, args });
    });
  }

  /** Resolves with the bot's settled replies to each message once all are settled. */
  waitSettled(targets: { chatId: number; messageId: number }[], timeoutMs: number): Promise<BotMessageState[][]> {
    return this.call('waitSettled', targets, timeoutMs);
  }

  callsSince(index: number): Promise<RecordedCall[]> {
    return this.call('callsSince', index);
  }

  async close(): Promise<void> {
    await this.call('close').catch(() => undefined);
    await this.worker.terminate();
  }
}

/** file: URL of tsx's ESM API (tsx is a devDependency). */
function tsxEsmApi(): string {
  const require = createRequire(import.meta.url);
  const pkgPath = require.resolve('tsx/package.json');
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { exports: Record<string, { import?: { default?: string } } | string> };
  const entry = pkg.exports['./esm/api'];
  const file = typeof entry === 'object' ? entry.import?.default : undefined;
  if (!file) throw new Error('cannot find tsx/esm/api to run the fake Telegram worker');
  return pathToFileURL(join(dirname(pkgPath), file)).href;
}
