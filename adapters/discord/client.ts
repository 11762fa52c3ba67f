// Builds the discord.js client: minimal gateway intents, the REST root and gateway URL overrides
// (local proxies, tests), no mention pings by default, rate limits on message sends/edits handed
// to the adapter's edit lanes (see errors.ts), and a gateway that backs off between reconnection
// attempts (ShardHooks) instead of @discordjs/ws's fixed 0.5 s.
import {
  Client,
  GatewayIntentBits,
  Partials,
  Routes,
  SimpleShardingStrategy,
  type ClientOptions,
  type RESTOptions,
} from 'discord.js';

/** @discordjs/ws's manager (discord.js exports its own class of the same name). */
type GatewayManager = ConstructorParameters<typeof SimpleShardingStrategy>[0];
import { rateLimitHandledByLane } from './errors.js';

export interface DiscordClientOptions {
  /** REST root without the version, like `https://discord.com/api` (a trailing `/v10` is accepted). */
  apiRoot?: string;
  /** Gateway WebSocket URL; default: what GET /gateway/bot reports. */
  gatewayUrl?: string;
  mentionMode: boolean;
  /** Called around each gateway connection attempt (back-off, status). */
  shardHooks?: ShardHooks;
}

/**
 * @discordjs/ws reconnects a shard 0.5 s after every failed attempt, forever, and reports network
 * errors only as debug lines. These hooks let the adapter wait before an attempt (its back-off;
 * resolve false to skip the attempt because the adapter is stopping) and see the errors.
 */
export interface ShardHooks {
  beforeConnect(): Promise<boolean>;
  onError(error: Error): void;
}

/** The (private, but stable across @discordjs/ws 1.x) shard members the hooks wrap. */
interface ShardInternals {
  internalConnect(): Promise<void>;
  onError(error: Error): void;
  destroy(options?: unknown): Promise<void>;
  connection: ShardConnection | null;
}

/** What of the shard's WebSocket (ws's, or the global one) the destroy guard uses. */
interface ShardConnection {
  readonly readyState: number;
  onerror: unknown;
  addEventListener(type: 'error' | 'open', listener: () => void): void;
  close(code?: number): void;
}

const CONNECTING = 0;

/** discord.js's default strategy, with every shard's connection attempts going through `hooks`. */
class HookedShardingStrategy extends SimpleShardingStrategy {
  constructor(
    manager: GatewayManager,
    private readonly hooks: ShardHooks,
  ) {
    super(manager);
  }

  override async spawn(shardIds: number[]): Promise<void> {
    await super.spawn(shardIds);
    const shards = (this as unknown as { shards: Map<number, ShardInternals> }).shards;
    for (const shard of shards.values()) hookShard(shard, this.hooks);
  }
}

const HOOKED = Symbol('vistyle.hooked');

function hookShard(shard: ShardInternals & { [HOOKED]?: true }, hooks: ShardHooks): void {
  if (shard[HOOKED]) return;
  shard[HOOKED] = true;
  const connect = shard.internalConnect.bind(shard);
  shard.internalConnect = async () => {
    if (await hooks.beforeConnect()) await connect();
  };
  const onError = shard.onError.bind(shard);
  shard.onError = (error: Error) => {
    hooks.onError(error);
    onError(error);
  };
  const destroy = shard.destroy.bind(shard);
  shard.destroy = (options?: unknown) => {
    guardAbandonedConnection(shard.connection);
    return destroy(options);
  };
}

/**
 * @discordjs/ws 1.x closes only an OPEN connection on destroy, then drops its error handler. A
 * connection still in its handshake (the gateway slow or down when the bot stops or the shard
 * reconnects) is left behind with no error listener, and its later ECONNRESET became an uncaught
 * exception ("uncaught exception while shutting down"). Keep a listener on it, and close it if it
 * opens after the shard has let it go.
 */
function guardAbandonedConnection(connection: ShardConnection | null): void {
  if (!connection || connection.readyState !== CONNECTING) return;
  connection.addEventListener('error', () => undefined);
  connection.addEventListener('open', () => {
    // Opened before destroy reached it: the shard closes it itself. After: nobody owns it.
    if (connection.onerror === null) connection.close(1000);
  });
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
  const clientOptions: ClientOptions = {
    intents: discordIntents(options.mentionMode),
    // DM channels and deleted messages arrive uncached.
    partials: [Partials.Channel, Partials.Message],
    // Model output could contain @everyone or role mentions: never ping anyone unless asked.
    allowedMentions: { parse: [], repliedUser: false },
    rest,
  };
  const hooks = options.shardHooks;
  if (hooks) clientOptions.ws = { buildStrategy: (manager) => new HookedShardingStrategy(manager, hooks) };
  const client = new Client(clientOptions);
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
