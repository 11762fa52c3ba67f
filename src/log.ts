// Structured logging (pino). Every module takes a child logger with its own `module` field.
// Secrets are redacted by key name and by value: anything registered with registerSecret() is
// replaced wherever it appears in a logged string.
import { pino, type Logger } from 'pino';

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

export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? process.env.VISTYLE_LOG_LEVEL ?? 'info',
      base: { app: 'vistyle' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      hooks: {
        streamWrite: (line: string) => (secrets.size > 0 ? redactSecrets(line) : line),
      },
    },
    (options.destination ?? process.stderr) as pino.DestinationStream,
  );
}

let root: Logger | undefined;

/** The process-wide logger (stderr, JSON lines). */
export function rootLogger(): Logger {
  root ??= createLogger();
  return root;
}

export function setRootLogger(logger: Logger): void {
  root = logger;
}

export function moduleLogger(module: string): Logger {
  return rootLogger().child({ module });
}

export type { Logger };
