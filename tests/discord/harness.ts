// Runs the whole bot for Discord end-to-end tests: the real core (scheduler, SQLite store, style
// registry), the real engine on a tiny generated checkpoint, and the Discord adapter driving the
// real discord.js client against the fake Discord.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { APIMessage } from 'discord.js';
import { createDiscordAdapter, type DiscordAdapter, type DiscordAdapterExtras } from '../../adapters/discord/index.js';
import { createBotCore, type BotCoreImpl } from '../../src/bot/core.js';
import type { LimitsConfig, MediaConfig } from '../../src/config/config.js';
import { createEngine } from '../../src/engine/engine.js';
import type { Engine } from '../../src/engine/types.js';
import { createLogger, type Logger } from '../../src/log.js';
import { Store } from '../../src/store/index.js';
import { builtinStyleRegistry, openStyleRegistry } from '../../src/styles/registry.js';
import type { StyleRegistry } from '../../src/styles/types.js';
import type { FakeDiscord, FakeInteraction } from '../support/fake-discord/index.js';
import { tinyModel } from '../support/tiny-model.js';
import { crashingWorker } from '../support/crash-hook.js';

export const FIXTURE_PNG = readFileSync(new URL('../fixtures/images/test_image_64x48.png', import.meta.url));

/** Log lines written by the bot, kept for assertions (secrets, structure). */
export class LogCapture {
  readonly lines: string[] = [];
  readonly logger: Logger;
  constructor(level = 'debug') {
    const sink = new Writable({
      write: (chunk: Buffer, _encoding, done) => {
        this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
        done();
      },
    });
    this.logger = createLogger({ level, destination: sink });
  }
  text(): string {
    return this.lines.join('\n');
  }
  records(): Record<string, unknown>[] {
    return this.lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  }
}

export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'vistyle-discord-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

const DEFAULT_LIMITS: LimitsConfig = {
  engineSlots: 1,
  userInFlight: 1,
  userPerMinute: 30,
  maxQueueLength: 100,
  requestTimeoutMs: 120_000,
  maxImageBytes: 20 * 1024 * 1024,
  maxQuestionChars: 2000,
  historyTurns: 6,
  conversationTtlMs: 48 * 3600_000,
  shutdownDrainMs: 2000,
};

export interface EngineHandle {
  engine: Engine;
  /** Workers started so far (1 + restarts after crashes). */
  starts(): number;
  close(): Promise<void>;
}

/**
 * A tiny checkpoint shaped to write readable text that does not stop early: the final norm keeps
 * one hidden dimension, and the (untied) output head maps its sign to one of two groups of
 * printable characters (letters, spaces, newlines), far above every other token (EOS included).
 * The random model proper ends early at random (about half the time within 3000 tokens) and
 * writes mostly unprintable bytes; answers past Discord's 2000 characters need this one.
 */
export function talkativeModel() {
  const plus = [...'etaoinshrdlu '];
  const minus = [...'cmfwypvbgkjqx.\n'];
  return tinyModel({
    tieWordEmbeddings: false,
    transform: (name, values) => {
      if (name === 'language_model.norm.weight') return values.map((_v, i) => (i === 0 ? 1 : 0));
      if (name === 'lm_head.weight') {
        const hidden = values.length / 512;
        const out = new Float32Array(values.length);
        for (const ch of plus) out[ch.charCodeAt(0) * hidden] = 40;
        for (const ch of minus) out[ch.charCodeAt(0) * hidden] = -40;
        return out;
      }
      return values;
    },
  });
}

/** The real worker engine on a tiny checkpoint (one onnxruntime thread). */
export async function startEngine(
  options: { debugCrashAfterTokens?: number; maxContextTokens?: number; talkative?: boolean } = {},
): Promise<EngineHandle> {
  const model = await (options.talkative ? talkativeModel() : tinyModel());
  const engine = await createEngine({
    modelDir: model.modelDir,
    threads: 1,
    slots: 1, // one slot, as the queue tests expect
    restartDelayMs: 50,
    maxContextTokens: options.maxContextTokens ?? 4096,
    ...(options.debugCrashAfterTokens ? crashingWorker(options.debugCrashAfterTokens) : {}),
  });
  return { engine, starts: () => engine.starts, close: () => engine.close() };
}

export interface BotOptions {
  fake: FakeDiscord;
  engine: Engine;
  dbPath: string;
  mentionMode?: boolean;
  guildId?: string | null;
  limits?: Partial<LimitsConfig>;
  /** Pictures per message, animations and videos (default: the core's). */
  media?: MediaConfig;
  adminIds?: string[];
  /** A styles file (YAML/JSON) instead of the built-in styles. */
  stylesFile?: string;
  styles?: StyleRegistry;
  extras?: DiscordAdapterExtras & { gatewayUrl?: string };
  logs?: LogCapture;
}

export interface RunningBot {
  adapter: DiscordAdapter;
  core: BotCoreImpl;
  store: Store;
  logs: LogCapture;
  stop(): Promise<void>;
}

export async function startBot(options: BotOptions): Promise<RunningBot> {
  const logs = options.logs ?? new LogCapture();
  const store = Store.open(options.dbPath);
  const styles = options.styles ?? (options.stylesFile ? openStyleRegistry({ file: options.stylesFile, watch: false, logger: logs.logger }) : builtinStyleRegistry());
  const core = createBotCore({
    engine: options.engine,
    styles,
    store,
    config: {
      limits: { ...DEFAULT_LIMITS, ...options.limits },
      access: { allowedUsers: [], allowedChats: [], allowedGuilds: [], adminIds: options.adminIds ?? [] },
      defaultLanguage: 'en',
      ...(options.media ? { media: options.media } : {}),
    },
    logger: logs.logger.child({ module: 'bot' }),
  });
  const adapter = createDiscordAdapter({
    core,
    logger: logs.logger,
    token: options.fake.token,
    applicationId: options.fake.applicationId,
    apiRoot: options.fake.apiRoot,
    mentionMode: options.mentionMode ?? false,
    ...(options.guildId === null ? {} : { guildId: options.guildId ?? options.fake.guildId }),
    styles,
    editIntervalMs: 1000,
    ...options.extras,
  });
  await adapter.start();
  let stopped = false;
  return {
    adapter,
    core,
    store,
    logs,
    async stop() {
      if (stopped) return;
      stopped = true;
      await core.shutdown({ drainMs: 500 });
      await adapter.stop();
      store.close();
    },
  };
}

/** The state of an interaction's reply once the bot is done with it. */
export interface Reply {
  /** The public reply (the deferred message), unless the bot removed it. */
  original: APIMessage | undefined;
  followUps: APIMessage[];
}

function isTerminal(message: APIMessage): boolean {
  const loading = ((message.flags ?? 0) & 128) !== 0;
  return !loading && (message.components ?? []).length === 0 && message.content.length > 0;
}

/**
 * Wait until the reply to `interaction` is final: its message shows text with no Cancel button
 * (an answer or a failure), or it was replaced by a private (ephemeral) follow-up.
 */
export async function finalReply(fake: FakeDiscord, interaction: FakeInteraction, timeoutMs = 60_000): Promise<Reply> {
  return fake.waitFor(
    () => {
      if (!interaction.originalMessageId) return undefined;
      const original = fake.message(interaction.channelId, interaction.originalMessageId);
      const followUps = interaction.followUpIds
        .map((id) => fake.message(interaction.channelId, id))
        .filter((m): m is APIMessage => m !== undefined);
      if (!original) return followUps.length > 0 ? { original: undefined, followUps } : undefined;
      return isTerminal(original) ? { original, followUps } : undefined;
    },
    `the final reply to interaction ${interaction.id}`,
    timeoutMs,
  );
}

/** Wait for a bot channel message (mention mode) replying to `messageId` to be final. */
export async function finalChannelReply(fake: FakeDiscord, channelId: string, messageId: string, timeoutMs = 60_000): Promise<APIMessage> {
  return fake.waitFor(
    () => {
      const reply = fake
        .messages(channelId)
        .find((m) => m.author.id === fake.botUser.id && m.message_reference?.message_id === messageId);
      return reply && isTerminal(reply) ? reply : undefined;
    },
    `the bot's final reply to message ${messageId}`,
    timeoutMs,
  );
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
