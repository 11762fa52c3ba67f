// The AnswerSink for one Discord request. Status (queue position, "thinking…") and the streamed
// text go into one message through the channel's edit lane (at most about one edit a second per
// channel, rate limits waited out there); the final answer is split at 2000 characters into that
// message plus follow-ups. A request the core refuses up front gets the surface's refusal (for an
// interaction: a private reply, before anything was deferred); a later failure replaces the status
// message. An interaction reply is handed over to a channel message shortly before its token
// expires (or as soon as Discord says the token is dead), so a long queue still ends in a
// delivered answer. Every text comes finished from the core; only the handoff notice is ours.
import { ButtonStyle, ComponentType } from 'discord.js';
import type { EditScheduler } from '../shared/edit-scheduler.js';
import { splitMessage } from '../shared/split-message.js';
import type { AnswerSink, AskTicket, FailureContext, Language, StatusText } from '../../src/bot/types.js';
import type { ErrorCode } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { describeError, isDeadInteractionToken, retryAfterMs } from './errors.js';
import { discordText } from './strings.js';
import type { ActionRow, AnswerSurface } from './surfaces.js';

/** Discord's limit on a message's content. */
export const DISCORD_MAX_CONTENT = 2000;

export const CANCEL_PREFIX = 'vistyle:cancel:';

export interface DiscordAnswerOptions {
  lane: EditScheduler;
  surface: AnswerSurface;
  /** A channel surface to continue on when the interaction token runs out. */
  channelFallback: () => AnswerSurface;
  /** Hand over this long before the surface's token expires. */
  handoffMarginMs: number;
  logger: Logger;
}

type Phase = 'new' | 'waiting' | 'done';

export class DiscordAnswer implements AnswerSink {
  private surface: AnswerSurface;
  private key: string;
  private keySeq = 0;
  private phase: Phase = 'new';
  private requestId = '';
  private lastStatus = '';
  private cancelLabel = '✕';
  private language: Language = 'en';
  private handoffTimer: NodeJS.Timeout | undefined;

  constructor(private readonly options: DiscordAnswerOptions) {
    this.surface = options.surface;
    this.key = this.nextKey();
  }

  /** Call with the ticket `core.ask` returned: enables the Cancel button and the handoff timer. */
  bind(ticket: AskTicket): void {
    this.requestId = ticket.requestId;
    this.language = ticket.language;
    this.key = this.nextKey();
    if (Number.isFinite(this.surface.usableUntil) && this.phase !== 'done') {
      const delay = Math.max(0, this.surface.usableUntil - this.options.handoffMarginMs - Date.now());
      this.handoffTimer = setTimeout(() => this.handOff(true), delay);
      this.handoffTimer.unref();
    }
  }

  queued(_position: number, status: StatusText): void {
    this.phase = 'waiting';
    this.cancelLabel = status.cancelLabel;
    this.status(status.text);
  }

  started(status: StatusText): void {
    this.phase = 'waiting';
    this.cancelLabel = status.cancelLabel;
    this.status(status.text);
  }

  progress(textSoFar: string): void {
    this.phase = 'waiting';
    this.status(this.preview(textSoFar));
  }

  async finished(text: string): Promise<{ messageIds: string[] }> {
    this.end();
    const chunks = splitMessage(text, DISCORD_MAX_CONTENT - this.surface.reserved);
    const messageIds: string[] = [];
    messageIds.push(await this.deliver(this.key, (surface) => surface.show(chunks[0] ?? text, [])));
    for (const chunk of chunks.slice(1)) {
      messageIds.push(await this.deliver(undefined, (surface) => surface.append(chunk)));
    }
    return { messageIds };
  }

  async failed(userMessage: string, code: ErrorCode, context: FailureContext): Promise<void> {
    this.end();
    this.options.logger.debug({ requestId: this.requestId || undefined, code, refused: context.refused }, 'discord request ended without an answer');
    if (context.refused) {
      await this.deliver(this.key, (surface) => surface.refuse(userMessage));
      return;
    }
    // The status message (the deferred reply) becomes the failure: the user reads why.
    await this.deliver(this.key, (surface) => surface.show(userMessage, []));
  }

  private end(): void {
    this.phase = 'done';
    if (this.handoffTimer) clearTimeout(this.handoffTimer);
    this.handoffTimer = undefined;
    if (this.tokenRunningOut()) this.handOff(true);
  }

  /** A streamed status or partial answer: best effort, coalesced by the lane. */
  private status(text: string): void {
    this.lastStatus = text;
    if (this.tokenRunningOut()) this.handOff(true);
    const surface = this.surface;
    this.options.lane.update(this.key, text, async (latest) => {
      try {
        await surface.show(latest, this.cancelRow());
      } catch (error) {
        if (retryAfterMs(error) !== undefined) throw error; // the lane waits it out and retries
        if (surface === this.surface && surface.kind === 'interaction' && isDeadInteractionToken(error)) {
          this.handOff(false); // re-shows the latest status on the channel message
          return;
        }
        // Logged here, secret-free (webhook URLs carry the interaction token); the next status or
        // the final answer carries newer text.
        this.options.logger.warn(
          { requestId: this.requestId || undefined, error: describeError(error) },
          'discord status edit failed',
        );
      }
    });
  }

  /** A must-deliver write; moves to the channel and retries there if the interaction token died. */
  private async deliver<T>(key: string | undefined, op: (surface: AnswerSurface) => Promise<T>): Promise<T> {
    const surface = this.surface;
    try {
      return await this.options.lane.final(key, () => op(surface));
    } catch (error) {
      if (surface.kind !== 'interaction' || !isDeadInteractionToken(error)) throw error;
      this.options.logger.warn(
        { requestId: this.requestId || undefined, error: describeError(error) },
        'discord interaction token no longer valid; delivering in the channel',
      );
      if (this.surface === surface) this.handOff(false);
      return this.options.lane.final(key === undefined ? undefined : this.key, () => op(this.surface));
    }
  }

  private tokenRunningOut(): boolean {
    return this.surface.kind === 'interaction' && Date.now() >= this.surface.usableUntil - this.options.handoffMarginMs;
  }

  /**
   * Continue on a channel message. With `notify` (the token is about to expire), the interaction
   * reply says where the answer will appear, and the channel message appears with the next status
   * change; otherwise (the token already died) the current status moves to the channel at once.
   */
  private handOff(notify: boolean): void {
    if (this.surface.kind !== 'interaction') return;
    const old = this.surface;
    const oldKey = this.key;
    this.surface = this.options.channelFallback();
    this.key = this.nextKey();
    if (this.handoffTimer) clearTimeout(this.handoffTimer);
    this.handoffTimer = undefined;
    this.options.logger.info({ requestId: this.requestId || undefined }, 'discord answer moves to a channel message');
    if (notify) {
      const notice = discordText(this.language, 'movedToChannel');
      this.options.lane
        .final(oldKey, () => old.show(notice, []))
        .catch((error: unknown) =>
          this.options.logger.warn({ error: describeError(error) }, 'could not tell the user the answer moves to the channel'),
        );
    } else {
      this.options.lane.forget(oldKey);
      if (this.phase === 'waiting' && this.lastStatus) this.status(this.lastStatus);
    }
  }

  private cancelRow(): ActionRow[] {
    if (!this.requestId || this.phase === 'done') return [];
    return [
      {
        type: ComponentType.ActionRow,
        components: [
          {
            type: ComponentType.Button,
            style: ButtonStyle.Secondary,
            label: this.cancelLabel,
            custom_id: `${CANCEL_PREFIX}${this.requestId}`,
          },
        ],
      },
    ];
  }

  /** The partial answer, cut to fit one message while it streams (the final text is split instead). */
  private preview(text: string): string {
    const limit = DISCORD_MAX_CONTENT - this.surface.reserved;
    if (text.length <= limit) return text;
    return `${splitMessage(text, limit - 2)[0] ?? ''} …`;
  }

  private nextKey(): string {
    this.keySeq += 1;
    return `${this.requestId || 'pending'}:${this.keySeq}`;
  }
}
