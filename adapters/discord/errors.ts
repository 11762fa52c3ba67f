// How the adapter reads discord.js errors: rate limits (which the per-channel edit lane waits out),
// dead interaction tokens (the answer moves to a channel message), and a log-safe description of
// any error (interaction tokens sit in webhook URLs and must not reach the logs).
import { DiscordAPIError, HTTPError, RateLimitError, type RateLimitData } from 'discord.js';
import { redactSecrets } from '../../src/log.js';

/** Discord JSON error codes the adapter reacts to. */
export const DiscordErrorCode = {
  UnknownChannel: 10003,
  UnknownMessage: 10008,
  UnknownWebhook: 10015,
  UnknownInteraction: 10062,
  InvalidWebhookToken: 50027,
  MissingAccess: 50001,
  MissingPermissions: 50013,
} as const;

/**
 * Which rate limits discord.js hands back to us instead of sleeping on them: message sends and
 * edits, both through the bot (`/channels/:id/messages`) and through interaction webhooks. Those
 * all go through the per-channel EditScheduler, which then waits `retry_after`, widens its gap and
 * drops superseded streamed text. Everything else (command registration, the interaction callback)
 * keeps discord.js's own queue. One layer waits per request, so the two never stack their waits.
 */
export function rateLimitHandledByLane(data: RateLimitData): boolean {
  const method = data.method.toUpperCase();
  if (method !== 'POST' && method !== 'PATCH') return false;
  return /^\/(?:webhooks\/:id\/:token|channels\/:id\/messages)/.test(data.route);
}

/** For EditScheduler: the wait a rate limit asks for, in ms; undefined for other errors. */
export function retryAfterMs(error: unknown): number | undefined {
  if (error instanceof RateLimitError) {
    const wait = error.retryAfter > 0 ? error.retryAfter : error.timeToReset;
    return Math.max(0, Number.isFinite(wait) ? wait : 1000);
  }
  if (error instanceof DiscordAPIError && error.status === 429) return 1000;
  return undefined;
}

/** The interaction token can no longer be used (expired or unknown): fall back to the channel. */
export function isDeadInteractionToken(error: unknown): boolean {
  return (
    error instanceof DiscordAPIError &&
    (error.code === DiscordErrorCode.InvalidWebhookToken ||
      error.code === DiscordErrorCode.UnknownWebhook ||
      error.code === DiscordErrorCode.UnknownInteraction)
  );
}

/** The message to edit no longer exists (the user or a moderator deleted it). */
export function isUnknownMessage(error: unknown): boolean {
  return error instanceof DiscordAPIError && error.code === DiscordErrorCode.UnknownMessage;
}

/** Replace interaction tokens in webhook / callback paths. */
export function redactDiscordUrl(url: string): string {
  return redactSecrets(
    url
      .replace(/(\/webhooks\/\d+\/)[^/?]+/g, '$1[token]')
      .replace(/(\/interactions\/\d+\/)[^/?]+/g, '$1[token]'),
  );
}

/** A structured, secret-free description of an error for a log line. */
export function describeError(error: unknown): Record<string, unknown> {
  if (error instanceof DiscordAPIError) {
    return {
      type: 'DiscordAPIError',
      code: error.code,
      status: error.status,
      method: error.method,
      url: redactDiscordUrl(error.url),
      message: redactSecrets(error.message),
    };
  }
  if (error instanceof RateLimitError) {
    return {
      type: 'RateLimitError',
      method: error.method,
      route: error.route,
      retryAfterMs: error.retryAfter,
      global: error.global,
      scope: error.scope,
    };
  }
  if (error instanceof HTTPError) {
    return { type: 'HTTPError', status: error.status, method: error.method, url: redactDiscordUrl(error.url) };
  }
  if (error instanceof Error) {
    return { type: error.name, message: redactDiscordUrl(error.message), code: (error as { code?: unknown }).code };
  }
  return { type: typeof error, message: redactSecrets(String(error)) };
}
