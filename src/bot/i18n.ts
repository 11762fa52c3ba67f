// UI strings in Chinese and English. The language comes from the user's saved choice, else the
// platform's language code (Telegram `from.language_code`, Discord `interaction.locale`), else
// the configured default. Parameters are written `{name}` in the templates.
import type { ErrorCode } from '../errors.js';
import type { LocalizedText } from '../styles/types.js';
import type { Language, MessageKey, MessageParams } from './types.js';

const STRINGS: Record<Exclude<MessageKey, `error.${string}`>, LocalizedText> = {
  helpIntro: {
    en: [
      'Send me a picture (with or without a question) and I will answer in the chosen style.',
      'Reply to my answer or to your picture to ask a follow-up about the same picture.',
    ].join('\n'),
    zh: ['发一张图片给我（可以附带问题），我会用选定的风格回答。', '回复我的回答或你的图片，可以继续追问同一张图。'].join('\n'),
  },
  helpAdmins: { en: 'For bot admins:', zh: '机器人管理员：' },
  cancelButton: { en: 'Cancel', zh: '取消' },
  queued: { en: 'In the queue: you are number {position}.', zh: '排队中：你排在第 {position} 位。' },
  thinking: { en: 'Thinking…', zh: '思考中…' },
  emptyAnswer: { en: '(The model had nothing to say about this one. Try asking differently.)', zh: '（模型这次没有给出回答，换个问法试试。）' },
  styleCurrent: { en: 'Current style: {name} — {description} ({source})', zh: '当前风格：{name} — {description}（{source}）' },
  styleSetUser: { en: 'Your style is now {name}. It applies to you in every chat.', zh: '你的风格已设为「{name}」，在所有对话中生效。' },
  styleSetChat: { en: 'This chat’s style is now {name} (for everyone without a style of their own).', zh: '本群的风格已设为「{name}」（对没有自选风格的成员生效）。' },
  styleSourceUser: { en: 'your choice', zh: '你的选择' },
  styleSourceChat: { en: 'this chat’s default', zh: '本群默认' },
  styleSourceDefault: { en: 'default', zh: '默认' },
  styleSourceRequest: { en: 'this request', zh: '本次请求' },
  stylesHeader: { en: 'Styles:', zh: '可选风格：' },
  styleSampleLabel: { en: 'Sample', zh: '示例' },
  resetDone: { en: 'Done — I have forgotten this conversation.', zh: '好的，已忘掉本对话。' },
  resetNothing: { en: 'There was no conversation to forget.', zh: '当前没有需要忘掉的对话。' },
  languageSet: { en: 'I will speak English with you.', zh: '之后我会用中文和你交流。' },
  languageCurrent: {
    en: 'I speak English with you. Change it with /language zh (中文), /language en, or /language auto (your app’s language).',
    zh: '我现在用中文和你交流。可以用 /language en（English）、/language zh 或 /language auto（跟随客户端语言）更改。',
  },
  queueStatus: {
    en: 'Queue: {waiting} waiting (max {maxQueueLength}), {inFlight} running on {slots} slot(s), oldest wait {oldestWait}s.',
    zh: '队列：{waiting} 个等待（上限 {maxQueueLength}），{inFlight} 个正在处理（共 {slots} 个槽位），最久等待 {oldestWait} 秒。',
  },
  adminOnly: { en: 'Only bot admins can do that.', zh: '只有机器人管理员可以这样做。' },
  cancelNotYours: { en: 'Only the person who asked can cancel this.', zh: '只有提问的人可以取消。' },
  cancelUnknown: { en: 'That request has already finished.', zh: '这个请求已经结束了。' },
  cancelDone: { en: 'Cancelling…', zh: '正在取消…' },
  rateLimitedInFlight: {
    en: 'You already have a question in progress. Wait for the answer (or cancel it) before asking another.',
    zh: '你还有一个问题正在处理，请等它回答完（或取消）再问下一个。',
  },
  rateLimitedPerMinute: {
    en: 'You are asking a bit fast — please wait {seconds}s and try again.',
    zh: '你问得有点快了，请等 {seconds} 秒再试。',
  },
  // notices of the distributed queue (src/queue), shown as the answer's text for the moment
  answerRestarted: { en: 'The model server answering you stopped; starting your answer again on another one…', zh: '正在回答你的模型服务器停了，换一台重新开始回答…' },
  queueReconnecting: { en: 'The queue server is reconnecting; your request is kept and goes on in a moment…', zh: '队列服务器正在重连，你的请求仍在，稍后继续…' },
};

/** What the user is told for each error code; codes not listed fall back to INTERNAL. */
const ERRORS: Partial<Record<ErrorCode, LocalizedText>> = {
  IMAGE_UNSUPPORTED: { en: 'I can only look at pictures (JPEG, PNG, WebP or GIF).', zh: '我只能看图片（JPEG、PNG、WebP 或 GIF）。' },
  IMAGE_CORRUPT: { en: 'That picture seems to be damaged — I could not open it. Could you send it again?', zh: '这张图片好像损坏了，我打不开。能再发一次吗？' },
  IMAGE_TOO_LARGE: { en: 'That picture is too large for me (limit {limit}). Please send a smaller one.', zh: '这张图片太大了（上限 {limit}），请发一张小一点的。' },
  IMAGE_MISSING: { en: 'Send me a picture first, then ask about it.', zh: '请先发一张图片，再就它提问。' },
  QUESTION_EMPTY: { en: 'What would you like to know? Please add a question.', zh: '你想问什么？请附上问题。' },
  PROMPT_TOO_LONG: {
    en: 'That is too long for me to take in. Please ask a shorter question, or /reset to start afresh.',
    zh: '内容太长了，我装不下。请问短一点，或者用 /reset 重新开始。',
  },
  ENGINE_CRASHED: {
    en: 'Sorry — the model crashed while answering. It is restarting; please ask again in a moment.',
    zh: '抱歉，模型在回答时崩溃了，正在重启，请稍后再问一次。',
  },
  ENGINE_BUSY: { en: 'The model is busy right now. Please try again shortly.', zh: '模型正忙，请稍后再试。' },
  CANCELLED: { en: 'Cancelled.', zh: '已取消。' },
  TIMEOUT: { en: 'Sorry, that took too long and I gave up. Please try again.', zh: '抱歉，处理时间太长，已放弃。请再试一次。' },
  RATE_LIMITED: { en: 'You are asking a bit fast — please wait a moment and try again.', zh: '你问得有点快了，请稍等再试。' },
  QUEUE_FULL: { en: 'I am very busy right now ({waiting} questions waiting). Please try again in a few minutes.', zh: '我现在太忙了（已有 {waiting} 个问题在排队），请过几分钟再试。' },
  NOT_ALLOWED: { en: 'Sorry, this bot is not available here.', zh: '抱歉，此机器人在这里不可用。' },
  SHUTTING_DOWN: { en: 'The bot is restarting and cannot take this request. Please ask again in a minute.', zh: '机器人正在重启，无法处理这个请求，请过一分钟再问。' },
  STYLE_UNKNOWN: { en: 'There is no style called “{name}”. Available: {available}.', zh: '没有名为「{name}」的风格。可选：{available}。' },
  NETWORK: { en: 'I could not download that picture. Please send it again.', zh: '图片下载失败，请再发一次。' },
  STORE_UNAVAILABLE: {
    en: 'Sorry, I cannot save changes right now (the server’s storage is not taking writes). Nothing was changed; questions about pictures still work. Please try again later.',
    zh: '抱歉，现在无法保存更改（服务器存储暂时无法写入）。设置没有改变，看图问答仍然可用，请稍后再试。',
  },
  INTERNAL: { en: 'Sorry, something went wrong on my side. Please try again.', zh: '抱歉，我这边出了点问题，请再试一次。' },
};

/** The language of a platform language code (`zh`, `zh-CN`, `zh-hant`, `en-US`, ...), if supported. */
export function languageFromCode(code: string | undefined | null): Language | undefined {
  if (!code) return undefined;
  const base = code.trim().toLowerCase().split(/[-_]/)[0];
  if (base === 'zh' || base === 'yue') return 'zh';
  if (base === 'en') return 'en';
  return undefined;
}

/** Localised UI string; `{name}` placeholders are replaced by `params` (missing ones stay visible). */
export function t(lang: Language, key: MessageKey, params: MessageParams = {}): string {
  let template: LocalizedText | undefined;
  if (key.startsWith('error.')) {
    const code = key.slice('error.'.length) as ErrorCode;
    template = ERRORS[code] ?? ERRORS.INTERNAL;
  } else {
    template = STRINGS[key as keyof typeof STRINGS];
  }
  const text = template ? template[lang] : key;
  return text.replace(/\{(\w+)\}/g, (whole, name: string) => (name in params ? String(params[name]) : whole));
}

/** The user-facing message for an error code. */
export function errorMessage(lang: Language, code: ErrorCode, params: MessageParams = {}): string {
  return t(lang, `error.${code}`, params);
}

/** Human-readable byte size for messages ("20 MB"). */
export function formatBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${Math.round((bytes / (1024 * 1024)) * 10) / 10} MB`;
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${bytes} B`;
}
