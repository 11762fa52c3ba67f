// Where an answer is shown. An interaction surface edits the reply of a slash command or context
// menu (and posts follow-ups) through the interaction token, which Discord accepts for 15 minutes.
// A channel surface posts and edits a normal bot message: mention-mode answers, and answers that
// outlive their interaction token.
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

  /** `deferred` settles once the deferral was accepted; every write waits for it. */
  constructor(
    private readonly interaction: AnswerInteraction,
    private readonly deferred: Promise<unknown>,
    tokenLifetimeMs: number,
  ) {
    this.usableUntil = interaction.createdTimestamp + tokenLifetimeMs;
  }

  async show(content: string, components: ActionRow[]): Promise<string> {
    await this.deferred;
    try {
      const message = await this.interaction.editReply({ content, components, allowedMentions: NO_PINGS, message: this.target });
      return message.id;
    } catch (error) {
      if (!isUnknownMessage(error)) throw error;
      // Someone deleted the reply: carry on in a follow-up (public too), edited from now on.
      const message = await this.interaction.followUp({ content, components, allowedMentions: NO_PINGS });
      this.target = message.id;
      return message.id;
    }
  }

  async append(content: string): Promise<string> {
    await this.deferred;
    const message = await this.interaction.followUp({ content, allowedMentions: NO_PINGS });
    return message.id;
  }

  /** The refusal goes to the asker alone; the public "thinking…" placeholder is removed. */
  async refuse(content: string): Promise<string[]> {
    await this.deferred;
    const message = await this.interaction.followUp({ content, flags: MessageFlags.Ephemeral, allowedMentions: NO_PINGS });
    await this.interaction.deleteReply().catch(() => undefined);
    return [message.id];
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
