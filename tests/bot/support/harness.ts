// Builds a real bot core (real scheduler, store on a temp SQLite file, the built-in style
// registry) around an engine, plus a sink that records every call the core makes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { pino } from 'pino';
import type { CoreConfig } from '../../../src/bot/core.js';
import { createBotCore, type BotCoreImpl } from '../../../src/bot/core.js';
import type { AnswerSink, BotChat, BotRequest, BotUser, ImageSource } from '../../../src/bot/types.js';
import type { Engine } from '../../../src/engine/types.js';
import type { ErrorCode } from '../../../src/errors.js';
import { Store } from '../../../src/store/store.js';
import { builtinStyleRegistry } from '../../../src/styles/registry.js';
import type { StyleRegistry } from '../../../src/styles/types.js';

export const PNG_BYTES = new Uint8Array(readFileSync(new URL('../../fixtures/images/test_image_64x48.png', import.meta.url)));
export const PNG_BYTES_2 = new Uint8Array(readFileSync(new URL('../../fixtures/images/test_image2_40x56.png', import.meta.url)));

export function coreConfig(overrides: { limits?: Partial<CoreConfig['limits']>; access?: Partial<CoreConfig['access']>; defaultLanguage?: 'en' | 'zh' } = {}): CoreConfig {
  return {
    limits: {
      engineSlots: 1,
      userInFlight: 1,
      userPerMinute: 0,
      maxQueueLength: 100,
      requestTimeoutMs: 30_000,
      maxImageBytes: 5 * 1024 * 1024,
      maxQuestionChars: 500,
      historyTurns: 6,
      conversationTtlMs: 24 * 3600_000,
      shutdownDrainMs: 2_000,
      ...overrides.limits,
    },
    access: { allowedUsers: [], allowedChats: [], allowedGuilds: [], adminIds: ['admin'], ...overrides.access },
    defaultLanguage: overrides.defaultLanguage ?? 'en',
  };
}

export interface Harness {
  core: BotCoreImpl;
  store: Store;
  dbPath: string;
  dir: string;
  /** A second core on the same database file (a restart). */
  restart(engine?: Engine): Promise<Harness>;
  close(): Promise<void>;
}

export function makeHarness(engine: Engine, options: { config?: CoreConfig; styles?: StyleRegistry; dir?: string } = {}): Harness {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'vistyle-bot-'));
  const dbPath = join(dir, 'bot.db');
  const store = Store.open(dbPath);
  const core = createBotCore({
    engine,
    store,
    styles: options.styles ?? builtinStyleRegistry(),
    config: options.config ?? coreConfig(),
    logger: pino({ level: 'silent' }),
  });
  let closed = false;
  const harness: Harness = {
    core,
    store,
    dbPath,
    dir,
    async restart(nextEngine = engine) {
      await core.shutdown({ drainMs: 0 });
      store.close();
      closed = true;
      return makeHarness(nextEngine, { ...options, dir });
    },
    async close() {
      if (!closed) {
        await core.shutdown({ drainMs: 0 });
        store.close();
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return harness;
}

export type SinkEvent =
  | { type: 'queued'; position: number }
  | { type: 'started' }
  | { type: 'progress'; text: string }
  | { type: 'finished'; text: string }
  | { type: 'failed'; message: string; code: ErrorCode };

/** Records every call; `finished` answers with message ids `${prefix}-1..n`. */
export class RecordingSink implements AnswerSink {
  readonly events: SinkEvent[] = [];
  private static counter = 0;
  constructor(readonly answerIds: string[] = [`answer-${++RecordingSink.counter}`]) {}
  queued(position: number) {
    this.events.push({ type: 'queued', position });
  }
  started() {
    this.events.push({ type: 'started' });
  }
  progress(text: string) {
    this.events.push({ type: 'progress', text });
  }
  async finished(text: string) {
    this.events.push({ type: 'finished', text });
    return { messageIds: this.answerIds };
  }
  failed(message: string, code: ErrorCode) {
    this.events.push({ type: 'failed', message, code });
  }
  get terminal(): SinkEvent[] {
    return this.events.filter((e) => e.type === 'finished' || e.type === 'failed');
  }
  get positions(): number[] {
    return this.events.flatMap((e) => (e.type === 'queued' ? [e.position] : []));
  }
}

export const user = (id: string, extra: Partial<BotUser> = {}): BotUser => ({ platform: 'telegram', id, languageCode: 'en', ...extra });
export const privateChat = (id: string): BotChat => ({ platform: 'telegram', id, kind: 'private' });
export const groupChat = (id: string, extra: Partial<BotChat> = {}): BotChat => ({ platform: 'telegram', id, kind: 'group', ...extra });

export function imageSource(bytes: Uint8Array = PNG_BYTES, extra: Partial<ImageSource> = {}): ImageSource & { fetches: number } {
  const source = {
    fetches: 0,
    sizeBytes: bytes.byteLength,
    mime: 'image/png',
    async fetch() {
      source.fetches += 1;
      return bytes;
    },
    ...extra,
  };
  return source;
}

export function photoRequest(userId: string, question?: string, extra: Partial<BotRequest> = {}): BotRequest {
  return {
    user: user(userId),
    chat: privateChat(userId),
    images: [imageSource()],
    ...(question === undefined ? {} : { question }),
    ...extra,
  };
}
