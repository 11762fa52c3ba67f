// The Bot API objects the fake server hands out, in the shapes core.telegram.org documents.
// Only the fields vistyle (and telegraf) read are modelled; everything is plain JSON.
import type { FakeEntity } from './html.js';

export interface FakeUser {
  id: number;
  is_bot: boolean;
  first_name: string;
  last_name?: string;
  username?: string;
  language_code?: string;
}

export interface FakeChat {
  id: number;
  type: 'private' | 'group' | 'supergroup' | 'channel';
  title?: string;
  first_name?: string;
  username?: string;
}

export interface FakePhotoSize {
  file_id: string;
  file_unique_id: string;
  width: number;
  height: number;
  file_size?: number;
}

export interface FakeDocument {
  file_id: string;
  file_unique_id: string;
  file_name?: string;
  mime_type?: string;
  file_size?: number;
}

/** A GIF (Telegram turns it into an MP4 `animation`), a `video` or a round `video_note`. */
export interface FakeClip {
  file_id: string;
  file_unique_id: string;
  duration: number;
  /** animation and video */
  width?: number;
  height?: number;
  /** video_note: its diameter */
  length?: number;
  file_name?: string;
  mime_type?: string;
  file_size?: number;
}

export interface InlineKeyboardButton {
  text: string;
  callback_data?: string;
  url?: string;
}

export interface FakeReplyMarkup {
  inline_keyboard: InlineKeyboardButton[][];
}

export interface FakeMessage {
  message_id: number;
  date: number;
  chat: FakeChat;
  from?: FakeUser;
  text?: string;
  entities?: FakeEntity[];
  caption?: string;
  caption_entities?: FakeEntity[];
  photo?: FakePhotoSize[];
  document?: FakeDocument;
  animation?: FakeClip;
  video?: FakeClip;
  video_note?: FakeClip;
  media_group_id?: string;
  reply_to_message?: FakeMessage;
  reply_markup?: FakeReplyMarkup;
  edit_date?: number;
}

export interface FakeCallbackQuery {
  id: string;
  from: FakeUser;
  message?: FakeMessage;
  chat_instance: string;
  data?: string;
}

export interface FakeUpdate {
  update_id: number;
  message?: FakeMessage;
  callback_query?: FakeCallbackQuery;
}

export interface BotCommand {
  command: string;
  description: string;
}

export interface BotCommandScope {
  type: string;
  chat_id?: number | string;
  user_id?: number;
}

export interface ApiFailure {
  error_code: number;
  description: string;
  retry_after?: number;
  migrate_to_chat_id?: number;
}

/** One request the bot made, as the fake server answered it. */
export interface RecordedCall {
  method: string;
  params: Record<string, unknown>;
  /** performance.now() when the request arrived. */
  at: number;
  ok: boolean;
  result?: unknown;
  error?: ApiFailure;
  /** How the body was encoded. */
  encoding: 'json' | 'multipart' | 'urlencoded' | 'query' | 'none';
}

/** A message the bot sent, with everything that happened to it since. */
export interface BotMessageState {
  chatId: number;
  messageId: number;
  /** The text a user sees now (entities parsed). */
  text: string;
  /** The text as the bot sent it (before parse_mode). */
  rawText: string;
  parseMode?: string;
  entities: FakeEntity[];
  replyMarkup?: FakeReplyMarkup;
  replyToMessageId?: number;
  deleted: boolean;
  /** Every version of the text, the first being the one sendMessage created. */
  history: { text: string; at: number }[];
}
