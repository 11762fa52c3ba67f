// A fake Discord for end-to-end tests: REST API + CDN over HTTP and a gateway WebSocket, both on
// 127.0.0.1 with random ports. The real discord.js client is pointed at it through its own options
// (`rest.api`, `rest.cdn`; the gateway URL comes from GET /gateway/bot). Tests drive it by
// invoking registered commands, clicking buttons, posting and deleting user messages; they assert
// on the REST calls it recorded (with timestamps), on the messages it holds and on what each user
// can see of them (visibleTo: ephemeral messages only to their interaction's user). The platform
// rules it keeps, with their sources, are listed in rest.ts; docs/discord.md lists the ones the
// bot relies on.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { APIAttachment, APIMessage, APIUser } from 'discord.js';
import { FakeGateway, type GatewaySession } from './gateway.js';
import { createRestHandler, HttpError } from './rest.js';
import { snowflake } from './snowflake.js';
import type {
  AttachmentInput,
  FailureRule,
  FakeChannel,
  FakeInteraction,
  MessageRevision,
  RateLimitRule,
  RecordedCall,
} from './types.js';

export type * from './types.js';
export { snowflake, snowflakeTime } from './snowflake.js';

export interface FakeDiscordOptions {
  token?: string;
  applicationId?: string;
  botName?: string;
  /**
   * The first interaction response must come within this, else the interaction is gone (Discord:
   * 3 s, https://discord.com/developers/docs/interactions/receiving-and-responding#interaction-callback).
   */
  interactionResponseWindowMs?: number;
  /** Interaction tokens (follow-ups, edits of the reply) expire after this (Discord: 15 min, same page). */
  interactionTokenLifetimeMs?: number;
  /**
   * Bot requests a second beyond which every route answers a global 429 (Discord: 50; interaction
   * endpoints are not bound to it: https://discord.com/developers/docs/topics/rate-limits#global-rate-limit).
   */
  globalRequestsPerSecond?: number;
  heartbeatIntervalMs?: number;
  /** Privileged intents enabled in the developer portal (default: all; 0 = none). */
  privilegedIntents?: number;
}

/** Gateway intent bits (discord-api-types GatewayIntentBits). */
export const Intent = {
  Guilds: 1 << 0,
  GuildMessages: 1 << 9,
  DirectMessages: 1 << 12,
  MessageContent: 1 << 15,
} as const;

const ALL_PERMISSIONS = '2251799813685247';
const MAX_CONTENT = 2000;

type CommandRecord = Record<string, unknown> & { id: string; name: string; type: number };

export interface InteractionContext {
  user: APIUser;
  channel?: FakeChannel;
  /** Discord locale of the user, e.g. `en-US`, `zh-CN`, `zh-TW`. */
  locale?: string;
}

export class FakeDiscord {
  readonly options: Required<FakeDiscordOptions>;
  readonly token: string;
  readonly applicationId: string;
  readonly botUser: APIUser;
  readonly guildId: string;
  readonly calls: RecordedCall[] = [];
  readonly unhandled: string[] = [];
  readonly internalErrors: string[] = [];
  readonly cdnFiles = new Map<string, { contentType: string; data: Uint8Array; delayMs: number }>();
  readonly cdnRequests: { path: string; at: number; found: boolean }[] = [];
  readonly interactions = new Map<string, FakeInteraction>();
  readonly users = new Map<string, APIUser>();
  readonly revisions = new Map<string, MessageRevision[]>();
  readonly gateway: FakeGateway;
  /** The guild's text channel. */
  readonly textChannel: FakeChannel;
  apiRoot = '';
  cdnRoot = '';
  gatewayUrl = '';
  /** What GET /gateway/bot reports; default `gatewayUrl` (tests of a gateway URL override change it). */
  advertisedGatewayUrl: string | null = null;

  private readonly channels = new Map<string, FakeChannel>();
  private readonly globalCommands = new Map<string, CommandRecord>();
  private readonly guildCommands = new Map<string, Map<string, CommandRecord>>();
  private readonly rateLimits: RateLimitRule[] = [];
  private readonly failures: FailureRule[] = [];
  private restServer: Server | null = null;
  private gatewayServer: Server | null = null;
  private commandVersion = 0;
  /** Times of recent bot requests counted against the global limit. */
  private readonly globalWindow: number[] = [];
  /** While true the gateway refuses every connection (an outage); tests flip it. */
  gatewayDown = false;
  /** While true the gateway takes connections and never answers the handshake (a hung host). */
  gatewayHangs = false;
  /** Connections held unanswered while gatewayHangs was true. */
  private readonly hung: { request: IncomingMessage; socket: Duplex; head: Buffer }[] = [];
  /** Connection attempts the gateway saw (accepted or refused). */
  gatewayAttempts: number[] = [];

  private constructor(options: FakeDiscordOptions) {
    this.applicationId = options.applicationId ?? snowflake();
    this.token = options.token ?? `fake.${Buffer.from(this.applicationId).toString('base64url')}.secret-token-value`;
    this.options = {
      token: this.token,
      applicationId: this.applicationId,
      botName: options.botName ?? 'vistyle',
      interactionResponseWindowMs: options.interactionResponseWindowMs ?? 3000,
      interactionTokenLifetimeMs: options.interactionTokenLifetimeMs ?? 15 * 60_000,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 41_250,
      privilegedIntents: options.privilegedIntents ?? ((1 << 1) | (1 << 8) | (1 << 15)),
      globalRequestsPerSecond: options.globalRequestsPerSecond ?? 50,
    };
    this.botUser = {
      id: this.applicationId,
      username: this.options.botName,
      discriminator: '0',
      global_name: null,
      avatar: null,
      bot: true,
    };
    this.users.set(this.botUser.id, this.botUser);
    this.guildId = snowflake();
    this.textChannel = this.addChannel({ type: 0, guildId: this.guildId, name: 'general', recipient: null });
    this.gateway = new FakeGateway({
      token: this.token,
      heartbeatIntervalMs: this.options.heartbeatIntervalMs,
      privilegedIntents: this.options.privilegedIntents,
      readyPayload: (session) => this.readyPayload(session),
      guildCreates: () => [this.guildPayload()],
    });
  }

  static async start(options: FakeDiscordOptions = {}): Promise<FakeDiscord> {
    const fake = new FakeDiscord(options);
    const handler = createRestHandler(fake);
    fake.restServer = createServer((req, res) => {
      handler(req, res).catch((error: unknown) => {
        fake.internalErrors.push(String(error));
        if (!res.headersSent) res.writeHead(500).end();
      });
    });
    fake.gatewayServer = createServer((_req, res) => res.writeHead(426).end());
    fake.gatewayServer.on('upgrade', (req, socket, head) => {
      fake.gatewayAttempts.push(Date.now());
      // An outage: the connection is dropped before the WebSocket handshake (ECONNRESET).
      if (fake.gatewayDown) socket.destroy();
      else if (fake.gatewayHangs) fake.hung.push({ request: req, socket, head });
      else if (new URL(req.url ?? '/', 'http://127.0.0.1').pathname === '/') fake.gateway.handleUpgrade(req, socket, head);
      else socket.destroy();
    });
    const listen = (server: Server) =>
      new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
    const restPort = await listen(fake.restServer);
    const gatewayPort = await listen(fake.gatewayServer);
    fake.apiRoot = `http://127.0.0.1:${restPort}/api`;
    fake.cdnRoot = `http://127.0.0.1:${restPort}/cdn`;
    fake.gatewayUrl = `ws://127.0.0.1:${gatewayPort}`;
    return fake;
  }

  /** Drops the connections held by gatewayHangs (the client sees ECONNRESET); returns how many. */
  dropHungConnections(): number {
    const held = this.hung.splice(0);
    for (const { socket } of held) socket.destroy();
    return held.length;
  }

  /** Completes the handshakes held by gatewayHangs, late; returns how many. */
  answerHungConnections(): number {
    const held = this.hung.splice(0);
    for (const { request, socket, head } of held) this.gateway.handleUpgrade(request, socket, head);
    return held.length;
  }

  async close(): Promise<void> {
    this.dropHungConnections();
    await this.gateway.close();
    for (const server of [this.restServer, this.gatewayServer]) {
      if (!server) continue;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  // ---------------------------------------------------------------- test controls

  /** The next `times` requests matching method + path get a 429 with `retry_after` seconds. */
  rateLimit(rule: {
    method?: string;
    path: RegExp;
    retryAfter: number;
    global?: boolean;
    scope?: RateLimitRule['scope'];
    times?: number;
    when?: (body: unknown) => boolean;
  }): RateLimitRule {
    const entry: RateLimitRule = {
      method: rule.method?.toUpperCase(),
      path: rule.path,
      retryAfter: rule.retryAfter,
      global: rule.global ?? false,
      scope: rule.scope ?? (rule.global ? 'global' : 'user'),
      when: rule.when,
      remaining: rule.times ?? 1,
      hits: 0,
    };
    this.rateLimits.push(entry);
    return entry;
  }

  /** The next `times` requests matching method + path get this error answer instead. */
  fail(rule: {
    method?: string;
    path: RegExp;
    status: number;
    body?: Record<string, unknown>;
    times?: number;
    when?: (body: unknown) => boolean;
  }): FailureRule {
    const entry: FailureRule = {
      method: rule.method?.toUpperCase(),
      path: rule.path,
      status: rule.status,
      body: rule.body ?? { message: `fake failure ${rule.status}`, code: 0 },
      when: rule.when,
      remaining: rule.times ?? 1,
      hits: 0,
    };
    this.failures.push(entry);
    return entry;
  }

  /** @internal used by the REST handler */
  takeFailure(method: string, path: string, body: unknown): FailureRule | undefined {
    const rule = this.failures.find(
      (r) =>
        r.remaining > 0 &&
        (r.method === undefined || r.method === method) &&
        r.path.test(path) &&
        (r.when === undefined || r.when(body)),
    );
    if (!rule) return undefined;
    rule.remaining--;
    rule.hits++;
    return rule;
  }

  /** @internal used by the REST handler */
  takeRateLimit(method: string, path: string, body: unknown): RateLimitRule | undefined {
    const rule = this.rateLimits.find(
      (r) =>
        r.remaining > 0 &&
        (r.method === undefined || r.method === method) &&
        r.path.test(path) &&
        (r.when === undefined || r.when(body)),
    );
    if (!rule) return undefined;
    rule.remaining--;
    rule.hits++;
    return rule;
  }

  /**
   * @internal used by the REST handler: the global rate limit, counted over bot requests of the
   * last second; interaction callbacks and interaction webhooks are exempt (rate-limits#global-rate-limit).
   */
  takeGlobalLimit(path: string, botAuth: boolean, at: number): RateLimitRule | undefined {
    if (!botAuth || /^\/(interactions|webhooks)\//.test(path)) return undefined;
    while (this.globalWindow.length > 0 && this.globalWindow[0]! <= at - 1000) this.globalWindow.shift();
    if (this.globalWindow.length >= this.options.globalRequestsPerSecond) {
      const retryAfter = Math.max(0.001, (this.globalWindow[0]! + 1000 - at) / 1000);
      return { method: undefined, path: /global/, retryAfter, global: true, scope: 'global', when: undefined, remaining: 0, hits: 1 };
    }
    this.globalWindow.push(at);
    return undefined;
  }

  /**
   * The messages of a channel as `user` sees them: everything except ephemeral messages, which
   * only the user of their interaction sees (message flag EPHEMERAL, 1 << 6: "this message is only
   * visible to the user who invoked the Interaction",
   * https://discord.com/developers/docs/resources/message#message-object-message-flags).
   */
  visibleTo(user: APIUser, channelId: string = this.textChannel.id): APIMessage[] {
    return this.messages(channelId).filter((message) => {
      if (((message.flags ?? 0) & 64) === 0) return true;
      return [...this.interactions.values()].some(
        (i) => i.user.id === user.id && (i.originalMessageId === message.id || i.followUpIds.includes(message.id)),
      );
    });
  }

  /** Poll until `probe` returns something truthy. */
  async waitFor<T>(probe: () => T | undefined | null | false, what = 'condition', timeoutMs = 15_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = probe();
      if (value) return value;
      if (Date.now() > deadline) throw new Error(`fake discord: timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  callsTo(method: string, path: RegExp): RecordedCall[] {
    return this.calls.filter((c) => c.method === method.toUpperCase() && path.test(c.path));
  }

  /** Writes to application commands (PUT/POST/PATCH/DELETE), i.e. registrations. */
  commandWrites(): RecordedCall[] {
    return this.calls.filter((c) => c.method !== 'GET' && /^\/applications\/[^/]+(\/guilds\/[^/]+)?\/commands/.test(c.path));
  }

  createUser(username: string): APIUser {
    const user: APIUser = { id: snowflake(), username, discriminator: '0', global_name: username, avatar: null };
    this.users.set(user.id, user);
    return user;
  }

  channel(id: string): FakeChannel | undefined {
    return this.channels.get(id);
  }

  dmChannel(user: APIUser): FakeChannel {
    for (const channel of this.channels.values()) {
      if (channel.type === 1 && channel.recipient?.id === user.id) return channel;
    }
    return this.addChannel({ type: 1, guildId: null, name: '', recipient: user });
  }

  messages(channelId: string): APIMessage[] {
    return [...(this.channels.get(channelId)?.messages.values() ?? [])];
  }

  message(channelId: string, id: string): APIMessage | undefined {
    return this.channels.get(channelId)?.messages.get(id);
  }

  /** Every state a message went through: its creation, then each edit. */
  revisionsOf(messageId: string): MessageRevision[] {
    return this.revisions.get(messageId) ?? [];
  }

  registeredCommands(guildId: string | null = null): CommandRecord[] {
    const map = guildId ? this.guildCommands.get(guildId) : this.globalCommands;
    return [...(map?.values() ?? [])];
  }

  /**
   * Put a file on the fake CDN and describe it as Discord would in a message or interaction: id,
   * filename, size in bytes, url and proxy_url, and content_type / width / height only when known
   * (all optional in Discord's attachment object,
   * https://discord.com/developers/docs/resources/message#attachment-object).
   */
  attachment(input: AttachmentInput): APIAttachment {
    const id = snowflake();
    const path = `/attachments/${this.textChannel.id}/${id}/${encodeURIComponent(input.filename)}`;
    this.cdnFiles.set(path, {
      contentType: input.contentType ?? 'application/octet-stream',
      data: input.data,
      delayMs: input.delayMs ?? 0,
    });
    const attachment: APIAttachment = {
      id,
      filename: input.filename,
      size: input.reportedSize ?? input.data.byteLength,
      url: `${this.cdnRoot}${path}?ex=0&is=0&hm=0`,
      proxy_url: `${this.cdnRoot}${path}`,
    };
    if (input.contentType) attachment.content_type = input.contentType;
    if (input.width !== undefined) attachment.width = input.width;
    if (input.height !== undefined) attachment.height = input.height;
    return attachment;
  }

  // ---------------------------------------------------------------- events

  /** A user runs a registered chat-input command; `options` by name (attachments as APIAttachment). */
  slashCommand(name: string, options: Record<string, string | number | boolean | APIAttachment>, ctx: InteractionContext): FakeInteraction {
    const channel = ctx.channel ?? this.textChannel;
    const command = this.findCommand(name, 1, channel.guildId);
    const defs = (command.options as Record<string, unknown>[] | undefined) ?? [];
    const apiOptions: Record<string, unknown>[] = [];
    const attachments: Record<string, APIAttachment> = {};
    for (const [key, value] of Object.entries(options)) {
      const def = defs.find((d) => d.name === key);
      if (!def) throw new Error(`fake discord: /${name} has no option "${key}"`);
      const type = Number(def.type);
      if (type === 11) {
        const attachment = value as APIAttachment;
        attachments[attachment.id] = attachment;
        apiOptions.push({ name: key, type, value: attachment.id });
        continue;
      }
      const choices = def.choices as { value: unknown }[] | undefined;
      if (choices && !choices.some((c) => c.value === value)) {
        throw new Error(`fake discord: "${String(value)}" is not a choice of /${name} ${key}`);
      }
      apiOptions.push({ name: key, type, value });
    }
    for (const def of defs) {
      if (def.required && !(String(def.name) in options)) throw new Error(`fake discord: /${name} needs "${String(def.name)}"`);
    }
    const data: Record<string, unknown> = { id: command.id, name, type: 1, options: apiOptions };
    if (Object.keys(attachments).length > 0) data.resolved = { attachments };
    if (channel.guildId) data.guild_id = channel.guildId;
    return this.dispatchInteraction(2, data, ctx, channel);
  }

  /** A user runs a registered message context-menu command on `target`. */
  messageCommand(name: string, target: APIMessage, ctx: InteractionContext): FakeInteraction {
    const channel = this.channels.get(target.channel_id) ?? this.textChannel;
    const command = this.findCommand(name, 3, channel.guildId);
    const data: Record<string, unknown> = {
      id: command.id,
      name,
      type: 3,
      target_id: target.id,
      resolved: { messages: { [target.id]: target } },
    };
    if (channel.guildId) data.guild_id = channel.guildId;
    return this.dispatchInteraction(2, data, ctx, channel);
  }

  /** A user clicks the button with this custom id on a message. */
  clickButton(message: APIMessage, customId: string, ctx: InteractionContext): FakeInteraction {
    const current = this.message(message.channel_id, message.id) ?? message;
    const found = JSON.stringify(current.components ?? []).includes(JSON.stringify(customId));
    if (!found) throw new Error(`fake discord: message ${message.id} has no component "${customId}"`);
    const channel = this.channels.get(current.channel_id) ?? this.textChannel;
    return this.dispatchInteraction(3, { custom_id: customId, component_type: 2 }, ctx, channel, current);
  }

  /** A user posts a message; `mentionBot` puts `<@bot>` in front and the bot in `mentions`. */
  userMessage(input: {
    user: APIUser;
    channel?: FakeChannel;
    content?: string;
    attachments?: APIAttachment[];
    mentionBot?: boolean;
    replyTo?: APIMessage;
    /** A reply pings the replied-to author unless turned off (Discord's default is on). */
    pingRepliedUser?: boolean;
  }): APIMessage {
    const channel = input.channel ?? this.textChannel;
    const mentions: APIUser[] = [];
    let content = input.content ?? '';
    if (input.mentionBot) {
      content = `<@${this.botUser.id}> ${content}`.trim();
      mentions.push(this.botUser);
    }
    if (input.replyTo && (input.pingRepliedUser ?? true) && !mentions.some((u) => u.id === input.replyTo!.author.id)) {
      mentions.push(input.replyTo.author);
    }
    const message = this.storeMessage(channel, {
      author: input.user,
      content,
      attachments: input.attachments ?? [],
      mentions,
      type: input.replyTo ? 19 : 0,
      reference: input.replyTo ?? null,
    });
    this.gateway.dispatch(
      'MESSAGE_CREATE',
      (session) => this.messageForSession(session, message, channel),
      (intents) => Boolean(intents & (channel.guildId ? Intent.GuildMessages : Intent.DirectMessages)),
    );
    return message;
  }

  /** A user deletes their message. */
  deleteMessage(message: APIMessage): void {
    const channel = this.channels.get(message.channel_id);
    if (!channel) throw new Error(`fake discord: unknown channel ${message.channel_id}`);
    channel.messages.delete(message.id);
    const d: Record<string, unknown> = { id: message.id, channel_id: channel.id };
    if (channel.guildId) d.guild_id = channel.guildId;
    this.gateway.dispatch('MESSAGE_DELETE', d, (intents) =>
      Boolean(intents & (channel.guildId ? Intent.GuildMessages : Intent.DirectMessages)),
    );
  }

  // ---------------------------------------------------------------- state used by the REST handler

  interactionByToken(token: string): FakeInteraction | undefined {
    for (const interaction of this.interactions.values()) if (interaction.token === token) return interaction;
    return undefined;
  }

  applyCallback(
    interaction: FakeInteraction,
    type: number,
    data: Record<string, unknown> | undefined,
    files: { field: string; filename: string; contentType: string; data: Uint8Array }[],
  ): APIMessage | undefined {
    const componentMessage = interaction.payload.message as APIMessage | undefined;
    let message: APIMessage | undefined;
    switch (type) {
      case 4: // channel message with source
        message = this.createMessage(interaction.channelId, this.botUser, data ?? {}, files, {
          interaction,
          webhookId: this.applicationId,
        });
        break;
      case 5: // deferred channel message ("is thinking...")
        message = this.createMessage(
          interaction.channelId,
          this.botUser,
          { content: '', flags: 128 | (Number(data?.flags ?? 0) & 64) },
          [],
          { interaction, webhookId: this.applicationId, allowEmpty: true },
        );
        break;
      case 6: // deferred update of the component's message
        if (!componentMessage) throw new HttpError(400, { message: 'Invalid interaction response type', code: 50035 });
        message = this.message(componentMessage.channel_id, componentMessage.id);
        break;
      case 7: // update the component's message
        if (!componentMessage) throw new HttpError(400, { message: 'Invalid interaction response type', code: 50035 });
        message = this.editMessage(componentMessage.channel_id, componentMessage.id, data ?? {}, files);
        break;
      default:
        throw new HttpError(400, { message: `Unsupported callback type ${type}`, code: 50035 });
    }
    interaction.callback = { type, data, at: Date.now() };
    interaction.originalMessageId = message?.id ?? null;
    return message;
  }

  createMessage(
    channelId: string,
    author: APIUser,
    body: Record<string, unknown>,
    files: { field: string; filename: string; contentType: string; data: Uint8Array }[],
    options: { interaction?: FakeInteraction; webhookId?: string; allowEmpty?: boolean } = {},
  ): APIMessage {
    const channel = this.channels.get(channelId);
    if (!channel) throw new HttpError(404, { message: 'Unknown Channel', code: 10003 });
    const content = typeof body.content === 'string' ? body.content : '';
    checkContent(content);
    const attachments = files.map((f) => this.attachment({ filename: f.filename, contentType: f.contentType, data: f.data }));
    const components = (body.components as unknown[] | undefined) ?? [];
    const embeds = (body.embeds as unknown[] | undefined) ?? [];
    if (!options.allowEmpty && !content && attachments.length === 0 && components.length === 0 && embeds.length === 0) {
      throw new HttpError(400, { message: 'Cannot send an empty message', code: 50006 });
    }
    const reference = body.message_reference as { message_id?: string } | undefined;
    const referenced = reference?.message_id ? channel.messages.get(reference.message_id) ?? null : null;
    if (reference?.message_id && !referenced) {
      throw new HttpError(400, {
        message: 'Invalid Form Body',
        code: 50035,
        errors: { message_reference: { _errors: [{ code: 'MESSAGE_REFERENCE_UNKNOWN_MESSAGE', message: 'Unknown message' }] } },
      });
    }
    const interaction = options.interaction;
    return this.storeMessage(channel, {
      author,
      content,
      attachments,
      mentions: [],
      type: interaction ? (interaction.payload.data as { type?: number })?.type === 3 ? 23 : 20 : referenced ? 19 : 0,
      reference: referenced,
      flags: Number(body.flags ?? 0),
      components,
      embeds,
      webhookId: options.webhookId,
      interaction,
    });
  }

  editMessage(
    channelId: string,
    messageId: string,
    body: Record<string, unknown>,
    files: { field: string; filename: string; contentType: string; data: Uint8Array }[],
  ): APIMessage {
    const channel = this.channels.get(channelId);
    const message = channel?.messages.get(messageId);
    if (!channel || !message) throw new HttpError(404, { message: 'Unknown Message', code: 10008 });
    const next: APIMessage = { ...message };
    if ('content' in body) next.content = typeof body.content === 'string' ? body.content : '';
    checkContent(next.content);
    if ('components' in body) next.components = (body.components as APIMessage['components']) ?? [];
    if ('embeds' in body) next.embeds = (body.embeds as APIMessage['embeds']) ?? [];
    if ('attachments' in body && Array.isArray(body.attachments)) {
      const keep = new Set((body.attachments as { id?: string }[]).map((a) => String(a.id)));
      next.attachments = message.attachments.filter((a) => keep.has(a.id));
    }
    for (const f of files) next.attachments = [...next.attachments, this.attachment(f)];
    const flags = (message.flags ?? 0) & ~128; // an edit ends "is thinking..."
    next.flags = flags;
    const empty = !next.content && next.attachments.length === 0 && (next.components ?? []).length === 0 && next.embeds.length === 0;
    if (empty) throw new HttpError(400, { message: 'Cannot send an empty message', code: 50006 });
    next.edited_timestamp = new Date().toISOString();
    channel.messages.set(messageId, next);
    this.revisions.get(messageId)?.push({ at: Date.now(), content: next.content, flags, components: next.components ?? [] });
    return next;
  }

  commandsResponse(appId: string, guildId: string | null, withLocalizations: boolean): { status: number; body: unknown } {
    if (appId !== this.applicationId) throw new HttpError(403, { message: 'Missing Access', code: 50001 });
    return {
      status: 200,
      body: this.registeredCommands(guildId).map((c) => (withLocalizations ? c : stripLocalizations(c))),
    };
  }

  overwriteCommands(appId: string, guildId: string | null, body: Record<string, unknown>[]): { status: number; body: unknown } {
    if (appId !== this.applicationId) throw new HttpError(403, { message: 'Missing Access', code: 50001 });
    if (!Array.isArray(body)) throw new HttpError(400, { message: 'Invalid Form Body', code: 50035 });
    const map = this.commandMap(guildId);
    const previous = new Map([...map.values()].map((c) => [`${c.type}:${c.name}`, c]));
    map.clear();
    for (const def of body) {
      const record = this.normalizeCommand(def, guildId, previous.get(`${Number(def.type ?? 1)}:${String(def.name)}`)?.id);
      map.set(record.id, record);
    }
    return { status: 200, body: [...map.values()] };
  }

  createCommand(appId: string, guildId: string | null, body: Record<string, unknown>): { status: number; body: unknown } {
    if (appId !== this.applicationId) throw new HttpError(403, { message: 'Missing Access', code: 50001 });
    const map = this.commandMap(guildId);
    const existing = [...map.values()].find((c) => c.name === body.name && c.type === Number(body.type ?? 1));
    const record = this.normalizeCommand(body, guildId, existing?.id);
    map.set(record.id, record);
    return { status: existing ? 200 : 201, body: record };
  }

  applicationPayload(): Record<string, unknown> {
    return { id: this.applicationId, name: this.options.botName, flags: 0, bot_public: true, description: '' };
  }

  channelPayload(channel: FakeChannel): Record<string, unknown> {
    if (channel.type === 1) return { id: channel.id, type: 1, recipients: [channel.recipient], last_message_id: null };
    return {
      id: channel.id,
      type: 0,
      guild_id: channel.guildId,
      name: channel.name,
      position: 0,
      permission_overwrites: [],
      nsfw: false,
      parent_id: null,
      topic: null,
      last_message_id: null,
      rate_limit_per_user: 0,
    };
  }

  // ---------------------------------------------------------------- internals

  private addChannel(input: Omit<FakeChannel, 'id' | 'messages'>): FakeChannel {
    const channel: FakeChannel = { id: snowflake(), messages: new Map(), ...input };
    this.channels.set(channel.id, channel);
    return channel;
  }

  private commandMap(guildId: string | null): Map<string, CommandRecord> {
    if (!guildId) return this.globalCommands;
    let map = this.guildCommands.get(guildId);
    if (!map) this.guildCommands.set(guildId, (map = new Map()));
    return map;
  }

  /** What Discord stores and returns for a command definition (its defaults filled in). */
  private normalizeCommand(def: Record<string, unknown>, guildId: string | null, id?: string): CommandRecord {
    const type = Number(def.type ?? 1);
    if (typeof def.name !== 'string' || def.name.length === 0) {
      throw new HttpError(400, { message: 'Invalid Form Body', code: 50035, errors: { name: { _errors: [{ code: 'BASE_TYPE_REQUIRED' }] } } });
    }
    if (type === 1 && !/^[-_\p{L}\p{N}]{1,32}$/u.test(def.name)) {
      throw new HttpError(400, { message: 'Invalid Form Body', code: 50035, errors: { name: { _errors: [{ code: 'APPLICATION_COMMAND_INVALID_NAME' }] } } });
    }
    this.commandVersion++;
    const record: CommandRecord = {
      id: id ?? snowflake(),
      application_id: this.applicationId,
      version: snowflake(),
      default_member_permissions: (def.default_member_permissions as string | null | undefined) ?? null,
      type,
      name: def.name,
      name_localizations: (def.name_localizations as Record<string, string> | undefined) ?? null,
      description: type === 1 ? String(def.description ?? '') : '',
      description_localizations: (def.description_localizations as Record<string, string> | undefined) ?? null,
      dm_permission: (def.dm_permission as boolean | undefined) ?? true,
      contexts: (def.contexts as number[] | undefined) ?? null,
      integration_types: (def.integration_types as number[] | undefined) ?? [0],
      nsfw: (def.nsfw as boolean | undefined) ?? false,
    };
    if (def.options) record.options = def.options;
    if (guildId) record.guild_id = guildId;
    return record;
  }

  private findCommand(name: string, type: number, guildId: string | null): CommandRecord {
    const pools = guildId ? [this.guildCommands.get(guildId), this.globalCommands] : [this.globalCommands];
    for (const pool of pools) {
      for (const command of pool?.values() ?? []) if (command.name === name && command.type === type) return command;
    }
    throw new Error(`fake discord: no registered command "${name}" of type ${type}`);
  }

  private dispatchInteraction(
    type: number,
    data: Record<string, unknown>,
    ctx: InteractionContext,
    channel: FakeChannel,
    message?: APIMessage,
  ): FakeInteraction {
    this.users.set(ctx.user.id, ctx.user);
    const id = snowflake();
    // Like Discord's: base64 of "interaction:<id>:<secret>" (no characters that need URL escaping).
    const token = Buffer.from(`interaction:${id}:${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`).toString('base64url');
    const payload: Record<string, unknown> = {
      id,
      application_id: this.applicationId,
      type,
      data,
      channel_id: channel.id,
      channel: this.channelPayload(channel),
      token,
      version: 1,
      locale: ctx.locale ?? 'en-US',
      app_permissions: ALL_PERMISSIONS,
      entitlements: [],
      attachment_size_limit: 25 * 1024 * 1024,
      context: channel.guildId ? 0 : 1,
      authorizing_integration_owners: channel.guildId ? { '0': channel.guildId } : { '1': ctx.user.id },
    };
    if (channel.guildId) {
      payload.guild_id = channel.guildId;
      payload.guild_locale = 'en-US';
      payload.guild = { id: channel.guildId, locale: 'en-US', features: [] };
      payload.member = {
        user: ctx.user,
        roles: [],
        joined_at: new Date(0).toISOString(),
        deaf: false,
        mute: false,
        flags: 0,
        permissions: ALL_PERMISSIONS,
      };
    } else {
      payload.user = ctx.user;
    }
    if (message) payload.message = message;
    const interaction: FakeInteraction = {
      id,
      token,
      type,
      createdAt: Date.now(),
      channelId: channel.id,
      guildId: channel.guildId,
      user: ctx.user,
      payload,
      callback: null,
      originalMessageId: null,
      followUpIds: [],
    };
    this.interactions.set(id, interaction);
    this.gateway.dispatch('INTERACTION_CREATE', payload);
    return interaction;
  }

  private storeMessage(
    channel: FakeChannel,
    input: {
      author: APIUser;
      content: string;
      attachments: APIAttachment[];
      mentions: APIUser[];
      type: number;
      reference: APIMessage | null;
      flags?: number;
      components?: unknown[];
      embeds?: unknown[];
      webhookId?: string | undefined;
      interaction?: FakeInteraction | undefined;
    },
  ): APIMessage {
    const id = snowflake();
    const message = {
      id,
      channel_id: channel.id,
      author: input.author,
      content: input.content,
      timestamp: new Date().toISOString(),
      edited_timestamp: null,
      tts: false,
      mention_everyone: false,
      mentions: input.mentions,
      mention_roles: [],
      attachments: input.attachments,
      embeds: input.embeds ?? [],
      pinned: false,
      type: input.type,
      flags: input.flags ?? 0,
      components: input.components ?? [],
    } as unknown as APIMessage & Record<string, unknown>;
    if (channel.guildId) message.guild_id = channel.guildId;
    if (input.webhookId) message.webhook_id = input.webhookId;
    if (input.reference) {
      message.message_reference = { type: 0, message_id: input.reference.id, channel_id: channel.id, ...(channel.guildId ? { guild_id: channel.guildId } : {}) };
      message.referenced_message = input.reference;
    }
    if (input.interaction) {
      const data = input.interaction.payload.data as { name?: string; type?: number };
      message.interaction_metadata = {
        id: input.interaction.id,
        type: input.interaction.type,
        user: input.interaction.user,
        authorizing_integration_owners: input.interaction.payload.authorizing_integration_owners as Record<string, string>,
        ...(data?.type === 3 ? { target_message_id: (data as { target_id?: string }).target_id } : {}),
      };
      message.application_id = this.applicationId;
    }
    channel.messages.set(id, message);
    this.revisions.set(id, [{ at: Date.now(), content: message.content, flags: message.flags ?? 0, components: message.components ?? [] }]);
    return message;
  }

  /** What a session may see of a message: content fields need MESSAGE_CONTENT unless exempt. */
  private messageForSession(session: GatewaySession, message: APIMessage, channel: FakeChannel): Record<string, unknown> {
    const intents = session.identify?.intents ?? 0;
    const visible = (m: APIMessage) =>
      Boolean(intents & Intent.MessageContent) ||
      channel.type === 1 ||
      m.author.id === this.botUser.id ||
      m.mentions.some((u) => u.id === this.botUser.id);
    const redact = (m: APIMessage): Record<string, unknown> =>
      visible(m) ? { ...m } : { ...m, content: '', attachments: [], embeds: [], components: [] };
    const out = redact(message);
    out.channel_type = channel.type; // MESSAGE_CREATE's extra field; discord.js needs it for uncached DMs
    if (message.referenced_message) out.referenced_message = redact(message.referenced_message);
    if (channel.guildId) {
      out.member = { roles: [], joined_at: new Date(0).toISOString(), deaf: false, mute: false, flags: 0 };
      out.mentions = message.mentions.map((u) => ({ ...u, member: { roles: [], joined_at: new Date(0).toISOString(), deaf: false, mute: false, flags: 0 } }));
    }
    return out;
  }

  private readyPayload(session: GatewaySession): Record<string, unknown> {
    return {
      v: 10,
      user_settings: {},
      user: this.botUser,
      guilds: [{ id: this.guildId, unavailable: true }],
      session_id: session.sessionId,
      resume_gateway_url: this.gatewayUrl,
      shard: session.identify?.shard ?? [0, 1],
      application: { id: this.applicationId, flags: 0 },
      private_channels: [],
      relationships: [],
      presences: [],
      guild_join_requests: [],
      geo_ordered_rtc_regions: [],
    };
  }

  private guildPayload(): Record<string, unknown> {
    const channels = [...this.channels.values()].filter((c) => c.guildId === this.guildId).map((c) => this.channelPayload(c));
    return {
      id: this.guildId,
      name: 'Fake Guild',
      icon: null,
      splash: null,
      discovery_splash: null,
      owner_id: snowflake(),
      afk_channel_id: null,
      afk_timeout: 300,
      verification_level: 0,
      default_message_notifications: 0,
      explicit_content_filter: 0,
      roles: [
        {
          id: this.guildId,
          name: '@everyone',
          color: 0,
          hoist: false,
          icon: null,
          unicode_emoji: null,
          position: 0,
          permissions: '1071698660929',
          managed: false,
          mentionable: false,
          flags: 0,
        },
      ],
      emojis: [],
      stickers: [],
      features: [],
      mfa_level: 0,
      application_id: null,
      system_channel_id: null,
      system_channel_flags: 0,
      rules_channel_id: null,
      vanity_url_code: null,
      description: null,
      banner: null,
      premium_tier: 0,
      preferred_locale: 'en-US',
      public_updates_channel_id: null,
      nsfw_level: 0,
      premium_progress_bar_enabled: false,
      safety_alerts_channel_id: null,
      joined_at: new Date(0).toISOString(),
      large: false,
      unavailable: false,
      member_count: 2,
      voice_states: [],
      members: [],
      channels,
      threads: [],
      presences: [],
      stage_instances: [],
      guild_scheduled_events: [],
      soundboard_sounds: [],
    };
  }
}

function checkContent(content: string): void {
  if (content.length > MAX_CONTENT) {
    throw new HttpError(400, {
      message: 'Invalid Form Body',
      code: 50035,
      errors: { content: { _errors: [{ code: 'BASE_TYPE_MAX_LENGTH', message: `Must be ${MAX_CONTENT} or fewer in length.` }] } },
    });
  }
}

/** GET commands without `with_localizations=true` returns no localization maps (as Discord does). */
function stripLocalizations(command: CommandRecord): CommandRecord {
  const strip = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(strip);
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) {
        if (k === 'name_localizations' || k === 'description_localizations') continue;
        out[k] = strip(v);
      }
      return out;
    }
    return value;
  };
  return strip(command) as CommandRecord;
}
