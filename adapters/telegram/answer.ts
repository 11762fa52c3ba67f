// Renders one answer in a Telegram chat (the AnswerSink the core drives):
// - a status message replying to the user's message, with a Cancel button, shows the queue
//   position (edited as the queue moves) and then "thinking";
// - while the model writes, `typing` is re-sent every ~4.5 s and the text so far is streamed:
//   through sendMessageDraft in private chats when the Bot API has it, else by editing the status
//   message; every send goes through the chat's EditScheduler lane (1/s private, 1 per 3 s in
//   groups, backing off after 429s and waiting their retry_after);
//   the lanes also share the bot-wide limit (GlobalPacer, ~30 text calls a second);
// - the final text is split at 4096 characters on paragraph boundaries, formatted as HTML (plain
//   text again if Telegram rejects the entities), and replaces the status message (edits) or
//   follows it as new messages (drafts, which Telegram wants persisted by sendMessage).
// Every text (status lines, the Cancel label, the answer, a failure) comes finished from the core.
import type { Telegram } from 'telegraf';
import type { InlineKeyboardMarkup, Message } from 'telegraf/types';
import type { EditScheduler } from '../shared/edit-scheduler.js';
import { splitMessage } from '../shared/split-message.js';
import type { AnswerSink, StatusText } from '../../src/bot/types.js';
import type { ErrorCode } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import { apiErrorFields, isApiError, retryAfterMs } from './api-errors.js';
import { escapeHtml, markdownToTelegramHtml } from './format.js';

export const TELEGRAM_TEXT_LIMIT = 4096;

/** Shared by every answer of an adapter: whether this Bot API knows sendMessageDraft. */
export interface DraftSupport {
  enabled: boolean;
}

export interface TelegramAnswerOptions {
  telegram: Telegram;
  lane: EditScheduler;
  chatId: number;
  isPrivate: boolean;
  /** The user's message this answer replies to. */
  replyToMessageId?: number;
  /** callback_data of this request's Cancel button. */
  cancelData: string;
  drafts: DraftSupport;
  draftId: number;
  typingIntervalMs: number;
  logger: Logger;
}

interface RawApi {
  callApi(method: string, payload: Record<string, unknown>): Promise<unknown>;
}

export class TelegramAnswer implements AnswerSink {
  private statusMessageId: number | undefined;
  private statusCreating: Promise<void> | undefined;
  private typingTimer: NodeJS.Timeout | undefined;
  private streamedByDraft = false;
  private ended = false;
  /** The Cancel button's label, as the core's status texts give it. */
  private cancelLabel = '✕';
  private readonly statusKey: string;
  private readonly draftKey: string;

  constructor(private readonly o: TelegramAnswerOptions) {
    this.statusKey = `status:${o.draftId}`;
    this.draftKey = `draft:${o.draftId}`;
  }

  /** The request ended: stop typing (also called by the adapter on shutdown). */
  end(): void {
    this.ended = true;
    if (this.typingTimer) clearInterval(this.typingTimer);
    this.typingTimer = undefined;
  }

  queued(_position: number, status: StatusText): void {
    this.cancelLabel = status.cancelLabel;
    this.showStatus(status.text);
  }

  started(status: StatusText): void {
    this.cancelLabel = status.cancelLabel;
    this.showStatus(status.text);
    this.startTyping();
  }

  progress(textSoFar: string): void {
    const text = streamingText(textSoFar);
    if (text === '') return;
    if (this.o.isPrivate && this.o.drafts.enabled) {
      this.o.lane.update(this.draftKey, text, (latest) => this.sendDraftOrEdit(latest));
      return;
    }
    this.o.lane.update(this.statusKey, text, (latest) => this.editStatus(latest));
  }

  async finished(text: string): Promise<{ messageIds: string[] }> {
    this.end();
    // never blank (the core guarantees it), so there is at least one chunk
    const chunks = splitMessage(text, TELEGRAM_TEXT_LIMIT);
    // a draft still waiting would only flash up after the real answer
    this.o.lane.forget(this.draftKey);
    await this.statusCreating;
    const ids: number[] = [];
    const [first, ...rest] = chunks as [string, ...string[]];
    if (this.statusMessageId !== undefined && !this.streamedByDraft) {
      const statusId = this.statusMessageId;
      ids.push(await this.o.lane.final(this.statusKey, () => this.editFinal(statusId, first)));
    } else {
      ids.push(await this.o.lane.final(this.statusKey, () => this.sendFinal(first)));
      if (this.statusMessageId !== undefined) this.deleteStatus(this.statusMessageId);
    }
    for (const chunk of rest) ids.push(await this.o.lane.final(undefined, () => this.sendFinal(chunk)));
    return { messageIds: ids.map(String) };
  }

  async failed(userMessage: string, code: ErrorCode): Promise<void> {
    this.end();
    this.o.lane.forget(this.draftKey);
    await this.statusCreating;
    const statusId = this.statusMessageId;
    try {
      if (statusId !== undefined) {
        await this.o.lane.final(this.statusKey, async () => {
          try {
            await this.o.telegram.editMessageText(this.o.chatId, statusId, undefined, userMessage);
          } catch (error) {
            if (isApiError(error, 400, /not modified/)) return;
            if (!isApiError(error, 400, /not found|can't be edited/)) throw error;
            await this.sendPlain(userMessage);
          }
        });
      } else {
        await this.o.lane.final(this.statusKey, () => this.sendPlain(userMessage));
      }
    } catch (error) {
      this.o.logger.warn({ ...apiErrorFields(error, 'sendMessage', this.o.chatId), failure: code }, 'could not tell the user why the request failed');
    }
  }

  // ------------------------------------------------------------------ status message

  private cancelKeyboard(): InlineKeyboardMarkup {
    return { inline_keyboard: [[{ text: this.cancelLabel, callback_data: this.o.cancelData }]] };
  }

  /** Creates the status message once; later texts edit it (coalesced by the lane). */
  private showStatus(text: string): void {
    if (this.ended) return;
    if (this.statusMessageId === undefined && this.statusCreating === undefined) {
      this.statusCreating = this.o.lane
        .final(undefined, async () => {
          const sent = await this.o.telegram.sendMessage(this.o.chatId, text, { reply_markup: this.cancelKeyboard(), ...this.replyParameters() });
          this.statusMessageId = sent.message_id;
        })
        .catch((error: unknown) => {
          this.o.logger.warn(apiErrorFields(error, 'sendMessage', this.o.chatId), 'could not send the status message');
        });
      return;
    }
    this.o.lane.update(this.statusKey, text, (latest) => this.editStatus(latest));
  }

  private async editStatus(text: string): Promise<void> {
    if (this.statusMessageId === undefined || this.ended) return;
    try {
      await this.o.telegram.editMessageText(this.o.chatId, this.statusMessageId, undefined, text, { reply_markup: this.cancelKeyboard() });
    } catch (error) {
      if (isApiError(error, 400, /not modified/)) return;
      throw error;
    }
  }

  private deleteStatus(messageId: number): void {
    void this.o.telegram.deleteMessage(this.o.chatId, messageId).catch((error: unknown) => {
      this.o.logger.debug(apiErrorFields(error, 'deleteMessage', this.o.chatId), 'could not delete the status message');
    });
  }

  // ------------------------------------------------------------------ streaming

  private async sendDraftOrEdit(text: string): Promise<void> {
    if (this.ended) return;
    if (this.o.drafts.enabled) {
      try {
        await (this.o.telegram as unknown as RawApi).callApi('sendMessageDraft', { chat_id: this.o.chatId, draft_id: this.o.draftId, text });
        this.streamedByDraft = true;
        return;
      } catch (error) {
        if (retryAfterMs(error) !== undefined) throw error;
        // This chat refuses the bot (blocked, kicked): says nothing about drafts for other chats.
        if (isApiError(error, 403)) throw error;
        // An older Bot API (or one that refuses drafts for this bot): stream by edits from now on.
        this.o.drafts.enabled = false;
        this.o.logger.info(apiErrorFields(error, 'sendMessageDraft', this.o.chatId), 'sendMessageDraft unavailable; streaming by message edits');
      }
    }
    await this.editStatus(text);
  }

  private startTyping(): void {
    if (this.typingTimer || this.ended) return;
    const send = () => {
      void this.o.telegram.sendChatAction(this.o.chatId, 'typing').catch((error: unknown) => {
        this.o.logger.debug(apiErrorFields(error, 'sendChatAction', this.o.chatId), 'typing indicator failed');
      });
    };
    send();
    this.typingTimer = setInterval(send, this.o.typingIntervalMs);
    this.typingTimer.unref();
  }

  // ------------------------------------------------------------------ final text

  private async editFinal(messageId: number, chunk: string): Promise<number> {
    const html = markdownToTelegramHtml(chunk);
    const formatted = html !== escapeHtml(chunk);
    try {
      await this.o.telegram.editMessageText(this.o.chatId, messageId, undefined, formatted ? html : chunk, formatted ? { parse_mode: 'HTML' } : {});
      return messageId;
    } catch (error) {
      if (isApiError(error, 400, /not modified/)) return messageId;
      if (formatted && isApiError(error, 400, /can't parse entities/)) {
        this.o.logger.info({ chatId: this.o.chatId }, 'Telegram rejected the formatting; sending plain text');
        try {
          await this.o.telegram.editMessageText(this.o.chatId, messageId, undefined, chunk);
          return messageId;
        } catch (plainError) {
          if (isApiError(plainError, 400, /not modified/)) return messageId;
          if (!isApiError(plainError, 400, /not found|can't be edited/)) throw plainError;
        }
      } else if (!isApiError(error, 400, /not found|can't be edited/)) {
        throw error;
      }
      // the status message is gone (deleted by the user): send the answer as a new message
      return await this.sendFinal(chunk);
    }
  }

  private async sendFinal(chunk: string): Promise<number> {
    const html = markdownToTelegramHtml(chunk);
    if (html !== escapeHtml(chunk)) {
      try {
        const sent = await this.o.telegram.sendMessage(this.o.chatId, html, { parse_mode: 'HTML', ...this.replyParameters() });
        return sent.message_id;
      } catch (error) {
        if (!isApiError(error, 400, /can't parse entities/)) throw error;
        this.o.logger.info({ chatId: this.o.chatId }, 'Telegram rejected the formatting; sending plain text');
      }
    }
    return await this.sendPlain(chunk);
  }

  private async sendPlain(text: string): Promise<number> {
    const sent: Message.TextMessage = await this.o.telegram.sendMessage(this.o.chatId, text, this.replyParameters());
    return sent.message_id;
  }

  private replyParameters(): { reply_parameters?: { message_id: number; allow_sending_without_reply: boolean } } {
    return this.o.replyToMessageId === undefined
      ? {}
      : { reply_parameters: { message_id: this.o.replyToMessageId, allow_sending_without_reply: true } };
  }
}

/** What a streamed update shows: the text so far, cut to one message with an ellipsis. */
export function streamingText(textSoFar: string): string {
  const text = textSoFar.trim();
  if (text.length <= TELEGRAM_TEXT_LIMIT) return text;
  let cut = TELEGRAM_TEXT_LIMIT - 1;
  const code = text.charCodeAt(cut - 1);
  if (code >= 0xd800 && code <= 0xdbff) cut -= 1; // never split a surrogate pair
  return `${text.slice(0, cut)}…`;
}
