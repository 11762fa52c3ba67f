// Errors of the OpenAI-compatible API in OpenAI's shape and with its statuses:
//   { "error": { "message": "...", "type": "invalid_request_error", "param": "messages", "code": "..." } }
// 400 bad request (bad picture, empty question, too many pictures, a parameter out of range),
// 401 no or wrong key, 403 API off, 404 unknown model/style (also one the key may not use), 413 too
// large, 429 limited or queue full (Retry-After), 503 shutting down / model loading / engine
// restarting (Retry-After), 504 time-out. Messages never carry a key.
import { isVistyleError, type ErrorCode } from '../errors.js';
import { redactSecrets } from '../log.js';
import { LimitError } from '../scheduler/scheduler.js';

export type ApiErrorType = 'invalid_request_error' | 'authentication_error' | 'permission_error' | 'not_found_error' | 'requests' | 'server_error';

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType,
    readonly code: string | null = null,
    readonly param: string | null = null,
    /** Seconds, sent as Retry-After. */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  body(): { error: { message: string; type: string; param: string | null; code: string | null } } {
    return { error: { message: redactSecrets(this.message), type: this.type, param: this.param, code: this.code } };
  }
}

export const badRequest = (message: string, param: string | null = null, code: string | null = 'invalid_value') =>
  new ApiError(400, message, 'invalid_request_error', code, param);

export const modelNotFound = (model: string) =>
  new ApiError(404, `The model \`${model}\` does not exist or you do not have access to it.`, 'invalid_request_error', 'model_not_found', 'model');

const seconds = (ms: unknown, fallback: number) => Math.max(1, Math.ceil((typeof ms === 'number' && Number.isFinite(ms) ? ms : fallback * 1000) / 1000));

/** The API error for a failure of the bot core, the scheduler, the engine or a picture. */
export function apiErrorFrom(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof LimitError) {
    if (error.reason === 'queue-full') return new ApiError(429, `The queue is full (${String(error.details?.waiting ?? '?')} waiting). Try again later.`, 'requests', 'queue_full', null, 10);
    if (error.reason === 'shutting-down') return shuttingDown();
    return new ApiError(429, 'Rate limit reached for this caller. Try again later.', 'requests', 'rate_limit_exceeded', null, seconds(error.details?.retryAfterMs, 1));
  }
  if (!isVistyleError(error)) return internal();
  const message = error.message;
  const byCode: Partial<Record<ErrorCode, () => ApiError>> = {
    IMAGE_UNSUPPORTED: () => badRequest(`Invalid image: ${message}`, 'messages', 'invalid_image'),
    IMAGE_CORRUPT: () => badRequest(`Invalid image: ${message}`, 'messages', 'invalid_image'),
    IMAGE_TOO_LARGE: () => new ApiError(413, `Image too large: ${message}`, 'invalid_request_error', 'image_too_large', 'messages'),
    IMAGE_MISSING: () => badRequest(message, 'messages', 'image_missing'),
    QUESTION_EMPTY: () => badRequest(`Empty question: ${message}`, 'messages', 'question_empty'),
    PROMPT_TOO_LONG: () => {
      const { maxImages, imageCount } = error.details ?? {};
      // Pictures are most of a prompt (729 image tokens each on the real model): say how many fit.
      if (typeof maxImages === 'number' && typeof imageCount === 'number' && imageCount > maxImages) {
        return new ApiError(400, `Too many pictures for the model's context: the conversation has ${imageCount}; at most ${maxImages} fit with this text.`, 'invalid_request_error', 'too_many_images', 'messages');
      }
      return badRequest(`The conversation is too long for the model's context: ${message}`, 'messages', 'context_length_exceeded');
    },
    NETWORK: () => badRequest(`Could not fetch the image: ${message}`, 'messages', 'image_download_failed'),
    STYLE_UNKNOWN: () => modelNotFound(String(error.details?.style ?? '')),
    RATE_LIMITED: () => new ApiError(429, 'Rate limit reached for this caller. Try again later.', 'requests', 'rate_limit_exceeded', null, seconds(error.details?.retryAfterMs, 1)),
    QUEUE_FULL: () => new ApiError(429, 'The queue is full. Try again later.', 'requests', 'queue_full', null, 10),
    SHUTTING_DOWN: shuttingDown,
    ENGINE_CRASHED: () => new ApiError(503, 'The model crashed while answering and is restarting. Try again shortly.', 'server_error', 'engine_restarting', null, 5),
    ENGINE_BUSY: () => new ApiError(503, 'The model is busy. Try again shortly.', 'server_error', 'engine_busy', null, 5),
    TIMEOUT: () => new ApiError(504, 'The answer took too long and was stopped.', 'server_error', 'timeout'),
    CANCELLED: () => new ApiError(499, 'The request was cancelled.', 'invalid_request_error', 'cancelled'),
    NOT_ALLOWED: () => new ApiError(403, 'Not allowed.', 'permission_error', 'not_allowed'),
  };
  return byCode[error.code]?.() ?? internal();
}

export function shuttingDown(): ApiError {
  return new ApiError(503, 'vistyle is shutting down and takes no new requests. Try again in a minute.', 'server_error', 'shutting_down', null, 30);
}

function internal(): ApiError {
  return new ApiError(500, 'Something went wrong on the server. Please try again.', 'server_error', 'internal_error');
}
