// Where an answer is shown. An interaction surface answers a slash command or the context menu
// through the interaction token: a refusal decided before the request is queued is the
// interaction's private (ephemeral) reply; an accepted request is deferred ("is thinking…") and
// that reply is edited with the queue position, the streamed text and the answer or the failure,
// for as long as Discord accepts the token (15 minutes). A channel surface posts and edits a
// normal bot message: mention-mode answers, and answers that outlive their interaction token.
// Nothing a user must read is ever deleted.
import {
  MessageFlags,
  Routes,
  type APIActionRowComponent,
  type APIComponentInMessageActionRow,
  type APIMessage,
  type ChatInputCommandInteraction,
  type MessageContextMenuCommandInteraction,
  type REST,
} from 'discord.js';
import { isUnknownMessage } from './errors.js';

export type ActionRow = APIActionRowComponent<APIComponentInMessageActionRow>;

export interface AnswerSurface {
  readonly kind: 'interaction' | 'channel';
  /** Epoch ms after which this surface can no longer be written. */
  readonly usableUntil: number;
  /** Characters of every shown message that the surface itself uses (a mention prefix). */
  readonly reserved: number;
  /** Show `content` in the one status/answer message; returns its id. */
  show(content: string, components: ActionRow[]): Promise<string>;
  /** Post a further message (the continuation of a long answer); returns its id. */
  append(content: string): Promise<string>;
  /** A request refused before it was queued: tell the asker (privately where possible). */
  refuse(content: string): Promise<string[]>;
}

const NO_PINGS = { parse: [] as never[] };

export type AnswerInteraction = ChatInputCommandInteraction | MessageContextMenuCommandInteraction;

export class InteractionSurface implements AnswerSurface {
  readonly kind = 'interaction' as const;
  readonly reserved = 0;
  readonly usableUntil: number;
  /** The message `show` edits: the reply, or the follow-up that replaced it once it was deleted. */
  private target = '@original';
  /** Settles once the deferral was sent (rejects when Discord refused it). */
  private deferral: Promise<void> | undefined;
  private replied = false;

  constructor(
    private readonly interaction: AnswerInteraction,
    tokenLifetimeMs: number,
  ) {
    this.usableUntil = interaction.createdTimestamp + tokenLifetimeMs;
  }

  /** Whether the interaction has been acknowledged (deferred or answered). */
  get acknowledged(): boolean {
    return this.deferral !== undefined || this.replied;
  }

  /**
   * Acknowledge with a public "is thinking…" reply (Discord wants the first response within
   * 3 s). Idempotent; every later write waits for it.
   */
  defer(): Promise<void> {
    this.deferral ??= this.interaction.deferReply().then(() => undefined);
    return this.deferral;
  }

  async show(content: string, components: ActionRow[]): Promise<string> {
    await this.defer();
    try {
      const message = await this.interaction.editReply({ content, components, allowedMentions: NO_PINGS, message: this.target });
      return message.id;
    } catch (error) {
      if (!isUnknownMessage(error)) throw error;
      // Someone deleted the reply: carry on in a follow-up (public too), edited from now on.
      // (Not the first follow-up after the deferral: that one would edit the deleted reply.)
      const message = await this.interaction.followUp({ content, components, allowedMentions: NO_PINGS });
      this.target = message.id;
      return message.id;
    }
  }

  async append(content: string): Promise<string> {
    await this.defer();
    const message = await this.interaction.followUp({ content, allowedMentions: NO_PINGS });
    return message.id;
  }

  /**
   * Refused before anything was acknowledged: the interaction's own reply, visible to the asker
   * only. Once deferred (the core took longer than the deferral's grace period), the refusal
   * edits the deferred reply instead: a follow-up would fill the deferred reply anyway, keeping
   * its public visibility, and deleting the reply would delete the refusal with it.
   */
  async refuse(content: string): Promise<string[]> {
    if (this.deferral) return [await this.show(content, [])];
    this.replied = true;
    const response = await this.interaction.reply({
      content,
      flags: MessageFlags.Ephemeral,
      allowedMentions: NO_PINGS,
      withResponse: true,
    });
    const id = response.resource?.message?.id;
    return id ? [id] : [];
  }
}

export class ChannelSurface implements AnswerSurface {
  readonly kind = 'channel' as const;
  readonly usableUntil = Number.POSITIVE_INFINITY;
  readonly reserved: number;
  private messageId: string | undefined;
  private readonly prefix: string;

  constructor(
    private readonly rest: REST,
    private readonly channelId: string,
    private readonly options: {
      /** Show the answer as a reply to this message (the user's mention). */
      replyTo?: string;
      /** Mention (and so notify) this user in the status/answer message. */
      mentionUserId?: string;
    } = {},
  ) {
    this.prefix = options.mentionUserId ? `<@${options.mentionUserId}> ` : '';
    this.reserved = this.prefix.length;
  }

  async show(content: string, components: ActionRow[]): Promise<string> {
    const mentions = { parse: [], users: this.options.mentionUserId ? [this.options.mentionUserId] : [], replied_user: false };
    if (this.messageId) {
      try {
        await this.rest.patch(Routes.channelMessage(this.channelId, this.messageId), {
          body: { content: this.prefix + content, components, allowed_mentions: mentions },
        });
        return this.messageId;
      } catch (error) {
        if (!isUnknownMessage(error)) throw error;
        this.messageId = undefined; // someone deleted it: post a new one below
      }
    }
    const body: Record<string, unknown> = { content: this.prefix + content, components, allowed_mentions: mentions };
    if (this.options.replyTo) body.message_reference = { message_id: this.options.replyTo, fail_if_not_exists: false };
    const message = (await this.rest.post(Routes.channelMessages(this.channelId), { body })) as APIMessage;
    this.messageId = message.id;
    return message.id;
  }

  async append(content: string): Promise<string> {
    const message = (await this.rest.post(Routes.channelMessages(this.channelId), {
      body: { content, allowed_mentions: { parse: [] } },
    })) as APIMessage;
    return message.id;
  }

  async refuse(content: string): Promise<string[]> {
    return [await this.show(content, [])];
  }
}
