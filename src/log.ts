// Structured logging (pino). Every module takes a child logger with its own `module` field.
// Secrets are redacted by key name and by value: anything registered with registerSecret() is
// replaced wherever it appears in a logged string.
import { BroadcastChannel, isMainThread } from 'node:worker_threads';
import { pino, type Logger } from 'pino';
import { prettyLine } from './log-pretty.js';
import { LogSink, type LogFormat, type LogSinkStats } from './log-sink.js';

const secrets = new Set<string>();

/** Register a secret value (bot token, API key) so that it never appears in log output. */
export function registerSecret(value: string | undefined): void {
  if (value && value.length >= 6) secrets.add(value);
}

/** Replace every registered secret in a string. Used for logs and for error messages. */
export function redactSecrets(text: string): string {
  let out = text;
  for (const secret of secrets) {
    if (out.includes(secret)) out = out.split(secret).join('[redacted]');
  }
  return out;
}

/**
 * Log-safe fields of an error: its name, code and secret-redacted message. Raw errors are not
 * logged where credentials may ride along (HTTP client errors carry request URLs and headers).
 */
export function errorFields(error: unknown, options: { stack?: boolean } = {}): Record<string, unknown> {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return {
      type: error.name,
      ...(typeof code === 'string' || typeof code === 'number' ? { code } : {}),
      message: redactSecrets(error.message),
      ...(options.stack && error.stack ? { stack: redactSecrets(error.stack) } : {}),
    };
  }
  return { type: typeof error, message: redactSecrets(String(error)) };
}

const REDACT_PATHS = [
  'token',
  '*.token',
  'apiKey',
  '*.apiKey',
  'authorization',
  '*.authorization',
  'headers.authorization',
  '*.headers.authorization',
];

export interface CreateLoggerOptions {
  level?: string;
  /** Where lines go (default: stderr; in a worker thread, the main thread's log output). */
  destination?: NodeJS.WritableStream;
  /** `json` or `pretty` (default VISTYLE_LOG_FORMAT, else pretty on a terminal, JSON otherwise). */
  format?: LogFormat;
  /** Where lines go once the destination fails for good (default VISTYLE_LOG_FILE). */
  file?: string | null;
}

/** The BroadcastChannel that carries worker threads' log lines to the main thread's log output. */
const WORKER_LOG_CHANNEL = 'vistyle:log';

/** The root logger's sink: where worker lines go, and whose counters the metrics show. */
let rootSink: LogSink | undefined;

/** What has become of the log output: lines dropped (for the metrics), and where lines go now. */
export function logStats(): LogSinkStats {
  return rootSink?.stats() ?? { lines: 0, dropped: 0, state: 'primary' };
}

function envFormat(): LogFormat | undefined {
  const raw = process.env.VISTYLE_LOG_FORMAT?.trim().toLowerCase();
  return raw === 'json' || raw === 'pretty' ? raw : undefined;
}

/** The sink a logger writes through; in a worker thread with no destination, the main thread's. */
function sinkFor(options: CreateLoggerOptions): LogSink | { write(line: string): boolean } {
  if (!options.destination && !isMainThread) {
    const channel = new BroadcastChannel(WORKER_LOG_CHANNEL);
    channel.unref();
    return { write: (line: string) => (channel.postMessage(line), true) };
  }
  const target = options.destination ?? process.stderr;
  const isTty = (target as { isTTY?: boolean }).isTTY === true;
  const format = options.format ?? envFormat() ?? (isTty ? 'pretty' : 'json');
  const color = isTty && !process.env.NO_COLOR;
  const config = {
    format,
    pretty: (line: string) => prettyLine(line, { color }),
    file: options.file === undefined ? process.env.VISTYLE_LOG_FILE?.trim() || null : options.file,
    ...(options.format || envFormat() ? { fileFormat: format } : {}),
  };
  // One sink for stderr in the whole process, whichever logger writes to it: its failure is
  // detected once and remembered (module loggers made before `start` configured logging share it).
  if (target === process.stderr) {
    stderrSink ??= new LogSink({ target, ...config });
    stderrSink.configure(config);
    return stderrSink;
  }
  return new LogSink({ target, ...config });
}

let stderrSink: LogSink | undefined;

export function createLogger(options: CreateLoggerOptions = {}): Logger {
  const sink = sinkFor(options);
  const logger = pino(
    {
      level: options.level ?? process.env.VISTYLE_LOG_LEVEL ?? 'info',
      base: { app: 'vistyle' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      hooks: {
        streamWrite: (line: string) => (secrets.size > 0 ? redactSecrets(line) : line),
      },
    },
    sink as unknown as pino.DestinationStream,
  );
  if (sink instanceof LogSink) sinks.set(logger, sink);
  return logger;
}

const sinks = new WeakMap<Logger, LogSink>();
let root: Logger | undefined;

/** The process-wide logger (stderr; JSON lines unless pretty, see createLogger). */
export function rootLogger(): Logger {
  if (!root) setRootLogger(createLogger());
  return root!;
}

export function setRootLogger(logger: Logger): void {
  root = logger;
  rootSink = sinks.get(logger);
}

// The main thread writes its worker threads' lines (the engine's) through its own sink, so they
// get the same format, fallback and secret redaction as its own (secrets are registered here).
if (isMainThread) {
  const channel = new BroadcastChannel(WORKER_LOG_CHANNEL);
  channel.unref();
  channel.onmessage = (event) => {
    const line = (event as MessageEvent).data;
    if (typeof line === 'string') (rootSink ?? sinks.get(rootLogger()))?.write(secrets.size > 0 ? redactSecrets(line) : line);
  };
}

/**
 * Keeps a dead stdout from becoming an uncaught exception (a library's console.log after the
 * reader went away): its errors are noted and otherwise ignored. stderr is watched by the log sink.
 */
export function guardStdout(): void {
  if (process.stdout.listenerCount('error') === 0) process.stdout.on('error', () => undefined);
}

export function moduleLogger(module: string): Logger {
  return rootLogger().child({ module });
}

export type { Logger, LogFormat, LogSinkStats };
