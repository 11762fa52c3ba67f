// Reading telegraf's errors: Bot API answers (TelegramError: error_code, description, parameters)
// and transport failures (node-fetch FetchError, aborted requests). Log fields never carry the
// token: telegraf puts it in request URLs, so messages go through redactSecrets as well.
import { TelegramError } from 'telegraf';
import { redactSecrets } from '../../src/log.js';

export interface ApiErrorInfo {
  /** Bot API error_code, or 0 for a transport failure. */
  code: number;
  description: string;
  retryAfterMs?: number;
}

export function describeApiError(error: unknown): ApiErrorInfo {
  if (error instanceof TelegramError) {
    const info: ApiErrorInfo = { code: error.code, description: redactSecrets(error.description ?? error.message) };
    const retryAfter = error.parameters?.retry_after;
    if (error.code === 429) info.retryAfterMs = (retryAfter ?? 1) * 1000;
    return info;
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: 0, description: redactSecrets(message) };
}

export function isApiError(error: unknown, code: number, descriptionPattern?: RegExp): boolean {
  return (
    error instanceof TelegramError &&
    error.code === code &&
    (descriptionPattern === undefined || descriptionPattern.test(error.description ?? ''))
  );
}

/** Transport failures and 5xx answers: worth retrying after a pause. */
export function isTransient(error: unknown): boolean {
  if (error instanceof TelegramError) return error.code >= 500;
  if (error instanceof Error) {
    return error.name === 'FetchError' || /ECONNRESET|ECONNREFUSED|ETIMEDOUT|EPIPE|socket hang up|network/i.test(error.message);
  }
  return false;
}

/**
 * How long the edit lane should wait before retrying: a 429's retry_after, or a short pause for a
 * transient failure (Telegram's 5xx and dropped connections are usually overload); undefined for
 * errors a retry would not fix.
 */
export function retryAfterMs(error: unknown): number | undefined {
  const info = describeApiError(error);
  if (info.retryAfterMs !== undefined) return info.retryAfterMs;
  if (isTransient(error)) return 1000;
  return undefined;
}

/** Structured log fields for a failed call (no token, no payload). */
export function apiErrorFields(error: unknown, method: string, chatId?: number | string): Record<string, unknown> {
  const info = describeApiError(error);
  const fields: Record<string, unknown> = { method, errorCode: info.code, description: info.description };
  if (chatId !== undefined) fields.chatId = chatId;
  if (info.retryAfterMs !== undefined) fields.retryAfterMs = info.retryAfterMs;
  return fields;
}
