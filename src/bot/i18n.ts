// UI strings in Chinese and English. The language comes from the user's saved choice, else the
// platform's language code (Telegram `from.language_code`, Discord `interaction.locale`), else
// the configured default. Parameters are written `{name}` in the templates.
import type { ErrorCode } from '../errors.js';
import type { MediaRefusal } from '../media/errors.js';
import type { LocalizedText } from '../styles/types.js';
import type { Language, MessageKey, MessageParams } from './types.js';

const STRINGS: Record<Exclude<MessageKey, `error.${string}` | `media.${string}`>, LocalizedText> = {
  helpIntro: {
    en: [
      'Send me a picture (with or without a question) and I will answer in the chosen style.',
      'Several pictures at once (an album, several attachments), a GIF or a short video work too.',
      'Reply to my answer or to your picture to ask a follow-up; a new picture sent as a reply joins the conversation.',
    ].join('\n'),
    zh: [
      '发一张图片给我（可以附带问题），我会用选定的风格回答。',
      '也可以一次发几张图片（相册、多个附件）、GIF 动图或短视频。',
      '回复我的回答或你的图片，可以继续追问；用回复的方式发新图片，它会加入同一段对话。',
    ].join('\n'),
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
  // notices under an answer (several pictures, src/bot/core.ts)
  picturesSkipped: {
    en: '(I looked at the first {used} of the {total} pictures you sent — at most {max} per message.)',
    zh: '（你发了 {total} 张图片，我只看了前 {used} 张——每条消息最多 {max} 张。）',
  },
  turnsDropped: {
    en: '(This conversation got too long for me, so I left out its {turns} oldest exchange(s).)',
    zh: '（对话太长了，我略去了最早的 {turns} 轮问答。）',
  },
  tooManyPictures: {
    en: 'That is more pictures than I can take in at once: at most {maxImages} fit with this question (this conversation has {imageCount}). Send fewer, or /reset to start afresh.',
    zh: '图片太多了，我一次看不过来：这个问题最多能配 {maxImages} 张（当前对话有 {imageCount} 张）。请少发几张，或用 /reset 重新开始。',
  },
};

/** Why an animation or a video was refused (src/media/errors.ts). */
const MEDIA: Record<MediaRefusal, LocalizedText> = {
  'file-empty': { en: 'That file is empty — there is nothing in it to look at. Could you send it again?', zh: '这个文件是空的，没有内容可看。能再发一次吗？' },
  'video-no-ffmpeg': {
    en: 'I cannot read videos on this server (ffmpeg is not installed here). Send a picture or a GIF instead.',
    zh: '这台服务器上我读不了视频（没有安装 ffmpeg）。请改发图片或 GIF。',
  },
  'video-no-picture': { en: 'That video has no picture in it (only sound), so there is nothing for me to look at.', zh: '这个视频里没有画面（只有声音），我没有东西可看。' },
  'video-empty': { en: 'That video is empty (zero length) — I could not find a single frame in it.', zh: '这个视频是空的（时长为零），我一帧画面都找不到。' },
  'video-too-long': { en: 'That clip is too long for me ({seconds} s; at most {limit} s). Please send a shorter one.', zh: '这段视频太长了（{seconds} 秒，上限 {limit} 秒），请发短一点的。' },
  'video-too-large': { en: 'That video file is too large for me (limit {limit}). Please send a smaller one.', zh: '这个视频文件太大了（上限 {limit}），请发小一点的。' },
  'video-unreadable': {
    en: 'I could not read that video — it seems damaged, or uses a format I do not know. Could you send it again, or as MP4?',
    zh: '我读不了这个视频，可能已损坏或格式不支持。能再发一次，或者转成 MP4 吗？',
  },
  'animation-too-many-frames': {
    en: 'That animation has too many frames for me ({frames}; at most {limit}). Please send a shorter one.',
    zh: '这个动图帧数太多了（{frames} 帧，上限 {limit} 帧），请发短一点的。',
  },
  'animation-too-large': { en: 'That animation is too large for me to read. Please send a smaller one.', zh: '这个动图太大了，我读不了。请发小一点的。' },
  'animation-corrupt': {
    en: 'That animation seems to be damaged — I could not read all of its frames. Could you send it again?',
    zh: '这个动图好像损坏了，有些帧我读不出来。能再发一次吗？',
  },
};

/** What the user is told for each error code; codes not listed fall back to INTERNAL. */
const ERRORS: Partial<Record<ErrorCode, LocalizedText>> = {
  IMAGE_UNSUPPORTED: {
    en: 'I can only look at pictures (JPEG, PNG, WebP or GIF) and short videos (MP4, WebM or MOV).',
    zh: '我只能看图片（JPEG、PNG、WebP 或 GIF）和短视频（MP4、WebM 或 MOV）。',
  },
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
  } else if (key.startsWith('media.')) {
    template = MEDIA[key.slice('media.'.length) as MediaRefusal] ?? ERRORS.INTERNAL;
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
