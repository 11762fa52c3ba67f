// The bot's configuration, read from the environment (and `.env`, loaded by the CLI first through
// dotenv.ts). Every variable is validated with zod; an invalid value is a CONFIG_INVALID error that
// names the variable (and never echoes a secret). Tokens are registered with the logger's
// redaction as soon as they are read.
import { join } from 'node:path';
import { z } from 'zod';
import { VistyleError } from '../errors.js';
import { registerSecret } from '../log.js';
import { resolveModelDir, vistyleHome } from '../paths.js';
import { explainConfiguredValues } from './provenance.js';
import type { EngineOptions, ExecutionProvider } from '../engine/types.js';
import type { Language } from '../styles/types.js';

export interface TelegramConfig {
  token: string;
  apiRoot?: string;
  webhook?: { url: string; secretToken: string; port: number; host: string };
}

export interface DiscordConfig {
  token: string;
  applicationId: string;
  guildId?: string;
  apiRoot?: string;
  gatewayUrl?: string;
  mentionMode: boolean;
}

export interface LimitsConfig {
  /** Requests the engine decodes together (VISTYLE_ENGINE_SLOTS); unset: the engine's default
   *  (4). The scheduler uses what the engine reports (Engine.info.slots). */
  engineSlots?: number;
  /** Requests one user may have queued or running (VISTYLE_USER_IN_FLIGHT). */
  userInFlight: number;
  /** Requests one user may make per minute; 0 = unlimited (VISTYLE_USER_PER_MINUTE). */
  userPerMinute: number;
  /** Waiting requests beyond which new ones are refused as busy (VISTYLE_MAX_QUEUE). */
  maxQueueLength: number;
  /** Longest a request may run on the engine (VISTYLE_REQUEST_TIMEOUT_SECONDS). */
  requestTimeoutMs: number;
  /** Largest encoded picture accepted (VISTYLE_MAX_IMAGE_BYTES). */
  maxImageBytes: number;
  /** Longest question accepted (VISTYLE_MAX_QUESTION_CHARS). */
  maxQuestionChars: number;
  /** Earlier question/answer pairs kept per conversation (VISTYLE_HISTORY_TURNS). */
  historyTurns: number;
  /** Conversations idle longer than this are forgotten (VISTYLE_CONVERSATION_TTL_HOURS). */
  conversationTtlMs: number;
  /** On shutdown, how long running requests may finish (VISTYLE_SHUTDOWN_DRAIN_SECONDS). */
  shutdownDrainMs: number;
}

export interface AccessConfig {
  /** Entries are `id` (any platform) or `platform:id`. Empty list: everyone. */
  allowedUsers: string[];
  allowedChats: string[];
  allowedGuilds: string[];
  adminIds: string[];
}

export interface AppConfig {
  telegram?: TelegramConfig;
  discord?: DiscordConfig;
  model: EngineConfig & { dir: string };
  home: string;
  dbPath: string;
  stylesFile: string | null;
  limits: LimitsConfig;
  access: AccessConfig;
  defaultLanguage: Language;
  logLevel: string;
  /** json or pretty; unset: pretty when stderr is a terminal, else JSON (VISTYLE_LOG_FORMAT). */
  logFormat?: 'json' | 'pretty';
  /** Where logs go once stderr is gone for good (VISTYLE_LOG_FILE); null: dropped and counted. */
  logFile: string | null;
  /** Deprecated: VISTYLE_METRICS_PORT, now the port of the health/metrics server when VISTYLE_HTTP_PORT is unset. */
  metrics?: { port: number; host: string };
  http: HttpConfig;
  /** Several pictures per message, animations and short videos (src/media). */
  media: MediaConfig;
  /** Set when VISTYLE_QUEUE_URL is: `vistyle start` is a front end, `vistyle worker` runs engines. */
  queue?: QueueConfig;
}

/** The Redis/BullMQ queue between front ends and engine workers (src/queue). */
export interface QueueConfig {
  /** redis:// or rediss:// URL (may hold user:password; never logged). */
  url: string;
  /** Prefix of every Redis key (several deployments can share one Redis). */
  prefix: string;
  /** Jobs one `vistyle worker` runs at once (its batch slots); undefined: the engine's slot count. */
  workerConcurrency?: number;
  /** How often a job whose worker died is started again on another worker (0: end it with a message). */
  stalledRetries: number;
  /** A worker's lock on a job; a job whose lock lapses (worker gone) counts as stalled. */
  lockMs: number;
  /** Picture bytes kept in Redis for a job at most this long. */
  pictureTtlMs: number;
  /** Picture bytes one job may carry in all. */
  maxJobBytes: number;
  /** Folder of LoRA adapter folders this worker serves (each advertised by its folder name). */
  adaptersDir: string;
  /** Name of this worker in metrics and logs (default host:pid). */
  workerName?: string;
}

/** The HTTP server (src/http): health, metrics, and the OpenAI-compatible API with its web page. */
export interface HttpConfig {
  /** VISTYLE_HTTP_PORT; when set, `vistyle start` serves the API and the web page too. */
  port?: number;
  /** VISTYLE_HTTP_HOST (default 127.0.0.1). */
  host: string;
  /** VISTYLE_API_KEYS, unparsed (src/http/keys.ts reads it); a secret. */
  apiKeys: string | null;
  /** VISTYLE_API_KEYS_FILE: YAML/JSON keys with per-key limits and style allow-lists. */
  apiKeysFile: string | null;
  /** VISTYLE_ALLOW_PRIVATE_IMAGE_URLS: let image URLs reach loopback/private/link-local addresses. */
  allowPrivateImageUrls: boolean;
  /** VISTYLE_MAX_IMAGES_PER_MESSAGE: pictures one API message may carry. */
  maxImagesPerMessage: number;
  /** VISTYLE_HTTP_CORS_ORIGINS: browser origins allowed to call /v1 from other pages ('*': any); empty: none. */
  corsOrigins: string[];
}

/** Pictures per message, animations and short videos: what the bot takes from one message (src/media). */
export interface MediaConfig {
  /** VISTYLE_MAX_IMAGES_PER_MESSAGE: pictures (a clip counts as one) a message may bring; the rest are skipped, and the user told. */
  maxImagesPerMessage: number;
  /** VISTYLE_VIDEO_FRAMES: frames sampled from an animation or a video; default 4 on CPU, 8 on a GPU provider. */
  videoFrames: number;
  /** VISTYLE_VIDEO_MAX_SECONDS: longest video or animation accepted. */
  videoMaxSeconds: number;
  /** VISTYLE_VIDEO_MAX_BYTES: largest video file accepted. */
  videoMaxBytes: number;
}

/** The engine's settings (src/engine takes them from here, never from the environment). */
export interface EngineConfig {
  provider: ExecutionProvider;
  deviceId: number;
  threads: number;
  maxContextTokens?: number;
  /** VISTYLE_PREFIX_CACHE_MB in bytes (0: prefix reuse off); unset: sized from free memory. */
  prefixCacheBytes?: number;
  /** VISTYLE_MAX_MEMORY_MB in bytes. */
  maxMemoryBytes?: number;
  /** VISTYLE_DEVICE_MEMORY_MB: GPU memory the webgpu engine may plan for (unset: nvidia-smi's total). */
  deviceMemoryMB?: number;
}

const MiB = 1024 * 1024;

const optionalText = z.string().trim().min(1).optional();
/**
 * Comma-separated browser origins (scheme://host[:port], as a browser sends them in Origin) or
 * `*`; unset or empty: none.
 */
const corsOrigins = z
  .string()
  .optional()
  .transform((value, ctx) => {
    const out: string[] = [];
    for (const item of (value ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
      if (item === '*') {
        out.push(item);
        continue;
      }
      let origin: string | undefined;
      try {
        const url = new URL(item);
        if ((url.protocol === 'http:' || url.protocol === 'https:') && url.origin === item.replace(/\/$/, '')) origin = url.origin;
      } catch {
        // reported below
      }
      if (!origin) {
        ctx.addIssue({ code: 'custom', message: `"${item}" is not an origin: expected scheme://host[:port] without a path (e.g. https://chat.example.com), or *` });
        return z.NEVER;
      }
      out.push(origin);
    }
    return out;
  });

const optionalUrl = z.url({ protocol: /^(https?|wss?)$/, error: 'expected an http(s) or ws(s) URL' }).optional();
const int = (min: number, max: number, fallback: number) =>
  z.coerce
    .number({ error: 'expected a number' })
    .int({ error: 'expected a whole number' })
    .min(min, { error: `expected at least ${min}` })
    .max(max, { error: `expected at most ${max}` })
    .default(fallback);
const optionalInt = (min: number, max: number) =>
  z.coerce.number({ error: 'expected a number' }).int({ error: 'expected a whole number' }).min(min, { error: `expected at least ${min}` }).max(max, { error: `expected at most ${max}` }).optional();
const bool = (fallback: boolean) =>
  z
    .enum(['1', '0', 'true', 'false', 'yes', 'no', 'on', 'off'], { error: 'expected true or false' })
    .transform((value) => ['1', 'true', 'yes', 'on'].includes(value))
    .default(fallback);
const idList = z
  .string()
  .optional()
  .transform((value) => (value ?? '').split(/[\s,]+/).map((entry) => entry.trim()).filter(Boolean))
  .pipe(z.array(z.string().regex(/^(?:(?:telegram|discord):)?-?[\w.]+$/, { error: 'expected ids like 123 or telegram:123' })));

/** Every variable, by its name, so validation errors name the variable. */
const EnvSchema = z.object({
  TELEGRAM_BOT_TOKEN: optionalText,
  TELEGRAM_API_ROOT: optionalUrl,
  TELEGRAM_WEBHOOK_URL: z.url({ protocol: /^https?$/, error: 'expected an https URL' }).optional(),
  TELEGRAM_WEBHOOK_SECRET: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,256}$/, { error: 'expected 1-256 characters A-Z, a-z, 0-9, _ or - (Telegram secret_token)' })
    .optional(),
  TELEGRAM_WEBHOOK_PORT: int(1, 65535, 8443),
  TELEGRAM_WEBHOOK_HOST: z.string().trim().min(1).default('0.0.0.0'),
  DISCORD_TOKEN: optionalText,
  DISCORD_APPLICATION_ID: z.string().regex(/^\d{5,25}$/, { error: 'expected a numeric Discord id' }).optional(),
  DISCORD_GUILD_ID: z.string().regex(/^\d{5,25}$/, { error: 'expected a numeric Discord id' }).optional(),
  DISCORD_API_ROOT: optionalUrl,
  DISCORD_GATEWAY_URL: optionalUrl,
  DISCORD_MENTION_MODE: bool(false),
  VISTYLE_MODEL_DIR: optionalText,
  // any case, as `vistyle model pull` reads it ("CUDA" is cuda)
  VISTYLE_PROVIDER: z.preprocess((v) => (typeof v === 'string' ? v.toLowerCase() : v), z.enum(['cpu', 'cuda', 'webgpu'], { error: 'expected cpu, cuda or webgpu' })).default('cpu'),
  VISTYLE_DEVICE_ID: int(0, 64, 0),
  VISTYLE_THREADS: int(0, 1024, 0),
  VISTYLE_MAX_CONTEXT_TOKENS: optionalInt(256, 1_000_000),
  VISTYLE_DEVICE_MEMORY_MB: optionalInt(64, 100_000_000),
  VISTYLE_HOME: optionalText,
  VISTYLE_DB_PATH: optionalText,
  VISTYLE_STYLES_FILE: optionalText,
  VISTYLE_ENGINE_SLOTS: optionalInt(1, 64),
  VISTYLE_USER_IN_FLIGHT: int(1, 100, 1),
  VISTYLE_USER_PER_MINUTE: int(0, 10_000, 6),
  VISTYLE_MAX_QUEUE: int(1, 100_000, 100),
  VISTYLE_REQUEST_TIMEOUT_SECONDS: int(1, 86_400, 180),
  VISTYLE_MAX_IMAGE_BYTES: int(1024, 1024 * MiB, 20 * MiB),
  VISTYLE_MAX_QUESTION_CHARS: int(1, 100_000, 2000),
  VISTYLE_HISTORY_TURNS: int(0, 100, 6),
  VISTYLE_CONVERSATION_TTL_HOURS: int(1, 24 * 365, 48),
  VISTYLE_SHUTDOWN_DRAIN_SECONDS: int(0, 3600, 30),
  VISTYLE_ALLOWED_USERS: idList,
  VISTYLE_ALLOWED_CHATS: idList,
  VISTYLE_ALLOWED_GUILDS: idList,
  VISTYLE_ADMIN_IDS: idList,
  VISTYLE_DEFAULT_LANGUAGE: z.enum(['en', 'zh'], { error: 'expected en or zh' }).default('en'),
  VISTYLE_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { error: 'expected a pino level (info, debug, ...)' }).default('info'),
  VISTYLE_LOG_FORMAT: z.enum(['json', 'pretty'], { error: 'expected json or pretty' }).optional(),
  VISTYLE_LOG_FILE: optionalText,
  VISTYLE_METRICS_PORT: optionalInt(0, 65535),
  VISTYLE_METRICS_HOST: z.string().trim().min(1).default('127.0.0.1'),
  VISTYLE_HTTP_PORT: optionalInt(0, 65535),
  VISTYLE_HTTP_HOST: z.string().trim().min(1).default('127.0.0.1'),
  VISTYLE_API_KEYS: optionalText,
  VISTYLE_API_KEYS_FILE: optionalText,
  VISTYLE_ALLOW_PRIVATE_IMAGE_URLS: bool(false),
  VISTYLE_HTTP_CORS_ORIGINS: corsOrigins,
  VISTYLE_MAX_IMAGES_PER_MESSAGE: int(1, 64, 4),
  VISTYLE_QUEUE_URL: z.url({ protocol: /^rediss?$/, error: 'expected a redis:// or rediss:// URL' }).optional(),
  VISTYLE_QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, { error: 'expected 1-32 characters A-Z, a-z, 0-9, _ or -' }).default('vistyle'),
  VISTYLE_WORKER_CONCURRENCY: optionalInt(1, 256),
  VISTYLE_QUEUE_STALLED_RETRIES: int(0, 10, 1),
  VISTYLE_QUEUE_LOCK_SECONDS: int(1, 3600, 30),
  VISTYLE_QUEUE_PICTURE_TTL_SECONDS: int(10, 7 * 86_400, 3600),
  VISTYLE_QUEUE_MAX_JOB_BYTES: int(1024, 1024 * MiB, 64 * MiB),
  VISTYLE_ADAPTERS_DIR: optionalText,
  VISTYLE_WORKER_NAME: z.string().regex(/^[\w.:@-]{1,64}$/, { error: 'expected 1-64 characters A-Z, a-z, 0-9, _ . : @ or -' }).optional(),
  VISTYLE_VIDEO_FRAMES: optionalInt(1, 64),
  VISTYLE_VIDEO_MAX_SECONDS: int(1, 3600, 120),
  VISTYLE_VIDEO_MAX_BYTES: int(1024, 2048 * MiB, 50 * MiB),
  VISTYLE_PREFIX_CACHE_MB: optionalInt(0, 1_000_000),
  VISTYLE_MAX_MEMORY_MB: optionalInt(64, 100_000_000),
});

/** The variables of the engine (what `vistyle ask` reads without the bot's). */
const ENGINE_VARIABLES = [
  'VISTYLE_PROVIDER',
  'VISTYLE_DEVICE_ID',
  'VISTYLE_THREADS',
  'VISTYLE_MAX_CONTEXT_TOKENS',
  'VISTYLE_ENGINE_SLOTS',
  'VISTYLE_PREFIX_CACHE_MB',
  'VISTYLE_MAX_MEMORY_MB',
  'VISTYLE_DEVICE_MEMORY_MB',
] as const;

export type EnvVars = z.input<typeof EnvSchema>;

/** Variables whose values are secrets: registered for redaction and never echoed in errors. */
export const SECRET_VARIABLES = ['TELEGRAM_BOT_TOKEN', 'DISCORD_TOKEN', 'TELEGRAM_WEBHOOK_SECRET', 'VISTYLE_API_KEYS'] as const;

function engineConfigOf(e: Pick<z.output<typeof EnvSchema>, (typeof ENGINE_VARIABLES)[number]>): EngineConfig {
  return {
    provider: e.VISTYLE_PROVIDER,
    deviceId: e.VISTYLE_DEVICE_ID,
    threads: e.VISTYLE_THREADS,
    ...(e.VISTYLE_MAX_CONTEXT_TOKENS === undefined ? {} : { maxContextTokens: e.VISTYLE_MAX_CONTEXT_TOKENS }),
    ...(e.VISTYLE_PREFIX_CACHE_MB === undefined ? {} : { prefixCacheBytes: e.VISTYLE_PREFIX_CACHE_MB * MiB }),
    ...(e.VISTYLE_MAX_MEMORY_MB === undefined ? {} : { maxMemoryBytes: e.VISTYLE_MAX_MEMORY_MB * MiB }),
    ...(e.VISTYLE_DEVICE_MEMORY_MB === undefined ? {} : { deviceMemoryMB: e.VISTYLE_DEVICE_MEMORY_MB }),
  };
}

/**
 * The engine's settings alone, with the same rules as loadConfig (for commands that run an engine
 * without the bot: `vistyle ask`). `slots` is VISTYLE_ENGINE_SLOTS when set.
 */
export function loadEngineConfig(env: NodeJS.ProcessEnv = process.env): EngineConfig & { slots?: number } {
  const schema = EnvSchema.pick(Object.fromEntries(ENGINE_VARIABLES.map((name) => [name, true])) as { [K in (typeof ENGINE_VARIABLES)[number]]: true });
  const e = parseVariables(schema, env);
  return { ...engineConfigOf(e), ...(e.VISTYLE_ENGINE_SLOTS === undefined ? {} : { slots: e.VISTYLE_ENGINE_SLOTS }) };
}

const MEDIA_VARIABLES = ['VISTYLE_PROVIDER', 'VISTYLE_MAX_IMAGES_PER_MESSAGE', 'VISTYLE_VIDEO_FRAMES', 'VISTYLE_VIDEO_MAX_SECONDS', 'VISTYLE_VIDEO_MAX_BYTES'] as const;

function mediaConfigOf(e: Pick<z.output<typeof EnvSchema>, (typeof MEDIA_VARIABLES)[number]>): MediaConfig {
  return {
    maxImagesPerMessage: e.VISTYLE_MAX_IMAGES_PER_MESSAGE,
    // fewer frames where every picture costs a CPU vision pass
    videoFrames: e.VISTYLE_VIDEO_FRAMES ?? (e.VISTYLE_PROVIDER === 'cpu' ? 4 : 8),
    videoMaxSeconds: e.VISTYLE_VIDEO_MAX_SECONDS,
    videoMaxBytes: e.VISTYLE_VIDEO_MAX_BYTES,
  };
}

/** The media settings alone (for `vistyle ask`, which runs no bot), by the same rules as loadConfig. */
export function loadMediaConfig(env: NodeJS.ProcessEnv = process.env): MediaConfig {
  const schema = EnvSchema.pick(Object.fromEntries(MEDIA_VARIABLES.map((name) => [name, true])) as { [K in (typeof MEDIA_VARIABLES)[number]]: true });
  return mediaConfigOf(parseVariables(schema, env));
}

function parseVariables<S extends z.ZodObject>(schema: S, env: NodeJS.ProcessEnv): z.output<S> {
  const known = Object.keys(schema.shape);
  const input: Record<string, string> = {};
  for (const name of known) {
    const value = env[name];
    if (value !== undefined && value.trim() !== '') input[name] = value.trim();
  }
  for (const name of SECRET_VARIABLES) registerSecret(input[name]);
  registerQueueUrlSecrets(input.VISTYLE_QUEUE_URL);

  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0] ?? '?');
      const secret = (SECRET_VARIABLES as readonly string[]).includes(name) || name === 'VISTYLE_QUEUE_URL';
      const shown = secret || input[name] === undefined ? '' : ` (got "${input[name]}")`;
      return `${name}: ${issue.message}${shown}`;
    });
    const error = new VistyleError('CONFIG_INVALID', `invalid configuration: ${problems.join('; ')}`, {
      details: { variables: parsed.error.issues.map((issue) => String(issue.path[0])) },
    });
    throw explainConfiguredValues(error, env);
  }
  return parsed.data;
}

/** The engine's options from the configuration (`vistyle start` and `vistyle worker` alike). */
export function engineOptionsOf(config: AppConfig): EngineOptions {
  const { dir, provider, deviceId, threads, maxContextTokens, prefixCacheBytes, maxMemoryBytes } = config.model;
  return {
    modelDir: dir,
    provider,
    deviceId,
    threads,
    maxImageBytes: config.limits.maxImageBytes,
    ...(maxContextTokens === undefined ? {} : { maxContextTokens }),
    ...(config.limits.engineSlots === undefined ? {} : { slots: config.limits.engineSlots }),
    ...(prefixCacheBytes === undefined ? {} : { prefixCacheBytes }),
    ...(maxMemoryBytes === undefined ? {} : { maxMemoryBytes }),
    ...(config.model.deviceMemoryMB ? { deviceMemoryMB: config.model.deviceMemoryMB } : {}),
  };
}

/** Reads and validates the configuration. Throws VistyleError('CONFIG_INVALID') naming the variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const e = parseVariables(EnvSchema, env);

  if (e.TELEGRAM_WEBHOOK_URL && !e.TELEGRAM_WEBHOOK_SECRET) {
    throw explainConfiguredValues(invalid('TELEGRAM_WEBHOOK_SECRET', 'is required with TELEGRAM_WEBHOOK_URL (Telegram signs each update with it)'), env);
  }
  if (e.DISCORD_TOKEN && !e.DISCORD_APPLICATION_ID) {
    throw explainConfiguredValues(invalid('DISCORD_APPLICATION_ID', 'is required with DISCORD_TOKEN (the application id from the Discord developer portal)'), env);
  }

  const home = e.VISTYLE_HOME ?? vistyleHome();
  const config: AppConfig = {
    model: { dir: resolveModelDir(e.VISTYLE_MODEL_DIR), ...engineConfigOf(e) },
    home,
    dbPath: e.VISTYLE_DB_PATH ?? join(home, 'vistyle.db'),
    stylesFile: e.VISTYLE_STYLES_FILE ?? null,
    limits: {
      ...(e.VISTYLE_ENGINE_SLOTS === undefined ? {} : { engineSlots: e.VISTYLE_ENGINE_SLOTS }),
      userInFlight: e.VISTYLE_USER_IN_FLIGHT,
      userPerMinute: e.VISTYLE_USER_PER_MINUTE,
      maxQueueLength: e.VISTYLE_MAX_QUEUE,
      requestTimeoutMs: e.VISTYLE_REQUEST_TIMEOUT_SECONDS * 1000,
      maxImageBytes: e.VISTYLE_MAX_IMAGE_BYTES,
      maxQuestionChars: e.VISTYLE_MAX_QUESTION_CHARS,
      historyTurns: e.VISTYLE_HISTORY_TURNS,
      conversationTtlMs: e.VISTYLE_CONVERSATION_TTL_HOURS * 3600_000,
      shutdownDrainMs: e.VISTYLE_SHUTDOWN_DRAIN_SECONDS * 1000,
    },
    access: {
      allowedUsers: e.VISTYLE_ALLOWED_USERS,
      allowedChats: e.VISTYLE_ALLOWED_CHATS,
      allowedGuilds: e.VISTYLE_ALLOWED_GUILDS,
      adminIds: e.VISTYLE_ADMIN_IDS,
    },
    defaultLanguage: e.VISTYLE_DEFAULT_LANGUAGE,
    logLevel: e.VISTYLE_LOG_LEVEL,
    ...(e.VISTYLE_LOG_FORMAT ? { logFormat: e.VISTYLE_LOG_FORMAT } : {}),
    logFile: e.VISTYLE_LOG_FILE ?? null,
    http: {
      ...(e.VISTYLE_HTTP_PORT === undefined ? {} : { port: e.VISTYLE_HTTP_PORT }),
      host: e.VISTYLE_HTTP_HOST,
      apiKeys: e.VISTYLE_API_KEYS ?? null,
      apiKeysFile: e.VISTYLE_API_KEYS_FILE ?? null,
      allowPrivateImageUrls: e.VISTYLE_ALLOW_PRIVATE_IMAGE_URLS,
      maxImagesPerMessage: e.VISTYLE_MAX_IMAGES_PER_MESSAGE,
      corsOrigins: e.VISTYLE_HTTP_CORS_ORIGINS,
    },
    media: mediaConfigOf(e),
  };
  if (e.TELEGRAM_BOT_TOKEN) {
    config.telegram = {
      token: e.TELEGRAM_BOT_TOKEN,
      ...(e.TELEGRAM_API_ROOT ? { apiRoot: e.TELEGRAM_API_ROOT } : {}),
      ...(e.TELEGRAM_WEBHOOK_URL && e.TELEGRAM_WEBHOOK_SECRET
        ? {
            webhook: {
              url: e.TELEGRAM_WEBHOOK_URL,
              secretToken: e.TELEGRAM_WEBHOOK_SECRET,
              port: e.TELEGRAM_WEBHOOK_PORT,
              host: e.TELEGRAM_WEBHOOK_HOST,
            },
          }
        : {}),
    };
  }
  if (e.DISCORD_TOKEN && e.DISCORD_APPLICATION_ID) {
    config.discord = {
      token: e.DISCORD_TOKEN,
      applicationId: e.DISCORD_APPLICATION_ID,
      mentionMode: e.DISCORD_MENTION_MODE,
      ...(e.DISCORD_GUILD_ID ? { guildId: e.DISCORD_GUILD_ID } : {}),
      ...(e.DISCORD_API_ROOT ? { apiRoot: e.DISCORD_API_ROOT } : {}),
      ...(e.DISCORD_GATEWAY_URL ? { gatewayUrl: e.DISCORD_GATEWAY_URL } : {}),
    };
  }
  if (e.VISTYLE_METRICS_PORT !== undefined) config.metrics = { port: e.VISTYLE_METRICS_PORT, host: e.VISTYLE_METRICS_HOST };
  if (e.VISTYLE_QUEUE_URL) {
    config.queue = {
      url: e.VISTYLE_QUEUE_URL,
      prefix: e.VISTYLE_QUEUE_PREFIX,
      stalledRetries: e.VISTYLE_QUEUE_STALLED_RETRIES,
      lockMs: e.VISTYLE_QUEUE_LOCK_SECONDS * 1000,
      pictureTtlMs: e.VISTYLE_QUEUE_PICTURE_TTL_SECONDS * 1000,
      maxJobBytes: e.VISTYLE_QUEUE_MAX_JOB_BYTES,
      adaptersDir: e.VISTYLE_ADAPTERS_DIR ?? join(home, 'adapters'),
      ...(e.VISTYLE_WORKER_CONCURRENCY === undefined ? {} : { workerConcurrency: e.VISTYLE_WORKER_CONCURRENCY }),
      ...(e.VISTYLE_WORKER_NAME ? { workerName: e.VISTYLE_WORKER_NAME } : {}),
    };
  }
  return config;
}

/** The password (and user) of a Redis URL are secrets: redacted from every log line and error. */
function registerQueueUrlSecrets(url: string | undefined): void {
  if (!url) return;
  try {
    const parsed = new URL(url);
    if (parsed.password) {
      registerSecret(parsed.password);
      registerSecret(decodeURIComponent(parsed.password));
    }
  } catch {
    // not a URL: validation names the variable without echoing it
  }
}

function invalid(variable: string, message: string): VistyleError {
  return new VistyleError('CONFIG_INVALID', `invalid configuration: ${variable} ${message}`, { details: { variables: [variable] } });
}

/** Whether an id list entry (`123` or `telegram:123`) matches this platform id. */
export function idListMatches(list: readonly string[], platform: string, id: string | undefined): boolean {
  if (id === undefined) return false;
  return list.some((entry) => entry === id || entry === `${platform}:${id}`);
}

/** Every variable the configuration reads (for `vistyle doctor`'s check for misspelt names). */
export function configVariableNames(): string[] {
  return Object.keys(EnvSchema.shape);
}
