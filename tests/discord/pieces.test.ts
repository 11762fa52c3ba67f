// The Discord adapter's pure pieces: which rate limits the edit lane owns, log-safe errors, the
// mention stripper, the API root normaliser and the command definitions' limits.
import { DiscordAPIError, RateLimitError } from 'discord.js';
import { describe, expect, it } from 'vitest';
import { discordIntents, normalizeApiRoot } from '../../adapters/discord/client.js';
import { buildCommandDefinitions } from '../../adapters/discord/commands.js';
import { describeError, rateLimitHandledByLane, redactDiscordUrl, retryAfterMs } from '../../adapters/discord/errors.js';
import { stripMention } from '../../adapters/discord/index.js';

const limit = (method: string, route: string) => ({
  method,
  route,
  url: '',
  global: false,
  hash: '',
  limit: 5,
  majorParameter: '',
  retryAfter: 1000,
  sublimitTimeout: 0,
  timeToReset: 1000,
  scope: 'user' as const,
});

describe('discord adapter pieces', () => {
  it('hands message sends and edits to the edit lane, and nothing else', () => {
    expect(rateLimitHandledByLane(limit('PATCH', '/webhooks/:id/:token/messages/@original'))).toBe(true);
    expect(rateLimitHandledByLane(limit('POST', '/webhooks/:id/:token'))).toBe(true);
    expect(rateLimitHandledByLane(limit('POST', '/channels/:id/messages'))).toBe(true);
    expect(rateLimitHandledByLane(limit('PATCH', '/channels/:id/messages/:id'))).toBe(true);
    expect(rateLimitHandledByLane(limit('POST', '/interactions/:id/:token/callback'))).toBe(false);
    expect(rateLimitHandledByLane(limit('PUT', '/applications/:id/guilds/:id/commands'))).toBe(false);
    expect(rateLimitHandledByLane(limit('GET', '/channels/:id/messages/:id'))).toBe(false);
    expect(rateLimitHandledByLane(limit('DELETE', '/webhooks/:id/:token/messages/@original'))).toBe(false);
  });

  it('reads the wait from a rate-limit error and nothing from other errors', () => {
    expect(retryAfterMs(new RateLimitError({ ...limit('PATCH', '/x'), retryAfter: 2050 }))).toBe(2050);
    expect(retryAfterMs(new RateLimitError({ ...limit('PATCH', '/x'), retryAfter: 0, timeToReset: 700 }))).toBe(700);
    expect(retryAfterMs(new Error('boom'))).toBeUndefined();
  });

  it('keeps interaction tokens out of logged URLs and errors', () => {
    const token = 'aW50ZXJhY3Rpb246MTIzOnNlY3JldA';
    expect(redactDiscordUrl(`https://discord.com/api/v10/webhooks/123456789012345678/${token}/messages/@original`)).toBe(
      'https://discord.com/api/v10/webhooks/123456789012345678/[token]/messages/@original',
    );
    expect(redactDiscordUrl(`/interactions/123456789012345678/${token}/callback`)).toBe('/interactions/123456789012345678/[token]/callback');
    const error = new DiscordAPIError(
      { message: 'Unknown Message', code: 10008 },
      10008,
      404,
      'PATCH',
      `https://discord.com/api/v10/webhooks/123456789012345678/${token}/messages/@original`,
      { body: undefined, files: undefined },
    );
    const described = describeError(error);
    expect(described).toMatchObject({ type: 'DiscordAPIError', code: 10008, status: 404, method: 'PATCH' });
    expect(JSON.stringify(described)).not.toContain(token);
  });

  it('strips the bot mention (both forms) from a question', () => {
    expect(stripMention('<@42> what is this?', '42')).toBe('what is this?');
    expect(stripMention('hey <@!42>   look\n<@42>', '42')).toBe('hey look');
    expect(stripMention('<@43> not me', '42')).toBe('<@43> not me');
  });

  it('accepts an API root with or without the version', () => {
    expect(normalizeApiRoot('http://127.0.0.1:1/api/v10')).toBe('http://127.0.0.1:1/api');
    expect(normalizeApiRoot('http://127.0.0.1:1/api/')).toBe('http://127.0.0.1:1/api');
  });

  it('asks for MessageContent only in mention mode', () => {
    expect(discordIntents(false)).toHaveLength(1);
    expect(discordIntents(true)).toContain(1 << 15);
    expect(discordIntents(false)).not.toContain(1 << 15);
  });

  it('keeps command definitions inside Discord limits', () => {
    const styles = Array.from({ length: 30 }, (_, i) => ({ id: `s${i}`, names: { en: `Style ${i}`, zh: `风格${i}` } }));
    const many = buildCommandDefinitions({ styles, maxQuestionChars: 100_000 });
    const ask = many.find((c) => c.name === 'ask') as { options: { name: string; choices?: unknown[]; max_length?: number }[] };
    // More than 25 styles: free text instead of choices; question length capped at Discord's 6000.
    expect(ask.options.find((o) => o.name === 'style')!.choices).toBeUndefined();
    expect(ask.options.find((o) => o.name === 'question')!.max_length).toBe(6000);
    const few = buildCommandDefinitions({ styles: styles.slice(0, 3), maxQuestionChars: 500 });
    const askFew = few.find((c) => c.name === 'ask') as typeof ask;
    expect(askFew.options.find((o) => o.name === 'style')!.choices).toHaveLength(3);
    for (const command of few) {
      expect(command.name.length).toBeLessThanOrEqual(32);
      if ('description' in command && command.description) expect(command.description.length).toBeLessThanOrEqual(100);
    }
  });
});
