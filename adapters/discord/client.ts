// Builds the discord.js client: minimal gateway intents, the REST root and gateway URL overrides
// (local proxies, tests), no mention pings by default, and rate limits on message sends/edits
// handed to the adapter's edit lanes (see errors.ts).
import { Client, GatewayIntentBits, Partials, Routes, type RESTOptions } from 'discord.js';
import { rateLimitHandledByLane } from './errors.js';

export interface DiscordClientOptions {
  /** REST root without the version, like `https://discord.com/api` (a trailing `/v10` is accepted). */
  apiRoot?: string;
  /** Gateway WebSocket URL; default: what GET /gateway/bot reports. */
  gatewayUrl?: string;
  mentionMode: boolean;
}

/**
 * Guilds is enough for slash commands, the context menu and buttons. Mention mode reads channel
 * and DM messages: GuildMessages + DirectMessages, and MessageContent (privileged) because a reply
 * to the bot's answer with the reply ping turned off does not mention the bot, and without the
 * intent its text would arrive empty.
 */
export function discordIntents(mentionMode: boolean): GatewayIntentBits[] {
  const intents = [GatewayIntentBits.Guilds];
  if (mentionMode) {
    intents.push(GatewayIntentBits.GuildMessages, GatewayIntentBits.DirectMessages, GatewayIntentBits.MessageContent);
  }
  return intents;
}

export function normalizeApiRoot(apiRoot: string): string {
  return apiRoot.replace(/\/+$/, '').replace(/\/v\d+$/, '');
}

export function createDiscordClient(options: DiscordClientOptions): Client {
  const rest: Partial<RESTOptions> = { rejectOnRateLimit: rateLimitHandledByLane };
  if (options.apiRoot) rest.api = normalizeApiRoot(options.apiRoot);
  const client = new Client({
    intents: discordIntents(options.mentionMode),
    // DM channels and deleted messages arrive uncached.
    partials: [Partials.Channel, Partials.Message],
    // Model output could contain @everyone or role mentions: never ping anyone unless asked.
    allowedMentions: { parse: [], repliedUser: false },
    rest,
  });
  if (options.gatewayUrl) overrideGatewayUrl(client, options.gatewayUrl);
  return client;
}

/**
 * discord.js connects to the URL that GET /gateway/bot returns; there is no option for it. Wrap
 * that one REST read so the configured URL wins (everything else the response says is kept).
 */
function overrideGatewayUrl(client: Client, gatewayUrl: string): void {
  const rest = client.rest;
  const get = rest.get.bind(rest);
  rest.get = async (route, requestOptions) => {
    const data = await get(route, requestOptions);
    if (route === Routes.gatewayBot() && data && typeof data === 'object') return { ...data, url: gatewayUrl };
    return data;
  };
}
