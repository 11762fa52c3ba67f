// Wiring for the Telegram end-to-end tests: the real bot core (scheduler, store on a SQLite file,
// style registry) and the real Telegram adapter (telegraf) talking to the fake Bot API, over an
// engine the test chooses (the real worker engine on a tiny checkpoint, wrapped to observe what it
// was asked and what it answered). Logs are captured so tests can check them.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { expect } from 'vitest';
import { TelegramAdapter, type TelegramAdapterTuning } from '../../adapters/telegram/index.js';
import { stripControlChars } from '../../src/bot/control-chars.js';
import { BotCoreImpl } from '../../src/bot/core.js';
import { loadConfig } from '../../src/config/config.js';
import type { Engine, GenerateRequest, GenerationResult, GenerationStream, ModelInfo } from '../../src/engine/types.js';
import { createLogger, type Logger } from '../../src/log.js';
import { Store } from '../../src/store/index.js';
import { LiveStyleRegistry } from '../../src/styles/registry.js';
import type { FakeTelegram, BotMessageState } from '../support/fake-telegram/index.js';

/** Log lines captured from the bot (JSON strings, as pino wrote them). */
export class LogCapture {
  readonly lines: string[] = [];
  readonly logger: Logger;

  constructor(level = 'info') {
    const lines = this.lines;
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(line);
        callback();
      },
    });
    this.logger = createLogger({ level, destination });
  }

  parsed(): Record<string, unknown>[] {
    return this.lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  }
}

export interface EngineCall {
  request: GenerateRequest;
  result?: GenerationResult;
  error?: unknown;
}

/**
 * Passes every request to the real engine and records it and its result. With `deltaDelayMs` the
 * streamed deltas reach the bot that much apart (the tiny model writes a whole answer in ~0.1 s,
 * too fast to see streaming through edits paced at one a second); the text is the engine's own.
 */
export class ObservedEngine implements Engine {
  readonly calls: EngineCall[] = [];
  deltaDelayMs = 0;

  constructor(readonly inner: Engine) {}

  get info(): ModelInfo {
    return this.inner.info;
  }

  generate(request: GenerateRequest, options?: { signal?: AbortSignal }): GenerationStream {
    const call: EngineCall = { request };
    this.calls.push(call);
    const stream = this.inner.generate(request, options);
    const result = stream.result.then(
      (value) => {
        call.result = value;
        return value;
      },
      (error: unknown) => {
        call.error = error;
        throw error;
      },
    );
    result.catch(() => undefined);
    const delay = this.deltaDelayMs;
    return {
      result,
      async *[Symbol.asyncIterator]() {
        for await (const delta of stream) {
          if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
          yield delta;
        }
      },
    };
  }

  /** Answers the engine finished (in order). */
  answers(): string[] {
    return this.calls.flatMap((call) => (call.result ? [call.result.text] : []));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

export interface BotUnderTest {
  core: BotCoreImpl;
  adapter: TelegramAdapter;
  store: Store;
  logs: LogCapture;
  /** Drains the core, stops the adapter, closes the store (not the engine). */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** The fake Bot API (in this thread, or a RemoteFakeTelegram in a worker). */
  fake: Pick<FakeTelegram, 'token' | 'apiRoot'>;
  engine: Engine;
  dbPath: string;
  /** Extra configuration variables (VISTYLE_USER_PER_MINUTE, VISTYLE_MAX_QUEUE, ...). */
  env?: Record<string, string>;
  tuning?: TelegramAdapterTuning;
  webhook?: { url: string; secretToken: string; port: number; host?: string };
  logs?: LogCapture;
}

export async function startBot(options: StartOptions): Promise<BotUnderTest> {
  const config = loadConfig({
    VISTYLE_HOME: join(options.dbPath, '..'),
    VISTYLE_DB_PATH: options.dbPath,
    VISTYLE_SHUTDOWN_DRAIN_SECONDS: '5',
    ...options.env,
  });
  const logs = options.logs ?? new LogCapture();
  const store = Store.open(options.dbPath);
  const styles = new LiveStyleRegistry({ logger: logs.logger });
  const core = new BotCoreImpl({
    engine: options.engine,
    styles,
    store,
    config: { limits: config.limits, access: config.access, defaultLanguage: config.defaultLanguage, media: config.media },
    logger: logs.logger,
  });
  const adapterOptions: ConstructorParameters<typeof TelegramAdapter>[0] = {
    core,
    logger: logs.logger,
    token: options.fake.token,
    apiRoot: options.fake.apiRoot,
    ...options.tuning,
  };
  if (options.webhook) adapterOptions.webhook = options.webhook;
  const adapter = new TelegramAdapter(adapterOptions);
  await adapter.start();
  let stopped = false;
  return {
    core,
    adapter,
    store,
    logs,
    async stop() {
      if (stopped) return;
      stopped = true;
      // the order `vistyle start` uses: the core tells waiting users while the adapter can still talk
      await core.shutdown({ drainMs: 5000 });
      await adapter.stop();
      store.close();
    },
  };
}

export function tempDir(prefix = 'vistyle-tg-'): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * What a user sees: letters and digits in order, ignoring whitespace, Markdown markers and the
 * control characters the bot strips from answers (a random tiny model writes plenty).
 */
export function visibleCore(text: string): string {
  return stripControlChars(text).replace(/[\s*_`~#]/g, '');
}

/**
 * Waits until the bot has settled its reply to one user message: at least one visible message
 * replies to it and none of them still carries a button (the Cancel button goes with the final
 * text or the failure message). Returns those messages, oldest first.
 */
export async function settledReplies(fake: FakeTelegram, chatId: number, userMessageId: number, timeoutMs = 30_000): Promise<BotMessageState[]> {
  return await fake.waitFor(
    () => {
      const replies = fake.visibleMessagesIn(chatId).filter((message) => message.replyToMessageId === userMessageId);
      return replies.length > 0 && replies.every((message) => !message.replyMarkup) ? replies : undefined;
    },
    timeoutMs,
    `the bot's settled reply to message ${userMessageId} in chat ${chatId}`,
  );
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Checks that calls went out at least `intervalMs` apart. The times are where the fake received
 * them, so a call held up on its way (a busy CI machine: the fake shares the bot's event loop)
 * shortens the gap after it by that delay and lengthens the next one. Single gaps may therefore
 * fall short by up to `jitterMs`; the span of all of them only by the first call's delay.
 */
export function expectPaced(times: number[], intervalMs: number, jitterMs = 250): void {
  const gaps = times.slice(1).map((time, i) => time - times[i]!);
  for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(intervalMs - jitterMs);
  if (gaps.length > 0) expect(times.at(-1)! - times[0]!).toBeGreaterThanOrEqual(intervalMs * gaps.length - jitterMs);
}
