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
