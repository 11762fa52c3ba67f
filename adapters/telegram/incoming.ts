// What an incoming Telegram message means for the bot: a command (ours, or another bot's), the
// question text without the command and without mentions of the bot, and whether the bot is
// addressed at all. In private chats every message is; in groups only a mention, a reply to one of
// the bot's messages, or a command (bare `/ask` or `/ask@this_bot`, never `/ask@other_bot`).
import type { Message, MessageEntity } from 'telegraf/types';

export interface BotIdentity {
  id: number;
  username: string;
}

export interface IncomingText {
  /** Lower-case command name without "/" and "@bot", when the message starts with one of ours. */
  command?: string;
  /** The text after the command, or the whole text/caption, with mentions of the bot removed. */
  question: string;
  /** The bot should act on this message. */
  addressed: boolean;
  /** A command addressed to another bot (`/ask@other_bot`): never ours, even in private chats. */
  otherBot: boolean;
}

type AnyMessage = Message & {
  text?: string;
  caption?: string;
  entities?: MessageEntity[];
  caption_entities?: MessageEntity[];
  reply_to_message?: Message;
};

export function readIncoming(message: Message, bot: BotIdentity, isPrivate: boolean): IncomingText {
  const m = message as AnyMessage;
  const text = m.text ?? m.caption ?? '';
  const entities = (m.text !== undefined ? m.entities : m.caption_entities) ?? [];
  const username = bot.username.toLowerCase();

  let command: string | undefined;
  let otherBot = false;
  let bodyStart = 0;
  const first = entities.find((entity) => entity.type === 'bot_command' && entity.offset === 0);
  if (first) {
    const [name = '', target] = text.slice(1, first.length).split('@');
    if (target !== undefined && target.toLowerCase() !== username) otherBot = true;
    else command = name.toLowerCase();
    bodyStart = first.length;
  }

  // Cut the bot's own mentions out of the question (right to left keeps offsets valid).
  let mentioned = false;
  let body = text;
  const ours = entities
    .filter(
      (entity) =>
        (entity.type === 'mention' && text.slice(entity.offset + 1, entity.offset + entity.length).toLowerCase() === username) ||
        (entity.type === 'text_mention' && 'user' in entity && entity.user.id === bot.id),
    )
    .sort((a, b) => b.offset - a.offset);
  for (const entity of ours) {
    mentioned = true;
    if (entity.type === 'mention' && entity.offset >= bodyStart) {
      body = body.slice(0, entity.offset) + body.slice(entity.offset + entity.length);
    }
  }
  const question = body.slice(bodyStart).replace(/[ \t]{2,}/g, ' ').trim();
  const repliedToBot = m.reply_to_message?.from?.id === bot.id;
  const addressed = !otherBot && (isPrivate || command !== undefined || mentioned || repliedToBot);
  const result: IncomingText = { question, addressed, otherBot };
  if (command !== undefined) result.command = command;
  return result;
}
