// The Discord adapter: discord.js events in, BotCore calls out, answers rendered back. Thin by
// design: limits, queueing, styles, conversations, strings and the command table live in the core
// (src/bot); this file maps slash commands, the "Ask about this image" context menu, mentions
// (mention mode), Cancel buttons and message deletions onto it, and keeps the gateway connection
// (back-off between attempts, status() for health checks, a bounded first connection).
import {
  Events,
  MessageFlags,
  type Attachment,
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  type Client,
  type Interaction,
  type Message,
  type MessageContextMenuCommandInteraction,
  type PartialMessage,
  type User,
} from 'discord.js';
import { backoffDelay, ConnectionTracker, sleepUnlessAborted } from '../shared/connection.js';
import { EditSchedulers } from '../shared/edit-scheduler.js';
import { splitMessage } from '../shared/split-message.js';
import { findCommand, runCommand, type CommandArgs } from '../../src/bot/commands.js';
import type {
  AdapterStatus,
  AskTicket,
  BotChat,
  BotCore,
  BotRequest,
  BotUser,
  CommandContext,
  DiscordAdapterOptions,
  PlatformAdapter,
} from '../../src/bot/types.js';
import { isVistyleError, VistyleError } from '../../src/errors.js';
import { redactSecrets, registerSecret, type Logger } from '../../src/log.js';
import type { StyleRegistry } from '../../src/styles/types.js';
import { CANCEL_PREFIX, DISCORD_MAX_CONTENT, DiscordAnswer } from './answer.js';
import { createDiscordClient } from './client.js';
import { ASK_ABOUT_IMAGE, buildCommandDefinitions, syncCommands, type StyleChoice } from './commands.js';
import { describeError, retryAfterMs } from './errors.js';
import { attachmentImageSource, pickAttachments } from './image-source.js';
import { ChannelSurface, InteractionSurface, type AnswerInteraction, type AnswerSurface } from './surfaces.js';

export { ASK_ABOUT_IMAGE, buildCommandDefinitions, syncCommands } from './commands.js';
export { discordIntents } from './client.js';

/** A style registry that can tell us when the operator's styles file changed. */
export type ReloadableStyles = StyleRegistry & {
  onReload?(listener: (result: { ok: boolean }) => void): () => void;
};

/** Options beyond the shared contract (all optional; `vistyle start` may pass `styles`). */
export interface DiscordAdapterExtras {
  /** Style registry, for the choices of `/ask style:` and `/style name:` (free text without it). */
  styles?: ReloadableStyles;
  /** Interaction tokens' lifetime (Discord: 15 minutes). Injectable for tests. */
  interactionTokenLifetimeMs?: number;
  /** Move an interaction answer to a channel message this long before its token expires. */
  handoffMarginMs?: number;
  /** Least time between two edits in one channel (default 1000 ms). */
  editIntervalMs?: number;
  /** start() gives up (NETWORK) when the first connection has not succeeded after this long (default 30 s). */
  startTimeoutMs?: number;
  /** Gateway reconnection back-off: first wait and cap (default 1 s doubling to 60 s). */
  reconnectBackoff?: { initialMs?: number; maxMs?: number };
  /** Least time between two "still unreachable" log lines during an outage (default 60 s). */
  outageReportEveryMs?: number;
}

export type DiscordAdapterConfig = DiscordAdapterOptions & DiscordAdapterExtras;

const DEFAULT_TOKEN_LIFETIME_MS = 15 * 60_000;
const DEFAULT_HANDOFF_MARGIN_MS = 60_000;
const DEFAULT_START_TIMEOUT_MS = 30_000;
/**
 * An interaction must be acknowledged within 3 s of its creation (Discord). The core decides up
 * front refusals in milliseconds; should it not have decided this long after the interaction was
 * created, the request is deferred anyway (a refusal then edits the deferred reply).
 */
const DECIDE_BEFORE_DEFER_MS = 2000;
const REMEMBERED = 10_000;
/** `/ask`'s picture options, in the order they are asked about. */
const ASK_PICTURE_OPTIONS = ['image', 'image2', 'image3', 'image4'] as const;

export function createDiscordAdapter(options: DiscordAdapterConfig): DiscordAdapter {
  return new DiscordAdapter(options);
}

export class DiscordAdapter implements PlatformAdapter {
  readonly name = 'discord' as const;
  private client: Client | null = null;
  private readonly core: BotCore;
  private readonly log: Logger;
  private readonly lanes: EditSchedulers;
  private readonly tokenLifetimeMs: number;
  private readonly handoffMarginMs: number;
  /** Interaction locales seen per user, so mention-mode answers use the user's language. */
  private readonly locales = new Map<string, string>();
  /** Ids of the bot's answer messages, so a reply to one counts as addressed to the bot. */
  private readonly answerIds = new Set<string>();
  private unsubscribeStyles: (() => void) | undefined;
  private stopped = false;
  private starting: Promise<void> | null = null;
  /** Aborted by stop(): ends a start() in progress and any back-off wait. */
  private readonly lifetime = new AbortController();
  private readonly connection: ConnectionTracker;
  /** The wait before the gateway's next connection attempt (set when one fails). */
  private reconnectDelayMs = 0;
  /** The client whose gateway may connect; a destroyed one's pending attempts are dropped. */
  private liveClient: Client | null = null;

  constructor(private readonly options: DiscordAdapterConfig) {
    registerSecret(options.token);
    this.core = options.core;
    this.log = options.logger.child({ module: 'discord' });
    this.connection = new ConnectionTracker({
      platform: 'discord',
      logger: this.log,
      what: 'discord gateway',
      ...(options.outageReportEveryMs !== undefined ? { reportEveryMs: options.outageReportEveryMs } : {}),
    });
    this.tokenLifetimeMs = options.interactionTokenLifetimeMs ?? DEFAULT_TOKEN_LIFETIME_MS;
    this.handoffMarginMs = Math.min(options.handoffMarginMs ?? DEFAULT_HANDOFF_MARGIN_MS, this.tokenLifetimeMs / 2);
    const editIntervalMs = options.editIntervalMs ?? 1000;
    this.lanes = new EditSchedulers(() => ({ minIntervalMs: editIntervalMs, retryAfterMs, describeError, logger: this.log }));
  }

  /** The discord.js client (after start), for tests and diagnostics. */
  get discordClient(): Client | null {
    return this.client;
  }

  start(): Promise<void> {
    if (this.stopped) return Promise.reject(new VistyleError('CANCELLED', 'the Discord adapter was stopped'));
    this.starting ??= this.connect();
    return this.starting;
  }

  status(): AdapterStatus {
    return this.connection.status();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.lifetime.abort();
    this.connection.stop();
    this.unsubscribeStyles?.();
    this.lanes.closeAll();
    const client = this.client;
    this.client = null;
    this.liveClient = null;
    if (client) await client.destroy().catch((error: unknown) => this.log.warn({ error: describeError(error) }, 'discord client destroy failed'));
    // A start() still connecting ends now (it sees the abort); don't leave it behind.
    await this.starting?.catch(() => undefined);
    this.log.info('discord adapter stopped');
  }

  /**
   * Logs in and waits for the gateway session. A network failure is retried with back-off (a
   * new client each time) until `startTimeoutMs` has passed since start() was called, then start()
   * fails with NETWORK; a rejected token or intent fails at once (CONFIG_INVALID); stop() ends it
   * at once (CANCELLED).
   */
  private async connect(): Promise<void> {
    this.connection.starting();
    const timeoutMs = this.options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const client = this.buildClient();
      this.client = client;
      try {
        const readyClient = await this.loginOnce(client, deadline);
        await this.onConnected(readyClient);
        return;
      } catch (error) {
        if (this.client === client) this.client = null;
        if (this.liveClient === client) this.liveClient = null;
        await client.destroy().catch(() => undefined);
        if (this.lifetime.signal.aborted) throw new VistyleError('CANCELLED', 'the Discord adapter was stopped while connecting');
        const failure = isVistyleError(error) ? error : loginError(error);
        if (failure.code !== 'NETWORK') {
          this.connection.stop();
          throw failure;
        }
        const left = deadline - Date.now();
        const wait = backoffDelay(attempt + 1, this.options.reconnectBackoff);
        if (left <= wait) {
          this.connection.stop();
          const last = this.connection.status().lastError;
          throw new VistyleError(
            'NETWORK',
            `could not connect to Discord within ${Math.round(timeoutMs / 1000)} s${last ? ` (last error: ${last})` : ''}; check the network, DISCORD_API_ROOT and DISCORD_GATEWAY_URL`,
            { details: failure.details ?? {} },
          );
        }
        this.connection.failed(wait, errorText(error));
        await sleepUnlessAborted(wait, this.lifetime.signal);
        if (this.lifetime.signal.aborted) throw new VistyleError('CANCELLED', 'the Discord adapter was stopped while connecting');
      }
    }
  }

  private buildClient(): Client {
    const client: Client = createDiscordClient({
      apiRoot: this.options.apiRoot,
      gatewayUrl: this.options.gatewayUrl,
      mentionMode: this.options.mentionMode,
      shardHooks: {
        beforeConnect: async () => {
          const wait = this.reconnectDelayMs;
          this.reconnectDelayMs = 0;
          if (wait > 0) await sleepUnlessAborted(wait, this.lifetime.signal);
          // Destroying a client does not stop an attempt already waiting here: drop it.
          return !this.lifetime.signal.aborted && this.liveClient === client;
        },
        onError: (error) => this.connection.error(errorText(error)),
      },
    });
    this.liveClient = client;
    this.attachPlatformLogging(client);
    client.on(Events.InteractionCreate, (interaction) => this.guard('interaction', () => this.onInteraction(interaction)));
    if (this.options.mentionMode) {
      client.on(Events.MessageCreate, (message) => this.guard('message', () => this.onMessage(message)));
      client.on(Events.MessageDelete, (message) => this.guard('message delete', () => this.onMessageDelete(message)));
    }
    return client;
  }

  /** One login: resolves with the ready client, or rejects (the deadline, stop(), the login's own error). */
  private async loginOnce(client: Client, deadline: number): Promise<Client<true>> {
    const ready = new Promise<Client<true>>((resolve) => client.once(Events.ClientReady, resolve));
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    const givingUp = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new VistyleError('NETWORK', 'the Discord gateway did not answer in time')), Math.max(0, deadline - Date.now()));
      onAbort = () => reject(new VistyleError('CANCELLED', 'stopped'));
      this.lifetime.signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([
        client.login(this.options.token).then(
          () => ready,
          (error: unknown) => Promise.reject(loginError(error)),
        ),
        givingUp,
      ]);
    } finally {
      clearTimeout(timer);
      if (onAbort) this.lifetime.signal.removeEventListener('abort', onAbort);
    }
  }

  private async onConnected(readyClient: Client<true>): Promise<void> {
    this.connection.connected();
    if (readyClient.application.id !== this.options.applicationId) {
      this.log.warn(
        { configured: this.options.applicationId, actual: readyClient.application.id },
        'DISCORD_APPLICATION_ID does not match the application of DISCORD_TOKEN; using the token’s application',
      );
    }
    this.log.info(
      { user: readyClient.user.tag, guilds: readyClient.guilds.cache.size, mentionMode: this.options.mentionMode },
      'discord connected',
    );
    await this.registerCommands(readyClient);
    this.unsubscribeStyles = this.options.styles?.onReload?.((result) => {
      if (result.ok && this.client?.isReady()) void this.registerCommands(this.client);
    });
  }

  /** Registration problems are logged, not fatal: commands registered earlier keep working. */
  private async registerCommands(client: Client<true>): Promise<void> {
    const styles: StyleChoice[] = (this.options.styles?.list() ?? []).map((style) => ({ id: style.id, names: style.names }));
    const definitions = buildCommandDefinitions({ styles, maxQuestionChars: this.core.limits.maxQuestionChars });
    try {
      await syncCommands(client, definitions, this.options.guildId, this.log);
    } catch (error) {
      this.log.error({ error: describeError(error) }, 'discord command registration failed');
    }
  }

  /**
   * Platform events as log lines and connection state. A lost gateway connection is reported by
   * the ConnectionTracker (one warning, then one line a minute), not once per attempt.
   */
  private attachPlatformLogging(client: Client): void {
    client.on(Events.Error, (error) => this.log.error({ error: describeError(error) }, 'discord client error'));
    client.on(Events.Warn, (message) => this.log.warn({ detail: message }, 'discord client warning'));
    client.on(Events.ShardError, (error, shardId) => {
      this.connection.error(errorText(error));
      this.log.error({ error: describeError(error), shardId }, 'discord gateway error');
    });
    client.on(Events.ShardDisconnect, (event, shardId) => {
      // Discord closed with a code that discord.js does not recover from (e.g. invalid intents).
      this.connection.failed(undefined, `gateway closed the connection (code ${event.code})`);
      this.log.error({ code: event.code, shardId }, 'discord gateway disconnected for good');
    });
    client.on(Events.ShardReconnecting, () => {
      // The connection closed; the next attempt waits this long (the first one goes at once).
      this.reconnectDelayMs = backoffDelay(this.connection.failedAttempts, this.options.reconnectBackoff);
      this.connection.failed(this.reconnectDelayMs);
    });
    client.on(Events.ShardReady, () => this.connection.connected());
    client.on(Events.ShardResume, (shardId, replayed) => {
      this.connection.connected();
      this.log.info({ shardId, replayed }, 'discord gateway resumed');
    });
    client.rest.on('rateLimited', (info) =>
      this.log.debug({ route: info.route, method: info.method, retryAfterMs: info.retryAfter, global: info.global }, 'discord rate limit'),
    );
  }

  /** Every event handler runs here: a failure is one structured log line, never a crash. */
  private guard(what: string, handler: () => Promise<void> | void): void {
    try {
      void Promise.resolve(handler()).catch((error: unknown) =>
        this.log.error({ error: describeError(error), event: what }, 'discord event handling failed'),
      );
    } catch (error) {
      this.log.error({ error: describeError(error), event: what }, 'discord event handling failed');
    }
  }

  // ------------------------------------------------------------------ interactions

  private async onInteraction(interaction: Interaction): Promise<void> {
    if (this.stopped) return;
    if ('locale' in interaction && interaction.locale) this.remember(this.locales, interaction.user.id, interaction.locale);
    if (interaction.isChatInputCommand()) {
      if (interaction.commandName === 'ask') return this.onAsk(interaction);
      return this.onSettingsCommand(interaction);
    }
    if (interaction.isMessageContextMenuCommand() && interaction.commandName === ASK_ABOUT_IMAGE) {
      return this.onAskAboutImage(interaction);
    }
    if (interaction.isButton() && interaction.customId.startsWith(CANCEL_PREFIX)) return this.onCancel(interaction);
    this.log.debug({ type: interaction.type }, 'discord interaction ignored');
  }

  /** `/ask image:<attachment> question:<text> style:<choice> image2..image4:<attachment>`. */
  private async onAsk(interaction: ChatInputCommandInteraction): Promise<void> {
    const attachments = ASK_PICTURE_OPTIONS.map((name) => interaction.options.getAttachment(name)).filter((a): a is Attachment => a !== null);
    const request: BotRequest = {
      user: this.userOf(interaction.user, interaction.locale),
      chat: chatOf(interaction.channelId, interaction.guildId),
      locale: interaction.locale,
    };
    const question = interaction.options.getString('question')?.trim();
    if (question) request.question = question;
    const style = interaction.options.getString('style');
    if (style) request.style = style;
    if (attachments.length > 0) request.images = attachments.map(attachmentImageSource);
    await this.askOnInteraction(interaction, request);
  }

  /** The message context menu: ask the style's default question about the message's pictures. */
  private async onAskAboutImage(interaction: MessageContextMenuCommandInteraction): Promise<void> {
    const target = interaction.targetMessage;
    const attachments = pickAttachments(target.attachments.values());
    const request: BotRequest = {
      user: this.userOf(interaction.user, interaction.locale),
      chat: chatOf(interaction.channelId, interaction.guildId),
      locale: interaction.locale,
    };
    if (attachments.length > 0) {
      request.images = attachments.map(attachmentImageSource);
      request.messageId = target.id;
    } else {
      // No picture here: a follow-up on the conversation this message belongs to (the bot's answer).
      request.replyToMessageId = target.id;
    }
    await this.askOnInteraction(interaction, request);
  }

  /**
   * Asks first and acknowledges after. What the core can refuse from the interaction alone
   * (allow-lists, rate and in-flight limits, a full queue, an attachment's type or size from its
   * metadata, an unknown style) it refuses within milliseconds, and that refusal is the
   * interaction's private reply. Only an accepted request is deferred ("is thinking…", public);
   * its reply is then edited into the answer or, should it fail later (download, decoding), into
   * the failure. Deferring first would leave no private way to refuse: the first follow-up after
   * a deferral edits the deferred reply and keeps its visibility (Discord ignores the ephemeral
   * flag there), so a refusal sent that way and the reply deleted afterwards vanishes.
   */
  private async askOnInteraction(interaction: AnswerInteraction, request: BotRequest): Promise<void> {
    const surface = new InteractionSurface(interaction, this.tokenLifetimeMs);
    const ticket = this.ask(request, surface, interaction.channelId, interaction.user.id);
    const grace = Math.max(0, interaction.createdTimestamp + DECIDE_BEFORE_DEFER_MS - Date.now());
    let timer: NodeJS.Timeout | undefined;
    const decided = await Promise.race([
      ticket.accepted,
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), grace))),
    ]);
    clearTimeout(timer);
    if (!decided || surface.acknowledged) return;
    // A failed deferral (Discord gave up on the interaction) shows in the first write, which then
    // moves the answer to a channel message.
    await surface.defer().catch((error: unknown) =>
      this.log.warn({ requestId: ticket.requestId, error: describeError(error) }, 'discord refused the deferral'),
    );
  }

  private async onCancel(interaction: ButtonInteraction): Promise<void> {
    const requestId = interaction.customId.slice(CANCEL_PREFIX.length);
    const result = this.core.cancel(requestId, this.userOf(interaction.user, interaction.locale));
    if (result.ok) {
      // Acknowledge silently; the answer's message then shows "Cancelled." through its own sink.
      await interaction.deferUpdate();
      return;
    }
    await interaction.reply({ content: result.text, flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
  }

  /** Every other command of the core's table (/style, /styles, /language, /help...): answered privately (ephemeral). */
  private async onSettingsCommand(interaction: ChatInputCommandInteraction): Promise<void> {
    const ctx: CommandContext = {
      user: this.userOf(interaction.user, interaction.locale),
      chat: chatOf(interaction.channelId, interaction.guildId),
      locale: interaction.locale,
    };
    const command = findCommand(interaction.commandName);
    const args: CommandArgs = {};
    for (const option of command?.options ?? []) {
      if (option.kind === 'picture') continue;
      const value = interaction.options.getString(option.name);
      if (value) args[option.name] = value;
    }
    const result = command
      ? runCommand(this.core, command, ctx, args, (error) =>
          this.log.error({ error: describeError(error), command: interaction.commandName }, 'discord command failed'),
        )
      : this.core.help(ctx); // a command from an older registration that this version no longer has
    const [first = result.text, ...rest] = splitMessage(result.text, DISCORD_MAX_CONTENT);
    await interaction.reply({ content: first, flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
    // Continuations are message sends like any other: through the channel's lane (rate limits).
    const lane = this.lanes.forChat(interaction.channelId);
    for (const chunk of rest) {
      await lane.final(undefined, () =>
        interaction.followUp({ content: chunk, flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } }),
      );
    }
  }

  // ------------------------------------------------------------------ mention mode

  private onMessage(message: Message): void {
    if (this.stopped || message.author.bot || message.webhookId || message.system) return;
    const client = this.client;
    if (!client?.user) return;
    const botId = client.user.id;
    const referenced = message.reference?.messageId;
    const repliesToBot =
      referenced !== undefined &&
      (this.answerIds.has(referenced) ||
        message.mentions.repliedUser?.id === botId ||
        message.channel.messages.cache.get(referenced)?.author.id === botId);
    const inDm = !message.inGuild();
    if (!inDm && !repliesToBot && !message.mentions.users.has(botId)) return;

    const locale = this.locales.get(message.author.id);
    const request: BotRequest = {
      user: this.userOf(message.author, locale),
      chat: chatOf(message.channelId, message.guildId),
      messageId: message.id,
    };
    if (locale) request.locale = locale;
    const question = stripMention(message.content, botId);
    if (question) request.question = question;
    // every picture and clip of the message; replying to a known answer, they join its conversation
    const attachments = pickAttachments(message.attachments.values());
    if (attachments.length > 0) request.images = attachments.map(attachmentImageSource);
    if (referenced) {
      request.replyToMessageId = referenced;
      // discord.js caches the replied-to message from the event; its pictures are asked about when
      // the core does not know that message (a reply to someone's photo).
      const replied = pickAttachments(message.channel.messages.cache.get(referenced)?.attachments.values() ?? []);
      if (replied.length > 0) request.replyImages = replied.map(attachmentImageSource);
    }
    const surface = new ChannelSurface(client.rest, message.channelId, { replyTo: message.id });
    this.ask(request, surface, message.channelId, message.author.id);
  }

  /** Deleting the message that asked cancels the request (mention mode). */
  private onMessageDelete(message: Message | PartialMessage): void {
    const result = this.core.cancelByMessage(chatOf(message.channelId, message.guildId), message.id);
    if (result.ok) this.log.info({ messageId: message.id }, 'discord request cancelled: its message was deleted');
  }

  // ------------------------------------------------------------------ shared

  private ask(request: BotRequest, surface: AnswerSurface, channelId: string, userId: string): AskTicket {
    const rest = this.client!.rest;
    const answer = new DiscordAnswer({
      lane: this.lanes.forChat(channelId),
      surface,
      channelFallback: () => new ChannelSurface(rest, channelId, { mentionUserId: userId }),
      handoffMarginMs: this.handoffMarginMs,
      logger: this.log,
    });
    const ticket = this.core.ask(request, answer);
    answer.bind(ticket);
    void ticket.done.then((outcome) => {
      for (const id of outcome.messageIds) this.remember(this.answerIds, id);
      this.log.info(
        { requestId: ticket.requestId, status: outcome.status, code: outcome.code, messages: outcome.messageIds.length },
        'discord request done',
      );
    });
    return ticket;
  }

  private userOf(user: User, locale?: string): BotUser {
    const botUser: BotUser = { platform: 'discord', id: user.id, displayName: user.username };
    if (locale) botUser.languageCode = locale;
    return botUser;
  }

  private remember(store: Map<string, string> | Set<string>, key: string, value?: string): void {
    if (store instanceof Map) {
      store.delete(key);
      store.set(key, value!);
    } else {
      store.delete(key);
      store.add(key);
    }
    if (store.size > REMEMBERED) {
      const oldest = store.keys().next().value;
      if (oldest !== undefined) store.delete(oldest);
    }
  }
}

function chatOf(channelId: string, guildId: string | null): BotChat {
  const chat: BotChat = { platform: 'discord', id: channelId, kind: guildId ? 'group' : 'private' };
  if (guildId) chat.guildId = guildId;
  return chat;
}

/** The question in a mention: the text without the bot's mention(s). */
export function stripMention(content: string, botId: string): string {
  return content.replace(new RegExp(`<@!?${botId}>`, 'g'), ' ').replace(/\s+/g, ' ').trim();
}

function loginError(error: unknown): VistyleError {
  const detail = describeError(error);
  const code = (error as { code?: unknown }).code;
  const status = (error as { status?: unknown }).status;
  if (code === 'TokenInvalid' || status === 401 || code === 4004) {
    return new VistyleError('CONFIG_INVALID', 'Discord rejected DISCORD_TOKEN (check the bot token in the Developer Portal)', {
      details: detail,
    });
  }
  if (code === 'DisallowedIntents' || /disallowed intents/i.test(String((error as Error)?.message))) {
    return new VistyleError(
      'CONFIG_INVALID',
      'Discord refused the Message Content intent: enable it for the bot in the Developer Portal, or turn DISCORD_MENTION_MODE off',
      { details: detail },
    );
  }
  return new VistyleError('NETWORK', 'could not connect to Discord', { details: detail });
}

/** A short, log-safe text for an error (status().lastError, outage log lines). */
function errorText(error: unknown): string {
  const fields = describeError(error);
  const code = fields.code !== undefined ? `${String(fields.code)}: ` : '';
  return redactSecrets(`${code}${String(fields.message ?? fields.type ?? 'unknown error')}`).slice(0, 300);
}
