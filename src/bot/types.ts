// The contract between the shared bot core (src/bot, src/scheduler, src/store) and the platform
// adapters (adapters/telegram, adapters/discord). Adapters are thin: they turn platform events into
// BotRequests and command calls, and render what the core sends back through an AnswerSink.
// Everything that is the same on both platforms (limits, queueing, styles, conversations, strings)
// lives behind BotCore.
import type { ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { MediaRefusal } from '../media/errors.js';
import type { Language } from '../styles/types.js';

export type { Language } from '../styles/types.js';

export type Platform = 'telegram' | 'discord';

/** The person who sent a message or pressed a button. Ids are the platform's own, as strings. */
export interface BotUser {
  platform: Platform;
  id: string;
  /** For logs and admin output only; never trusted for access decisions. */
  displayName?: string;
  /** The platform's language code (Telegram `from.language_code`, Discord `interaction.locale`). */
  languageCode?: string;
}

/**
 * Where the conversation happens. A private chat (Telegram private chat, Discord DM) and a group
 * (Telegram group/supergroup/channel, a Discord guild channel or thread) never share context: the
 * core keys conversations by (platform, chat id).
 */
export interface BotChat {
  platform: Platform;
  /** Telegram chat id; Discord channel (or thread) id. */
  id: string;
  kind: 'private' | 'group';
  /** Discord guild id, for the guild allow-list. */
  guildId?: string;
}

/**
 * A picture the user sent — a photo, an image file, an animated GIF/WebP, or a short video (MP4,
 * WebM, MOV: Telegram `video`/`animation`/`video_note`, Discord video attachments) — fetched
 * lazily so the core can refuse an oversized or unreadable file from its metadata before
 * downloading it. Give whatever the platform reports up front. An animation or a video becomes
 * VISTYLE_VIDEO_FRAMES frames for the model; it counts as one picture against the per-message limit.
 */
export interface ImageSource {
  /** Size the platform reports (Telegram `file_size`, Discord `attachment.size`). */
  sizeBytes?: number;
  /**
   * MIME type the platform reports (Telegram document `mime_type`, Discord `contentType`). A
   * `video/...` type is checked against the video limits (and needs ffmpeg); set it for videos
   * whose platform gives none (Telegram video notes are MP4).
   */
  mime?: string;
  fileName?: string;
  /** Pixel size if the platform reports it (Telegram photo sizes, Discord attachments). */
  width?: number;
  height?: number;
  /**
   * Download the bytes. The core calls it at most once per request, after the access and limit
   * checks. It should honour `signal` (the request was cancelled) and may stop reading past
   * `maxBytes` and throw a VistyleError('IMAGE_TOO_LARGE') when the size was not known up front.
   */
  fetch(options: { signal: AbortSignal; maxBytes: number }): Promise<Uint8Array>;
}

/**
 * One question for the model.
 * - Pictures with no question get the style's default question in the user's language.
 * - `replyToMessageId` naming the bot's earlier answer or the user's earlier photo makes it a
 *   follow-up in that conversation, with the earlier turns and their pictures as context
 *   (bounded); new `images` in such a reply join the conversation with this question.
 * - New pictures that reply to nothing the core knows start a new conversation.
 * - No picture and no (known) reply: a follow-up on this chat's current conversation if there is
 *   one, otherwise the user is asked to send a picture (IMAGE_MISSING).
 * - More than VISTYLE_MAX_IMAGES_PER_MESSAGE pictures: the first ones are used and the user is
 *   told how many were skipped.
 */
export interface BotRequest {
  user: BotUser;
  chat: BotChat;
  /** Every picture of the message (an album's, all attachments, all `/ask` options), in order. */
  images?: ImageSource[];
  question?: string;
  /** Style id for this request only (Discord `/ask style:`); wins over the user's and chat's. */
  style?: string;
  /** The user's message that carries this request (linked to the conversation for replies). */
  messageId?: string;
  /** Further user messages that belong to this request (e.g. the other photos of an album). */
  relatedMessageIds?: string[];
  /** The message this one replies to, if any. */
  replyToMessageId?: string;
  /**
   * The pictures of the replied-to message, when it carries any (Telegram: a reply to anyone's
   * photo, e.g. "@bot what is this?" in a group). Used only when `replyToMessageId` does not
   * continue a known conversation; then they start a new one (instead of IMAGE_MISSING or a
   * follow-up on an unrelated picture). Ignored when `images` has any.
   */
  replyImages?: ImageSource[];
  /** Locale of this interaction when the platform gives one apart from the user (Discord). */
  locale?: string;
}

/** Why a request ended without an answer: a stable code plus the localised text shown to the user. */
export interface AnswerFailure {
  code: ErrorCode;
  userMessage: string;
}

/** What a status message shows: finished, translated text, and the label of its Cancel button. */
export interface StatusText {
  /** "In the queue: you are number 2." / "Thinking…", in the user's language. */
  text: string;
  /** The Cancel button's label in the user's language. */
  cancelLabel: string;
}

/** How a request ended without an answer. */
export interface FailureContext {
  /**
   * True when the core refused the request before it entered the queue (allow-lists, limits, a
   * full queue, a picture refused from its metadata, an unknown style...): no `queued` or
   * `started` call came first and `AskTicket.accepted` resolves false. (A download that fails
   * before the scheduler's first report counts too: either way the user is told privately.) Discord answers these
   * privately before acknowledging anything; later failures replace the status message.
   */
  refused: boolean;
}

/**
 * Implemented by the adapter for one request; driven by the core.
 *
 * Call order: `queued`* -> `started` -> `progress`* -> exactly one of `finished` | `failed`.
 * A request refused up front (access, limits, bad image) gets only `failed`. Every accepted
 * request gets exactly one terminal call, whatever happens (cancel, time-out, engine crash,
 * shutdown). The core serialises the calls: it never calls a sink method while a promise returned
 * by an earlier call of the same sink is still pending, and it coalesces `progress` so only the
 * latest text is delivered when the adapter is slow. Errors thrown by non-terminal methods are
 * logged and ignored. No sink method is called before `ask()` has returned its ticket.
 *
 * Every text the core hands over is finished: translated into the user's language, free of
 * control characters (newline and tab kept, see control-chars.ts), and for `progress` and
 * `finished` never blank. Adapters only render it (split, format, pace).
 */
export interface AnswerSink {
  /**
   * The request waits for the engine; `position` is 1 for the next to run. Called again whenever
   * the position changes (requests ahead finish or are cancelled).
   */
  queued(position: number, status: StatusText): void | Promise<void>;
  /** The engine started on this request (stop showing the queue position; show typing). */
  started(status: StatusText): void | Promise<void>;
  /**
   * The answer so far (whole text, not a delta). Adapters throttle their edits
   * (adapters/shared/edit-scheduler.ts). With the distributed queue it may also carry a notice
   * (the answer restarted on another worker, the queue is reconnecting), also while the request
   * still waits.
   */
  progress(textSoFar: string): void | Promise<void>;
  /**
   * The final answer, non-blank (an empty model answer arrives as a polite "nothing to say"
   * text). The adapter splits it at the platform's length limit (adapters/shared/split-message.ts),
   * sends or edits it, and returns the ids of every message that carries it so that replies to
   * any of them continue this conversation. Rejecting means the adapter could not deliver it; the
   * core logs the failure and makes no further sink calls.
   */
  finished(text: string): Promise<{ messageIds: string[] }>;
  /** The request ended without an answer; show `userMessage` (already localised). */
  failed(userMessage: string, code: ErrorCode, context: FailureContext): void | Promise<void>;
}

export type AskStatus = 'answered' | 'failed';

export interface AskOutcome {
  status: AskStatus;
  /** Set when status is 'failed'. */
  code?: ErrorCode;
  /** The answer (answered) or the message shown to the user (failed). */
  text: string;
  /** Message ids the adapter returned from `finished`. */
  messageIds: string[];
}

/** Returned synchronously by `ask`, before any sink call, so the adapter can attach a cancel button. */
export interface AskTicket {
  requestId: string;
  /** The user's language for this request (for the few texts an adapter writes itself). */
  language: Language;
  /**
   * Settles as soon as the core has decided whether it takes the request, within milliseconds of
   * `ask` (the checks are local; with the Redis queue, one round trip): true once the scheduler
   * has admitted it (its first `queued` or `started`), false when it was refused (its only sink
   * call is then `failed` with `refused: true`). Never rejects. Discord defers the interaction
   * only after this says true.
   */
  accepted: Promise<boolean>;
  /** Settles when the terminal sink call has returned. Never rejects. */
  done: Promise<AskOutcome>;
}

/** Who is running a command, and where. */
export interface CommandContext {
  user: BotUser;
  chat: BotChat;
  /** Interaction locale when the platform gives one (Discord). */
  locale?: string;
}

/** A command's answer: text in the caller's language, ready to send as is. */
export interface CommandResult {
  ok: boolean;
  text: string;
  /** Why it failed (NOT_ALLOWED, STYLE_UNKNOWN, ...). */
  code?: ErrorCode;
}

/** A style as shown to one user (names and texts already in their language). */
export interface StyleSummary {
  id: string;
  name: string;
  description: string;
  sampleAnswer: string;
  /** Has a LoRA adapter. */
  hasAdapter: boolean;
}

/** Where the effective style came from. */
export type StyleSource = 'request' | 'user' | 'chat' | 'default';

export interface StyleStatus extends CommandResult {
  /** The style this user's next answer in this chat will use. */
  current: StyleSummary;
  source: StyleSource;
  /** Every style, the default first, for pickers (Telegram inline keyboard, Discord choices). */
  choices: StyleSummary[];
}

/** Whose setting `/style NAME` changes. */
export type SettingScope = 'user' | 'chat';

export interface SetStyleOptions {
  /**
   * Default: 'user' in a private chat (the user's own choice, which then applies everywhere),
   * 'chat' in a group (the group's default for everyone without an own choice).
   */
  scope?: SettingScope;
}

export interface StylesList extends CommandResult {
  styles: StyleSummary[];
}

export interface QueueStatus {
  /** Requests waiting for the engine. */
  waiting: number;
  /** Requests running on the engine. */
  inFlight: number;
  /** Milliseconds the oldest waiting request has waited (0 when none). */
  oldestWaitMs: number;
  slots: number;
  maxQueueLength: number;
}

export interface QueueStatusResult extends CommandResult {
  /** Present only for admins. */
  status?: QueueStatus;
}

export interface AccessDecision {
  allowed: boolean;
  /** Localised refusal when not allowed. */
  message?: string;
}

/** Keys of the UI strings (src/bot/i18n.ts). Adapters get finished texts from the core and never translate. */
export type MessageKey =
  | 'helpIntro'
  | 'helpAdmins'
  | 'cancelButton'
  | 'queued'
  | 'thinking'
  | 'emptyAnswer'
  | 'styleCurrent'
  | 'styleSetUser'
  | 'styleSetChat'
  | 'styleSourceUser'
  | 'styleSourceChat'
  | 'styleSourceDefault'
  | 'styleSourceRequest'
  | 'stylesHeader'
  | 'styleSampleLabel'
  | 'resetDone'
  | 'resetNothing'
  | 'languageSet'
  | 'languageCurrent'
  | 'queueStatus'
  | 'adminOnly'
  | 'cancelNotYours'
  | 'cancelUnknown'
  | 'cancelDone'
  | 'rateLimitedInFlight'
  | 'rateLimitedPerMinute'
  | 'answerRestarted'
  | 'queueReconnecting'
  | 'picturesSkipped'
  | 'turnsDropped'
  | 'tooManyPictures'
  | `media.${MediaRefusal}`
  | `error.${ErrorCode}`;

export type MessageParams = Record<string, string | number>;


/** Limits adapters need before they build a request. */
export interface CoreLimits {
  /** Encoded images larger than this are refused (Telegram: pick the largest photo size below it). */
  maxImageBytes: number;
  /** Longest question accepted, in characters. */
  maxQuestionChars: number;
}

/** The bot core, one per process, shared by every adapter. */
export interface BotCore {
  readonly limits: CoreLimits;
  /** Ask a question (see BotRequest and AnswerSink). Never throws; failures go to the sink. */
  ask(request: BotRequest, sink: AnswerSink): AskTicket;
  /**
   * Cancel a queued or running request (the adapter's cancel button). Only the user who asked or
   * an admin may cancel; `by` omitted means the adapter already checked. The sink then gets
   * `failed(..., 'CANCELLED')`.
   */
  cancel(requestId: string, by?: BotUser): CommandResult;
  /** Cancel the request carried by this user message (Discord: the message was deleted). */
  cancelByMessage(chat: BotChat, messageId: string, by?: BotUser): CommandResult;
  /** `/style` with no name: the current style, where it came from, and the choices. */
  showStyle(ctx: CommandContext): StyleStatus;
  /** `/style NAME`: persist the style for the user or the chat. */
  setStyle(ctx: CommandContext, name: string, options?: SetStyleOptions): StyleStatus;
  /** `/styles`: every style with its one-line description and a sample answer. */
  listStyles(ctx: CommandContext): StylesList;
  /** `/help`. */
  help(ctx: CommandContext): CommandResult;
  /** `/reset`: forget this chat's conversations. */
  reset(ctx: CommandContext): CommandResult;
  /** `/queue` (admins only): queue length, in-flight, oldest wait. */
  queueStatus(ctx: CommandContext): QueueStatusResult;
  /** `/reload` (admins only): re-read the styles file now; says how many styles or what is wrong. */
  reloadStyles(ctx: CommandContext): CommandResult;
  /** Persist the user's UI language (null: follow the platform's language code again). */
  setLanguage(ctx: CommandContext, language: Language | null): CommandResult;
  /** Allow-lists check; every other method applies it too. */
  checkAccess(user: BotUser, chat: BotChat): AccessDecision;
  isAdmin(user: BotUser): boolean;
  /** The UI language for this user: their saved choice, else the interaction/user language code. */
  languageOf(user: BotUser, locale?: string): Language;
  /**
   * Stop taking requests (new ones are refused politely), tell queued users, let running ones
   * finish for up to `drainMs` (default from config) and cancel the rest. Does not close the
   * engine or the store (their owner does).
   */
  shutdown(options?: { drainMs?: number }): Promise<void>;
}

/**
 * Where an adapter's connection to its platform stands, for health checks (`/readyz`) and logs.
 * - `starting`: start() is still connecting for the first time;
 * - `connected`: receiving events (Discord: the gateway session is ready; Telegram: the last
 *   getUpdates call succeeded, or the webhook server listens and Telegram accepted the URL);
 * - `reconnecting`: the connection was lost (or never made) and is being retried with back-off;
 * - `stopped`: stop() was called, or start() gave up.
 */
export interface AdapterStatus {
  platform: Platform;
  state: 'starting' | 'connected' | 'reconnecting' | 'stopped';
  /** `state === 'connected'`. */
  connected: boolean;
  /** Epoch ms since when the adapter has been trying to (re)connect; null while connected. */
  reconnectingSince: number | null;
  /** The most recent connection error, log-safe (no tokens); null when there was none. */
  lastError: string | null;
  /** Epoch ms of `lastError`. */
  lastErrorAt: number | null;
}

/** Something `vistyle start` runs: one per platform. */
export interface PlatformAdapter {
  readonly name: Platform;
  /**
   * Connect and start handling events. Resolves once the adapter is receiving updates; rejects
   * (VistyleError NETWORK) when the platform cannot be reached within a bounded time, or
   * CONFIG_INVALID for a rejected token. A stop() meanwhile makes it settle at once.
   */
  start(): Promise<void>;
  /** Stop receiving events and release connections. Idempotent; also ends a start() in progress. */
  stop(): Promise<void>;
  /** The connection's state now (cheap; safe to call at any time, before start and after stop). */
  status(): AdapterStatus;
}

export interface AdapterDeps {
  core: BotCore;
  logger: Logger;
}

/**
 * `createTelegramAdapter(options)`, exported by adapters/telegram/index.ts.
 * Groups: answer only when mentioned, replied to, or commanded.
 */
export interface TelegramAdapterOptions extends AdapterDeps {
  token: string;
  /** Bot API root (local Bot API server, tests); default https://api.telegram.org. */
  apiRoot?: string;
  /** Webhook mode instead of long polling. */
  webhook?: {
    /** Public HTTPS URL Telegram posts updates to. */
    url: string;
    /** Sent by Telegram in X-Telegram-Bot-Api-Secret-Token; checked on every update. */
    secretToken: string;
    /** Local port of the webhook HTTP server. */
    port: number;
    host?: string;
  };
}

/** `createDiscordAdapter(options)`, exported by adapters/discord/index.ts. */
export interface DiscordAdapterOptions extends AdapterDeps {
  token: string;
  applicationId: string;
  /** Register slash commands to this guild only (instant) instead of globally. */
  guildId?: string;
  /** REST API root (tests); default discord.js's. */
  apiRoot?: string;
  /** Gateway WebSocket URL (tests); default the one the REST API reports. */
  gatewayUrl?: string;
  /** Answer a mention with an image attachment in a channel (needs the MessageContent intent). */
  mentionMode: boolean;
}
