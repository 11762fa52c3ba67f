// Are the platform tokens valid? Telegram: getMe. Discord: GET /applications/@me with the bot
// token, whose id must be DISCORD_APPLICATION_ID. Each asks once, with a time-out; a platform that
// cannot be reached is reported, not failed (the token may well be good). `vistyle start` runs the
// same checks before it loads the model (platformTokenProblems), so a bad token costs no load.
import type { AppConfig } from '../../config/config.js';
import { originNote } from '../../config/provenance.js';
import { result, type CheckResult } from '../types.js';

export const TELEGRAM_API_ROOT = 'https://api.telegram.org';
export const DISCORD_API_ROOT = 'https://discord.com/api';

/** DISCORD_API_ROOT with or without its /vN, as adapters/discord/client.ts reads it (without discord.js). */
function discordApiBase(apiRoot: string): string {
  return apiRoot.replace(/\/+$/, '').replace(/\/v\d+$/, '');
}

/** The answer of one platform check: the token works, is refused, or the platform is unreachable. */
export type TokenVerdict =
  | { kind: 'valid'; who: string }
  | { kind: 'rejected'; message: string }
  | { kind: 'unreachable'; message: string };

async function getJson(url: string, init: RequestInit, timeoutMs: number): Promise<{ status: number; body: unknown } | { error: string }> {
  try {
    const response = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    let body: unknown = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    return { status: response.status, body };
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    const name = (error as Error).name;
    return { error: name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000} s` : (cause?.code ?? cause?.message ?? (error as Error).message) };
  }
}

/** Telegram's getMe with the configured token. */
export async function verifyTelegram(telegram: NonNullable<AppConfig['telegram']>, timeoutMs: number): Promise<TokenVerdict> {
  const root = (telegram.apiRoot ?? TELEGRAM_API_ROOT).replace(/\/+$/, '');
  const host = new URL(root).host;
  const answer = await getJson(`${root}/bot${telegram.token}/getMe`, {}, timeoutMs);
  if ('error' in answer) return { kind: 'unreachable', message: `cannot reach the Telegram Bot API at ${host} (${answer.error}); the token was not checked` };
  const body = answer.body as { ok?: boolean; result?: { username?: string }; description?: string } | null;
  if (answer.status === 200 && body?.ok) return { kind: 'valid', who: `@${body.result?.username ?? '?'}` };
  if (answer.status === 401 || answer.status === 404) return { kind: 'rejected', message: 'Telegram rejected the bot token (check TELEGRAM_BOT_TOKEN)' };
  return { kind: 'unreachable', message: `the Telegram Bot API at ${host} answered HTTP ${answer.status}${body?.description ? ` (${body.description})` : ''}; the token was not checked` };
}

/** Discord's GET /applications/@me with the bot token; its id must be the configured one. */
export async function verifyDiscord(discord: NonNullable<AppConfig['discord']>, timeoutMs: number): Promise<TokenVerdict> {
  const root = discordApiBase(discord.apiRoot ?? DISCORD_API_ROOT);
  const host = new URL(root).host;
  const answer = await getJson(`${root}/v10/applications/@me`, { headers: { authorization: `Bot ${discord.token}` } }, timeoutMs);
  if ('error' in answer) return { kind: 'unreachable', message: `cannot reach Discord at ${host} (${answer.error}); the token was not checked` };
  if (answer.status === 401) return { kind: 'rejected', message: 'Discord rejected DISCORD_TOKEN (check the bot token in the Developer Portal)' };
  const body = answer.body as { id?: string; name?: string } | null;
  if (answer.status !== 200 || !body?.id) return { kind: 'unreachable', message: `Discord at ${host} answered HTTP ${answer.status}; the token was not checked` };
  if (body.id !== discord.applicationId) {
    return {
      kind: 'rejected',
      message: `DISCORD_TOKEN belongs to application ${body.id}, not to DISCORD_APPLICATION_ID ${discord.applicationId} (both come from the same application in the Developer Portal)`,
    };
  }
  return { kind: 'valid', who: `application "${body.name ?? body.id}"` };
}

function withOrigin(message: string, names: string[], env: NodeJS.ProcessEnv): string {
  const note = originNote(names, env);
  return note ? `${message} (${note})` : message;
}

/** One line per configured platform; a todo line when none is configured. */
export async function checkPlatforms(config: AppConfig, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  if (config.telegram) {
    const verdict = await verifyTelegram(config.telegram, timeoutMs);
    results.push(toResult('telegram', verdict, ['TELEGRAM_BOT_TOKEN'], env, 'a new token from @BotFather (/token), in TELEGRAM_BOT_TOKEN'));
  }
  if (config.discord) {
    const verdict = await verifyDiscord(config.discord, timeoutMs);
    results.push(toResult('discord', verdict, ['DISCORD_TOKEN', 'DISCORD_APPLICATION_ID'], env, 'the Developer Portal: Bot -> Reset Token, and General Information -> Application ID'));
  }
  if (results.length === 0) {
    results.push(
      result(
        'platform',
        'todo',
        'no chat platform token is set (`vistyle start` needs one; `vistyle ask` and `vistyle demo` do not)',
        'set TELEGRAM_BOT_TOKEN (from @BotFather), or DISCORD_TOKEN and DISCORD_APPLICATION_ID, in .env',
      ),
    );
  }
  return results;
}

function toResult(check: string, verdict: TokenVerdict, names: string[], env: NodeJS.ProcessEnv, fix: string): CheckResult {
  if (verdict.kind === 'valid') return result(check, 'ok', `the token works: ${verdict.who}`);
  if (verdict.kind === 'rejected') return result(check, 'fail', withOrigin(verdict.message, names, env), fix);
  return result(check, 'warn', verdict.message, 'check the network (a proxy, a firewall), or the API root setting');
}

/**
 * The token problems that make `vistyle start` pointless: the platform rejected a token. An
 * unreachable platform is left to the adapter (it says so, and the supervisor retries).
 */
export async function platformTokenProblems(config: AppConfig, timeoutMs: number): Promise<{ rejected: string[]; unreachable: string[] }> {
  const verdicts = await Promise.all([
    config.telegram ? verifyTelegram(config.telegram, timeoutMs) : null,
    config.discord ? verifyDiscord(config.discord, timeoutMs) : null,
  ]);
  const rejected: string[] = [];
  const unreachable: string[] = [];
  for (const verdict of verdicts) {
    if (verdict?.kind === 'rejected') rejected.push(verdict.message);
    if (verdict?.kind === 'unreachable') unreachable.push(verdict.message);
  }
  return { rejected, unreachable };
}
