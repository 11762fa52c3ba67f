// The Discord adapter: discord.js events in, BotCore calls out, answers rendered back. Thin by
// design: limits, queueing, styles, conversations and strings live in the core (src/bot); this
// file maps slash commands, the "Ask about this image" context menu, mentions (mention mode),
// Cancel buttons and message deletions onto it.
import {
  Events,
  MessageFlags,
  type ButtonInteraction,
  type ChatInputCommandInteraction,
  type Client,
  type Interaction,
  type Message,
  type MessageContextMenuCommandInteraction,
  type PartialMessage,
  type User,
} from 'discord.js';
import { EditSchedulers } from '../shared/edit-scheduler.js';
import { splitMessage } from '../shared/split-message.js';
import type {
  AskTicket,
  BotChat,
  BotCore,
  BotRequest,
  BotUser,
  CommandContext,
  CommandResult,
  DiscordAdapterOptions,
  PlatformAdapter,
} from '../../src/bot/types.js';
import { VistyleError } from '../../src/errors.js';
import { registerSecret, type Logger } from '../../src/log.js';
import type { StyleRegistry } from '../../src/styles/types.js';
import { CANCEL_PREFIX, DISCORD_MAX_CONTENT, DiscordAnswer } from './answer.js';
import { createDiscordClient } from './client.js';
import { buildCommandDefinitions, CommandName, syncCommands, type StyleChoice } from './commands.js';
import { describeError, retryAfterMs } from './errors.js';
import { attachmentImageSource, pickAttachment } from './image-source.js';
import { discordText } from './strings.js';
import { ChannelSurface, InteractionSurface, type AnswerSurface } from './surfaces.js';

export { buildCommandDefinitions, CommandName, syncCommands } from './commands.js';
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
}

export type DiscordAdapterConfig = DiscordAdapterOptions & DiscordAdapterExtras;

const DEFAULT_TOKEN_LIFETIME_MS = 15 * 60_000;
const DEFAULT_HANDOFF_MARGIN_MS = 60_000;
const REMEMBERED = 10_000;

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

  constructor(private readonly options: DiscordAdapterConfig) {
    registerSecret(options.token);
    this.core = options.core;
    this.log = options.logger.child({ module: 'discord' });
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
    this.starting ??= this.connect();
    return this.starting;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.unsubscribeStyles?.();
    this.lanes.closeAll();
    const client = this.client;
    this.client = null;
    if (client) await client.destroy().catch((error: unknown) => this.log.warn({ error: describeError(error) }, 'discord client destroy failed'));
    this.log.info('discord adapter stopped');
  }

  private async connect(): Promise<void> {
    const client = createDiscordClient({
      apiRoot: this.options.apiRoot,
      gatewayUrl: this.options.gatewayUrl,
      mentionMode: this.options.mentionMode,
    });
    this.client = client;
    this.attachPlatformLogging(client);
    client.on(Events.InteractionCreate, (interaction) => this.guard('interaction', () => this.onInteraction(interaction)));
    if (this.options.mentionMode) {
      client.on(Events.MessageCreate, (message) => this.guard('message', () => this.onMessage(message)));
      client.on(Events.MessageDelete, (message) => this.guard('message delete', () => this.onMessageDelete(message)));
    }

    const ready = new Promise<Client<true>>((resolve) => client.once(Events.ClientReady, resolve));
    try {
      await client.login(this.options.token);
    } catch (error) {
      this.client = null;
      await client.destroy().catch(() => undefined);
      throw loginError(error);
    }
    const readyClient = await ready;
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

  private attachPlatformLogging(client: Client): void {
    client.on(Events.Error, (error) => this.log.error({ error: describeError(error) }, 'discord client error'));
    client.on(Events.Warn, (message) => this.log.warn({ detail: message }, 'discord client warning'));
    client.on(Events.ShardError, (error, shardId) => this.log.error({ error: describeError(error), shardId }, 'discord gateway error'));
    client.on(Events.ShardDisconnect, (event, shardId) => this.log.warn({ code: event.code, shardId }, 'discord gateway disconnected'));
    client.on(Events.ShardReconnecting, (shardId) => this.log.info({ shardId }, 'discord gateway reconnecting'));
    client.on(Events.ShardResume, (shardId, replayed) => this.log.info({ shardId, replayed }, 'discord gateway resumed'));
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
      if (interaction.commandName === CommandName.Ask) return this.onAsk(interaction);
      return this.onSettingsCommand(interaction);
    }
    if (interaction.isMessageContextMenuCommand() && interaction.commandName === CommandName.AskAboutImage) {
      return this.onAskAboutImage(interaction);
    }
    if (interaction.isButton() && interaction.customId.startsWith(CANCEL_PREFIX)) return this.onCancel(interaction);
    this.log.debug({ type: interaction.type }, 'discord interaction ignored');
  }

  /** `/ask image:<attachment> question:<text> style:<choice>`. */
  private async onAsk(interaction: ChatInputCommandInteraction): Promise<void> {
    // The first response is due within 3 s: defer before anything else.
    await interaction.deferReply();
    const attachment = interaction.options.getAttachment('image');
    const request: BotRequest = {
      user: this.userOf(interaction.user, interaction.locale),
      chat: chatOf(interaction.channelId, interaction.guildId),
      locale: interaction.locale,
    };
    const question = interaction.options.getString('question')?.trim();
    if (question) request.question = question;
    const style = interaction.options.getString('style');
    if (style) request.style = style;
    if (attachment) request.image = attachmentImageSource(attachment);
    this.ask(request, this.interactionSurface(interaction), interaction.channelId, interaction.user.id);
  }

  /** The message context menu: ask the style's default question about the message's picture. */
  private async onAskAboutImage(interaction: MessageContextMenuCommandInteraction): Promise<void> {
    await interaction.deferReply();
    const target = interaction.targetMessage;
    const attachment = pickAttachment(target.attachments.values());
    const request: BotRequest = {
      user: this.userOf(interaction.user, interaction.locale),
      chat: chatOf(interaction.channelId, interaction.guildId),
      locale: interaction.locale,
    };
    if (attachment) {
      request.image = attachmentImageSource(attachment);
      request.messageId = target.id;
    } else {
      // No picture here: a follow-up on the conversation this message belongs to (the bot's answer).
      request.replyToMessageId = target.id;
    }
    this.ask(request, this.interactionSurface(interaction), interaction.channelId, interaction.user.id);
  }

  private interactionSurface(interaction: ChatInputCommandInteraction | MessageContextMenuCommandInteraction): AnswerSurface {
    return new InteractionSurface(interaction, Promise.resolve(), this.tokenLifetimeMs);
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

  /** `/style`, `/styles`, `/help`, `/reset`, `/queue`, `/reload`: answered privately (ephemeral). */
  private async onSettingsCommand(interaction: ChatInputCommandInteraction): Promise<void> {
    const ctx: CommandContext = {
      user: this.userOf(interaction.user, interaction.locale),
      chat: chatOf(interaction.channelId, interaction.guildId),
      locale: interaction.locale,
    };
    let result: CommandResult;
    try {
      result = this.runCommand(interaction, ctx);
    } catch (error) {
      this.log.error({ error: describeError(error), command: interaction.commandName }, 'discord command failed');
      result = { ok: false, text: discordText(this.core.languageOf(ctx.user, ctx.locale), 'commandFailed') };
    }
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

  private runCommand(interaction: ChatInputCommandInteraction, ctx: CommandContext): CommandResult {
    switch (interaction.commandName) {
      case CommandName.Style: {
        const name = interaction.options.getString('name')?.trim();
        return name ? this.core.setStyle(ctx, name) : this.core.showStyle(ctx);
      }
      case CommandName.Styles:
        return this.core.listStyles(ctx);
      case CommandName.Reset:
        return this.core.reset(ctx);
      case CommandName.Queue:
        return this.core.queueStatus(ctx);
      case CommandName.Reload:
        return this.core.reloadStyles(ctx);
      case CommandName.Help:
      default:
        // Help also answers commands from an older registration that this version no longer has.
        return this.core.help(ctx);
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
    const attachment = pickAttachment(message.attachments.values());
    if (attachment) request.image = attachmentImageSource(attachment);
    if (referenced) {
      request.replyToMessageId = referenced;
      // discord.js caches the replied-to message from the event; its picture is asked about when
      // the core does not know that message (a reply to someone's photo).
      const repliedAttachment = pickAttachment(message.channel.messages.cache.get(referenced)?.attachments.values() ?? []);
      if (repliedAttachment) request.replyImage = attachmentImageSource(repliedAttachment);
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
    const lang = this.core.languageOf(request.user, request.locale);
    const rest = this.client!.rest;
    const answer = new DiscordAnswer({
      lane: this.lanes.forChat(channelId),
      surface,
      channelFallback: () => new ChannelSurface(rest, channelId, { mentionUserId: userId }),
      handoffMarginMs: this.handoffMarginMs,
      lang,
      t: this.core.t,
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
