// Typed errors shared by every layer. A VistyleError carries a stable `code` that the bot maps to a
// polite, localised message for the user, and that the CLI prints as one line. Errors cross the
// engine worker boundary as plain objects (see toSerializedError / fromSerializedError).

export type ErrorCode =
  // input from users
  | 'IMAGE_UNSUPPORTED' // not an image, or a format sharp cannot decode
  | 'IMAGE_CORRUPT' // truncated or damaged image data
  | 'IMAGE_TOO_LARGE' // over the pixel or byte limit (checked before decoding)
  | 'QUESTION_EMPTY'
  | 'IMAGE_MISSING' // a question with no picture and no conversation to continue
  | 'PROMPT_TOO_LONG' // conversation does not fit in the model's context
  // model files and build
  | 'CHECKPOINT_INVALID' // missing/invalid file, field or tensor in a HF checkpoint
  | 'MODEL_NOT_FOUND' // no built model where one was expected
  | 'MODEL_INVALID' // a built model folder that is damaged or from another version
  | 'ADAPTER_INVALID' // a LoRA adapter that does not fit the model
  | 'PROVIDER_UNAVAILABLE' // execution provider (CUDA...) missing
  // runtime
  | 'ENGINE_CRASHED'
  | 'ENGINE_BUSY'
  | 'CANCELLED'
  | 'TIMEOUT'
  | 'RATE_LIMITED'
  | 'QUEUE_FULL'
  | 'NOT_ALLOWED'
  | 'SHUTTING_DOWN' // the bot is stopping and takes no new requests
  | 'NETWORK'
  | 'CONFIG_INVALID'
  | 'STYLE_UNKNOWN'
  | 'STYLES_INVALID'
  | 'DATA_INVALID'
  // the bot's database
  | 'STORE_CORRUPT' // damaged, or written by a newer vistyle: refused at open, never recreated
  | 'STORE_UNAVAILABLE' // cannot be opened, or a write refused (disk full, read-only, I/O error)
  | 'INTERNAL';

export class VistyleError extends Error {
  readonly code: ErrorCode;
  /** Machine-readable details for logs (never secrets). */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; details?: Record<string, unknown> }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'VistyleError';
    this.code = code;
    this.details = options?.details;
  }
}

export function isVistyleError(error: unknown, code?: ErrorCode): error is VistyleError {
  return error instanceof VistyleError && (code === undefined || error.code === code);
}

export interface SerializedError {
  code: ErrorCode;
  message: string;
  details?: Record<string, unknown>;
  stack?: string;
}

export function toSerializedError(error: unknown): SerializedError {
  if (error instanceof VistyleError) {
    return { code: error.code, message: error.message, details: error.details, stack: error.stack };
  }
  if (error instanceof Error) return { code: 'INTERNAL', message: error.message, stack: error.stack };
  return { code: 'INTERNAL', message: String(error) };
}

export function fromSerializedError(serialized: SerializedError): VistyleError {
  const error = new VistyleError(serialized.code, serialized.message, { details: serialized.details });
  if (serialized.stack) error.stack = serialized.stack;
  return error;
}

/**
 * Exit statuses of the long-running commands (`vistyle start`), so that a supervisor can tell a
 * start-up that will never work from one worth retrying. Numbers from BSD's sysexits.h where one
 * fits. deploy/vistyle.service lists the "do not retry" ones in RestartPreventExitStatus;
 * docs/deploy.md has the table. Other commands exit 1 on any error.
 */
export const EXIT = {
  /** Stopped by a signal and drained, or done. */
  OK: 0,
  /** Unexpected failure, or an uncaught exception at run time: worth a restart. */
  FAILURE: 1,
  /** The database is damaged or from a newer vistyle (EX_DATAERR): a person must look. */
  STORE_CORRUPT: 65,
  /** The model folder is missing, incomplete or from another version (EX_NOINPUT). */
  MODEL_MISSING: 66,
  /** A chat platform could not be reached at start (EX_UNAVAILABLE): worth retrying. */
  PLATFORM_UNREACHABLE: 69,
  /** The database cannot be opened for writing: permissions, read-only file system (EX_CANTCREAT). */
  STORE_UNWRITABLE: 73,
  /** The database's disk is full or failing at start (EX_IOERR): worth retrying. */
  STORE_IO: 74,
  /** Configuration: a bad variable, no platform token, a token the platform rejects, the styles
   *  file, an execution provider this machine lacks (EX_CONFIG). */
  CONFIG: 78,
  /** A second SIGINT/SIGTERM while draining: stopped at once (128 + SIGINT, as shells report). */
  FORCED: 130,
} as const;

/** The statuses a supervisor should not retry (the same start-up would fail the same way). */
export const EXIT_DO_NOT_RETRY: readonly number[] = [EXIT.STORE_CORRUPT, EXIT.MODEL_MISSING, EXIT.STORE_UNWRITABLE, EXIT.CONFIG];

/** The exit status of a service command that failed to start with `error`. */
export function startupExitStatus(error: unknown): number {
  if (!(error instanceof VistyleError)) return EXIT.FAILURE;
  switch (error.code) {
    case 'CONFIG_INVALID':
    case 'STYLES_INVALID':
    case 'STYLE_UNKNOWN':
    case 'PROVIDER_UNAVAILABLE':
    case 'ADAPTER_INVALID':
      return EXIT.CONFIG;
    case 'MODEL_NOT_FOUND':
    case 'MODEL_INVALID':
    case 'CHECKPOINT_INVALID':
      return EXIT.MODEL_MISSING;
    case 'NETWORK':
      return EXIT.PLATFORM_UNREACHABLE;
    case 'STORE_CORRUPT':
      return EXIT.STORE_CORRUPT;
    case 'STORE_UNAVAILABLE':
      return error.details?.transient === true ? EXIT.STORE_IO : EXIT.STORE_UNWRITABLE;
    default:
      return EXIT.FAILURE;
  }
}

const exitStatusKey = Symbol('vistyle.exitStatus');

/** Marks `error` to end the CLI with `status` instead of 1 (see runCli). Returns the error. */
export function withExitStatus<E>(error: E, status: number): E {
  if (error !== null && typeof error === 'object') (error as Record<symbol, unknown>)[exitStatusKey] = status;
  return error;
}

/** The status an error was marked with, else 1. */
export function exitStatusOf(error: unknown): number {
  const status = error !== null && typeof error === 'object' ? (error as Record<symbol, unknown>)[exitStatusKey] : undefined;
  return typeof status === 'number' ? status : EXIT.FAILURE;
}
