// A fake Telegram Bot API on 127.0.0.1 for end-to-end tests. Real telegraf talks to it over HTTP
// (point `telegram.apiRoot` / TELEGRAM_API_ROOT at `fake.apiRoot`). It keeps the state a chat would
// have (messages, edits, drafts, commands, files, pending updates), answers like the real service
// (`{ok, result}` / `{ok:false, error_code, description, parameters}`), lets a test inject updates
// and failures, and records every call with a timestamp so tests can assert what users saw and when.
//
// The rules it keeps, with where Telegram documents them (API = https://core.telegram.org/bots/api):
// - sendMessageDraft streams a preview to a *private* chat (API#sendmessagedraft: chat_id is the
//   "target private chat"); the draft "is ephemeral and acts as a temporary 30-second preview -
//   once the output is finalized, you must call sendMessage with the complete message to persist
//   it": a draft is never a message (visibleMessagesIn), it disappears after 30 s or when the bot
//   sends a message in the chat (draftIn), and a group gets 400 TEXTDRAFT_PEER_INVALID;
// - message text of 1-4096 characters after entities parsing (API#sendmessage), else 400
//   "message is too long" / "message text is empty";
// - flood control: 429 with parameters.retry_after, "the number of seconds left to wait before the
//   request can be repeated" (API#responseparameters); calls in that chat before it runs out are
//   answered 429 again (floodViolations);
// - getFile hands out files of at most 20 MB (API#getfile: "bots can download files of up to 20MB
//   in size"), else 400 "file is too big";
// - parse_mode HTML is parsed like the service does (API#html-style); markup it does not accept is
//   400 "Bad Request: can't parse entities: ..." (html.ts);
// - reply_parameters (API#replyparameters): replying to a message that no longer exists is 400
//   "message to be replied not found" unless allow_sending_without_reply is true;
// - a user who blocked the bot: every send to that chat is 403 "Forbidden: bot was blocked by the
//   user" (the answer the service gives; the Bot API page lists no error texts).
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { EntityParseError, parseTelegramHtml, type FakeEntity } from './html.js';
import type {
  ApiFailure,
  BotCommand,
  BotCommandScope,
  BotMessageState,
  FakeCallbackQuery,
  FakeChat,
  FakeClip,
  FakeDocument,
  FakeMessage,
  FakePhotoSize,
  FakeReplyMarkup,
  FakeUpdate,
  FakeUser,
  RecordedCall,
} from './types.js';

export interface FakeTelegramOptions {
  token?: string;
  bot?: { id?: number; username?: string; first_name?: string };
  /** Answer sendMessageDraft (default) or 404 "Not Found" like a Bot API that predates it. */
  drafts?: boolean;
  /** Largest file getFile hands out (20 MB on the real service). */
  maxDownloadBytes?: number;
  /** How long a sendMessageDraft preview stays up (30 s on the real service). */
  draftLifetimeMs?: number;
}

/** The draft a private chat shows, while it lasts. */
export interface DraftState {
  chatId: number;
  draftId: number;
  text: string;
  /** performance.now() of the latest update and of its expiry. */
  at: number;
  expiresAt: number;
}

/** One size of a photo as the test wants it delivered. */
export interface PhotoSizeSpec {
  bytes: Buffer;
  width: number;
  height: number;
  /** The file_size Telegram reports (defaults to bytes.length). */
  declaredSize?: number;
}

export interface InjectOptions {
  /** Defaults to the sender's private chat. */
  chat?: FakeChat;
  /** message_id of the message this one replies to (a user's or the bot's). */
  replyTo?: number;
}

export type FailureRule = ApiFailure | 'network';

interface FailureEntry {
  method: string;
  failure: FailureRule;
  times: number;
  when?: (params: Record<string, unknown>) => boolean;
}

interface StoredFile {
  bytes: Buffer;
  path: string;
  size: number;
  uniqueId: string;
}

interface Poller {
  wake: () => void;
  conflict: () => void;
}

class ApiError extends Error {
  constructor(readonly failure: ApiFailure) {
    super(failure.description);
  }
}

const badRequest = (description: string) => new ApiError({ error_code: 400, description: `Bad Request: ${description}` });

const TEXT_LIMIT = 4096;
const CHAT_ACTIONS = new Set([
  'typing',
  'upload_photo',
  'record_video',
  'upload_video',
  'record_voice',
  'upload_voice',
  'upload_document',
  'choose_sticker',
  'find_location',
  'record_video_note',
  'upload_video_note',
]);
/** Methods that a flood wait (429) in a chat applies to. */
const FLOOD_METHODS = new Set(['sendMessage', 'editMessageText', 'sendMessageDraft', 'editMessageReplyMarkup']);

type Handler = (params: Record<string, unknown>, res: ServerResponse) => unknown;

export class FakeTelegram extends EventEmitter {
  readonly token: string;
  readonly botUser: FakeUser;
  readonly calls: RecordedCall[] = [];
  /** Calls made while a 429's retry_after had not yet run out (each answered 429 again). */
  readonly floodViolations: RecordedCall[] = [];
  /** Webhook POSTs the fake made: status (0 = connection failed) and the update id. */
  readonly webhookDeliveries: { updateId: number; status: number; at: number }[] = [];
  apiRoot = '';
  draftsSupported: boolean;
  maxDownloadBytes: number;
  draftLifetimeMs: number;
  private readonly drafts = new Map<number, DraftState>();

  private server: Server | undefined;
  private nextUpdateId = 100_000;
  private pending: FakeUpdate[] = [];
  private poller: Poller | undefined;
  private readonly chats = new Map<number, FakeChat>();
  private readonly nextMessageId = new Map<number, number>();
  private readonly userMessages = new Map<string, FakeMessage>();
  private readonly botMessages = new Map<string, BotMessageState>();
  /** The same messages per chat, in message_id order (ids only grow). */
  private readonly botMessagesByChat = new Map<number, BotMessageState[]>();
  private readonly files = new Map<string, StoredFile>();
  private readonly filesByPath = new Map<string, StoredFile>();
  private nextFileNumber = 1;
  private readonly openQueries = new Set<string>();
  private nextQueryNumber = 1;
  private readonly commandSets = new Map<string, BotCommand[]>();
  private readonly failures: FailureEntry[] = [];
  private readonly floodUntil = new Map<number, number>();
  private readonly blocked = new Set<number>();
  private webhook: { url: string; secretToken?: string; maxConnections: number } | undefined;
  private webhookInFlight = new Set<number>();
  private closed = false;
  /** Re-encoded sizes by the original's SHA-1, so the same picture is resized once. */
  private readonly photoCache = new Map<string, Promise<PhotoSizeSpec[]>>();
  private readonly handlers: Record<string, Handler>;

  private constructor(options: FakeTelegramOptions) {
    super();
    this.setMaxListeners(0);
    this.token = options.token ?? '123456789:AAFakeTokenForTestsOnly_abcdefghijk';
    this.botUser = {
      id: options.bot?.id ?? Number(this.token.split(':')[0]),
      is_bot: true,
      first_name: options.bot?.first_name ?? 'vistyle',
      username: options.bot?.username ?? 'vistyle_test_bot',
    };
    this.draftsSupported = options.drafts ?? true;
    this.maxDownloadBytes = options.maxDownloadBytes ?? 20 * 1024 * 1024;
    this.draftLifetimeMs = options.draftLifetimeMs ?? 30_000;
    this.handlers = {
      getMe: () => ({ ...this.botUser, can_join_groups: true, can_read_all_group_messages: false, supports_inline_queries: false }),
      getUpdates: (p, res) => this.getUpdates(p, res),
      setWebhook: (p) => this.setWebhook(p),
      deleteWebhook: (p) => this.deleteWebhook(p),
      getWebhookInfo: () => ({
        url: this.webhook?.url ?? '',
        has_custom_certificate: false,
        pending_update_count: this.pending.length,
      }),
      setMyCommands: (p) => this.setMyCommands(p),
      getMyCommands: (p) => this.commandSets.get(commandKey(objectParam(p.scope), stringParam(p.language_code))) ?? [],
      deleteMyCommands: (p) => {
        this.commandSets.delete(commandKey(objectParam(p.scope), stringParam(p.language_code)));
        return true;
      },
      sendMessage: (p) => this.sendMessage(p),
      editMessageText: (p) => this.editMessageText(p),
      editMessageReplyMarkup: (p) => this.editMessageReplyMarkup(p),
      deleteMessage: (p) => this.deleteMessage(p),
      sendChatAction: (p) => {
        this.requireChat(p.chat_id);
        const action = stringParam(p.action);
        if (!action || !CHAT_ACTIONS.has(action)) throw badRequest('wrong parameter action in request');
        return true;
      },
      answerCallbackQuery: (p) => {
        const id = stringParam(p.callback_query_id) ?? '';
        if (!this.openQueries.delete(id)) {
          throw badRequest('query is too old and response timeout expired or query ID is invalid');
        }
        return true;
      },
      getFile: (p) => this.getFile(p),
      sendMessageDraft: (p) => this.sendMessageDraft(p),
    };
  }

  static async start(options: FakeTelegramOptions = {}): Promise<FakeTelegram> {
    const fake = new FakeTelegram(options);
    const server = createServer((req, res) => {
      fake.handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(500).end(String(error));
      });
    });
    server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    fake.server = server;
    fake.apiRoot = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return fake;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.poller?.wake();
    const server = this.server;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // ---------------------------------------------------------------- people and chats

  user(id: number, fields: { first_name?: string; username?: string; language_code?: string } = {}): FakeUser {
    const user: FakeUser = { id, is_bot: false, first_name: fields.first_name ?? `User${id}` };
    if (fields.username !== undefined) user.username = fields.username;
    if (fields.language_code !== undefined) user.language_code = fields.language_code;
    return user;
  }

  privateChat(user: FakeUser): FakeChat {
    const chat: FakeChat = { id: user.id, type: 'private', first_name: user.first_name };
    if (user.username !== undefined) chat.username = user.username;
    return chat;
  }

  group(id: number, title = `Group ${id}`, type: 'group' | 'supergroup' = 'supergroup'): FakeChat {
    return { id: id < 0 ? id : -id, type, title };
  }

  /** The user deletes one of their own messages (later replies to it need allow_sending_without_reply). */
  deleteUserMessage(chatId: number, messageId: number): void {
    if (!this.userMessages.delete(messageKey(chatId, messageId))) throw new Error(`no user message ${messageId} in chat ${chatId}`);
  }

  /** The draft preview the chat shows now, if any (expired after draftLifetimeMs, or replaced by a sent message). */
  draftIn(chatId: number): DraftState | undefined {
    const draft = this.drafts.get(chatId);
    if (!draft || performance.now() >= draft.expiresAt) return undefined;
    return { ...draft };
  }

  /** Makes every message-sending call to this chat fail with 403, as when a user blocks the bot. */
  blockChat(chatId: number): void {
    this.blocked.add(chatId);
  }

  // ---------------------------------------------------------------- injecting updates

  sendText(from: FakeUser, text: string, options: InjectOptions = {}): FakeMessage {
    const message = this.newUserMessage(from, options);
    message.text = text;
    const entities = detectEntities(text);
    if (entities.length > 0) message.entities = entities;
    return this.deliverMessage(message);
  }

  /** A command as the Telegram client sends it, e.g. "/style grumpy" or "/ask@bot_name what?". */
  sendCommand(from: FakeUser, command: string, options: InjectOptions = {}): FakeMessage {
    if (!command.startsWith('/')) throw new Error(`a command starts with "/": ${command}`);
    return this.sendText(from, command, options);
  }

  /**
   * A photo message. Given plain image bytes, the fake re-encodes it at Telegram's sizes (sharp);
   * given explicit sizes, they are delivered as they are (e.g. a 25 MB size or damaged data).
   */
  async sendPhoto(
    from: FakeUser,
    image: Uint8Array | PhotoSizeSpec[],
    options: InjectOptions & { caption?: string; mediaGroupId?: string } = {},
  ): Promise<FakeMessage> {
    const specs = Array.isArray(image) ? image : await this.photoSizesOf(image);
    const message = this.newUserMessage(from, options);
    message.photo = specs.map((spec) => {
      const file = this.addFile(Buffer.from(spec.bytes.buffer, spec.bytes.byteOffset, spec.bytes.byteLength), 'photos', 'jpg', spec.declaredSize);
      const size: FakePhotoSize = {
        file_id: file.fileId,
        file_unique_id: file.uniqueId,
        width: spec.width,
        height: spec.height,
        file_size: file.size,
      };
      return size;
    });
    this.applyCaption(message, options.caption);
    if (options.mediaGroupId !== undefined) message.media_group_id = options.mediaGroupId;
    return this.deliverMessage(message);
  }

  sendDocument(
    from: FakeUser,
    bytes: Buffer,
    options: InjectOptions & {
      fileName: string;
      mimeType?: string;
      caption?: string;
      mediaGroupId?: string;
      declaredSize?: number;
    },
  ): FakeMessage {
    const extension = options.fileName.includes('.') ? options.fileName.split('.').pop()! : 'dat';
    const file = this.addFile(bytes, 'documents', extension, options.declaredSize);
    const message = this.newUserMessage(from, options);
    const document: FakeDocument = { file_id: file.fileId, file_unique_id: file.uniqueId, file_name: options.fileName, file_size: file.size };
    if (options.mimeType !== undefined) document.mime_type = options.mimeType;
    message.document = document;
    this.applyCaption(message, options.caption);
    if (options.mediaGroupId !== undefined) message.media_group_id = options.mediaGroupId;
    return this.deliverMessage(message);
  }

  /**
   * A clip as the Bot API delivers it: `animation` (a GIF the app converted to MP4; the message
   * carries the same file as `document` too, for backward compatibility), `video`, or
   * `video_note` (round, always MP4, no MIME type or file name).
   */
  sendClip(
    from: FakeUser,
    bytes: Buffer,
    options: InjectOptions & {
      kind: 'animation' | 'video' | 'video_note';
      duration?: number;
      width?: number;
      height?: number;
      mimeType?: string;
      fileName?: string;
      caption?: string;
      mediaGroupId?: string;
      declaredSize?: number;
    },
  ): FakeMessage {
    const file = this.addFile(bytes, options.kind === 'video_note' ? 'video_notes' : options.kind === 'video' ? 'videos' : 'animations', 'mp4', options.declaredSize);
    const message = this.newUserMessage(from, options);
    const clip: FakeClip = { file_id: file.fileId, file_unique_id: file.uniqueId, duration: options.duration ?? 1, file_size: file.size };
    if (options.kind === 'video_note') {
      clip.length = options.width ?? 240;
    } else {
      clip.width = options.width ?? 96;
      clip.height = options.height ?? 64;
      clip.mime_type = options.mimeType ?? 'video/mp4';
      if (options.fileName !== undefined) clip.file_name = options.fileName;
    }
    message[options.kind] = clip;
    if (options.kind === 'animation') {
      const document: FakeDocument = { file_id: file.fileId, file_unique_id: file.uniqueId, file_size: file.size, mime_type: clip.mime_type! };
      if (clip.file_name !== undefined) document.file_name = clip.file_name;
      message.document = document;
    }
    if (options.kind !== 'video_note') this.applyCaption(message, options.caption);
    if (options.mediaGroupId !== undefined) message.media_group_id = options.mediaGroupId;
    return this.deliverMessage(message);
  }

  /** The user presses an inline keyboard button under one of the bot's messages. */
  pressButton(from: FakeUser, message: { chatId: number; messageId: number }, data: string): FakeCallbackQuery {
    const state = this.botMessages.get(messageKey(message.chatId, message.messageId));
    if (!state) throw new Error(`no bot message ${message.messageId} in chat ${message.chatId}`);
    const offered = state.replyMarkup?.inline_keyboard.flat().some((button) => button.callback_data === data);
    if (!offered) throw new Error(`message ${message.messageId} has no button with data ${JSON.stringify(data)}`);
    const query: FakeCallbackQuery = {
      id: String(4_000_000_000 + this.nextQueryNumber++),
      from,
      message: this.botMessageAsMessage(state),
      chat_instance: String(message.chatId * 7),
      data,
    };
    this.openQueries.add(query.id);
    this.enqueue({ update_id: this.nextUpdateId++, callback_query: query });
    return query;
  }

  /** Delivers an update exactly as given (for shapes the helpers above do not build). */
  injectUpdate(update: Omit<FakeUpdate, 'update_id'>): FakeUpdate {
    const full: FakeUpdate = { update_id: this.nextUpdateId++, ...update };
    this.enqueue(full);
    return full;
  }

  /** Stores a file the way Telegram would hand it out through getFile. */
  addFile(bytes: Buffer, folder: string, extension: string, declaredSize?: number) {
    const number = this.nextFileNumber++;
    const uniqueId = `AQAD${number.toString(36).padStart(6, '0')}`;
    const fileId = `BQACAgIAAxkBAAI${number.toString(36).padStart(8, '0')}_${folder}`;
    const file: StoredFile = {
      bytes,
      path: `${folder}/file_${number}.${extension}`,
      size: declaredSize ?? bytes.length,
      uniqueId,
    };
    this.files.set(fileId, file);
    this.filesByPath.set(file.path, file);
    return { fileId, uniqueId, size: file.size, path: file.path };
  }

  // ---------------------------------------------------------------- injecting failures

  /**
   * The next `times` calls of `method` (that match `when`) fail with this API error, or with a
   * dropped connection for 'network'. A 429 with retry_after also opens a flood wait in that chat:
   * text calls there before it runs out are answered 429 again and recorded in floodViolations.
   */
  failNext(method: string, failure: FailureRule, options: { times?: number; when?: (params: Record<string, unknown>) => boolean } = {}): void {
    const entry: FailureEntry = { method, failure, times: options.times ?? 1 };
    if (options.when) entry.when = options.when;
    this.failures.push(entry);
  }

  // ---------------------------------------------------------------- looking at what happened

  callsTo(method: string, chatId?: number): RecordedCall[] {
    return this.calls.filter(
      (call) => call.method === method && (chatId === undefined || Number(call.params.chat_id) === chatId),
    );
  }

  /** The bot's messages in a chat, oldest first (deleted ones included, flagged). */
  messagesIn(chatId: number): BotMessageState[] {
    return [...(this.botMessagesByChat.get(chatId) ?? [])];
  }

  visibleMessagesIn(chatId: number): BotMessageState[] {
    return this.messagesIn(chatId).filter((message) => !message.deleted);
  }

  botMessage(chatId: number, messageId: number): BotMessageState | undefined {
    return this.botMessages.get(messageKey(chatId, messageId));
  }

  commands(scope?: BotCommandScope, languageCode?: string): BotCommand[] | undefined {
    return this.commandSets.get(commandKey(scope, languageCode));
  }

  pendingUpdateCount(): number {
    return this.pending.length;
  }

  /** Resolves with the probe's first truthy value, re-checked after every call and every 25 ms. */
  async waitFor<T>(probe: () => T | undefined | null | false, timeoutMs = 15_000, what = 'condition'): Promise<T> {
    const first = probe();
    if (first) return first;
    return await new Promise<T>((resolve, reject) => {
      const check = () => {
        let value: T | undefined | null | false;
        try {
          value = probe();
        } catch (error) {
          finish();
          reject(error as Error);
          return;
        }
        if (value) {
          finish();
          resolve(value);
        }
      };
      const interval = setInterval(check, 25);
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`fake Telegram: timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const finish = () => {
        clearInterval(interval);
        clearTimeout(timer);
        this.off('call', check);
      };
      this.on('call', check);
    });
  }

  // ---------------------------------------------------------------- HTTP

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const fileMatch = /^\/file\/bot([^/]+)\/(.+)$/.exec(url.pathname);
    if (fileMatch) {
      const file = fileMatch[1] === this.token ? this.filesByPath.get(decodeURIComponent(fileMatch[2]!)) : undefined;
      if (!file) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: false, error_code: 404, description: 'Not Found' }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': file.bytes.length }).end(file.bytes);
      return;
    }
    const match = /^\/bot([^/]*)\/([A-Za-z]+)$/.exec(url.pathname);
    if (!match) {
      this.reply(res, { ok: false, error_code: 404, description: 'Not Found' }, 404);
      return;
    }
    const [, token, method] = match as unknown as [string, string, string];
    if (token !== this.token) {
      this.reply(res, { ok: false, error_code: 401, description: 'Unauthorized' }, 401);
      return;
    }
    const at = performance.now();
    const { params, encoding } = await readParams(req, url);
    await this.dispatch(method, params, encoding, at, res, req);
  }

  private async dispatch(
    method: string,
    params: Record<string, unknown>,
    encoding: RecordedCall['encoding'],
    at: number,
    res: ServerResponse | undefined,
    req?: IncomingMessage,
  ): Promise<void> {
    const call: RecordedCall = { method, params, at, ok: false, encoding };
    const respond = (ok: boolean, payload: unknown) => {
      call.ok = ok;
      if (ok) call.result = payload;
      else call.error = payload as ApiFailure;
      this.calls.push(call);
      if (res && !res.writableEnded && !res.destroyed) {
        if (ok) this.reply(res, { ok: true, result: payload }, 200);
        else this.reply(res, errorBody(payload as ApiFailure), (payload as ApiFailure).error_code);
      }
      this.emit('call', call);
    };

    const injected = this.takeFailure(method, params);
    if (injected === 'network') {
      call.error = { error_code: 0, description: 'connection dropped by the test' };
      this.calls.push(call);
      req?.socket.destroy();
      this.emit('call', call);
      return;
    }
    if (injected) {
      if (injected.error_code === 429 && injected.retry_after !== undefined && params.chat_id !== undefined) {
        this.floodUntil.set(Number(params.chat_id), performance.now() + injected.retry_after * 1000);
      }
      respond(false, injected);
      return;
    }
    if (FLOOD_METHODS.has(method) && params.chat_id !== undefined) {
      const until = this.floodUntil.get(Number(params.chat_id)) ?? 0;
      const now = performance.now();
      if (now < until) {
        const failure: ApiFailure = {
          error_code: 429,
          description: `Too Many Requests: retry after ${Math.ceil((until - now) / 1000)}`,
          retry_after: Math.ceil((until - now) / 1000),
        };
        respond(false, failure);
        this.floodViolations.push(call);
        return;
      }
    }
    if (method === 'sendMessageDraft' && !this.draftsSupported) {
      respond(false, { error_code: 404, description: 'Not Found' });
      return;
    }
    const handler = this.handlers[method];
    if (!handler) {
      respond(false, { error_code: 404, description: 'Not Found' });
      return;
    }
    try {
      if (res === undefined && method === 'getUpdates') throw badRequest('getUpdates is not allowed in a webhook reply');
      const result = await handler(params, res ?? ({} as ServerResponse));
      respond(true, result);
    } catch (error) {
      if (error instanceof ApiError) respond(false, error.failure);
      else respond(false, { error_code: 500, description: `Internal Server Error: ${String(error)}` });
    }
  }

  private reply(res: ServerResponse, body: unknown, status: number): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
  }

  private takeFailure(method: string, params: Record<string, unknown>): FailureRule | undefined {
    const entry = this.failures.find((candidate) => candidate.method === method && candidate.times > 0 && (!candidate.when || candidate.when(params)));
    if (!entry) return undefined;
    entry.times -= 1;
    if (entry.times === 0) this.failures.splice(this.failures.indexOf(entry), 1);
    return entry.failure;
  }

  // ---------------------------------------------------------------- updates: long polling and webhooks

  private enqueue(update: FakeUpdate): void {
    this.pending.push(update);
    this.poller?.wake();
    if (this.webhook) this.pumpWebhook();
  }

  private async getUpdates(params: Record<string, unknown>, res: ServerResponse): Promise<FakeUpdate[]> {
    if (this.webhook) {
      throw new ApiError({
        error_code: 409,
        description: "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
      });
    }
    const offset = numberParam(params.offset) ?? 0;
    const limit = Math.min(Math.max(numberParam(params.limit) ?? 100, 1), 100);
    const timeout = Math.max(numberParam(params.timeout) ?? 0, 0);
    // an offset confirms every update before it
    if (offset > 0) this.pending = this.pending.filter((update) => update.update_id >= offset);
    else if (offset < 0) this.pending = this.pending.slice(offset);
    // a newer getUpdates terminates the one still waiting, like the real service
    this.poller?.conflict();
    this.poller = undefined;
    if (this.pending.length > 0 || timeout === 0 || this.closed) return this.pending.slice(0, limit);
    return await new Promise<FakeUpdate[]>((resolve, reject) => {
      const poller: Poller = {
        wake: () => done(() => resolve(this.pending.slice(0, limit))),
        conflict: () =>
          done(() =>
            reject(new ApiError({ error_code: 409, description: 'Conflict: terminated by other getUpdates request; make sure that only one bot instance is running' })),
          ),
      };
      const timer = setTimeout(() => poller.wake(), timeout * 1000);
      const onClose = () => done(() => resolve([]));
      const done = (settle: () => void) => {
        clearTimeout(timer);
        res.off('close', onClose);
        if (this.poller === poller) this.poller = undefined;
        settle();
      };
      res.on('close', onClose);
      this.poller = poller;
    });
  }

  private setWebhook(params: Record<string, unknown>): true {
    const url = stringParam(params.url) ?? '';
    if (url === '') return this.deleteWebhook(params);
    if (!/^https?:\/\//.test(url)) throw badRequest('bad webhook: An HTTPS URL must be provided for webhook');
    const secretToken = stringParam(params.secret_token);
    if (secretToken !== undefined && !/^[A-Za-z0-9_-]{1,256}$/.test(secretToken)) {
      throw badRequest('secret token contains unallowed characters');
    }
    if (params.drop_pending_updates === true || params.drop_pending_updates === 'true') this.pending = [];
    this.poller?.conflict();
    this.webhook = { url, maxConnections: numberParam(params.max_connections) ?? 40 };
    if (secretToken !== undefined) this.webhook.secretToken = secretToken;
    this.pumpWebhook();
    return true;
  }

  private deleteWebhook(params: Record<string, unknown>): true {
    this.webhook = undefined;
    if (params.drop_pending_updates === true || params.drop_pending_updates === 'true') this.pending = [];
    return true;
  }

  /** POSTs pending updates to the webhook (up to max_connections at once), retrying failures. */
  private pumpWebhook(): void {
    const hook = this.webhook;
    if (!hook || this.closed) return;
    for (const update of this.pending) {
      if (this.webhookInFlight.size >= hook.maxConnections) break;
      if (this.webhookInFlight.has(update.update_id)) continue;
      this.webhookInFlight.add(update.update_id);
      void this.deliverToWebhook(hook, update);
    }
  }

  private async deliverToWebhook(hook: NonNullable<FakeTelegram['webhook']>, update: FakeUpdate): Promise<void> {
    let status = 0;
    let body = '';
    try {
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (hook.secretToken !== undefined) headers['x-telegram-bot-api-secret-token'] = hook.secretToken;
      const response = await fetch(hook.url, { method: 'POST', headers, body: JSON.stringify(update) });
      status = response.status;
      body = await response.text();
    } catch {
      status = 0;
    }
    this.webhookDeliveries.push({ updateId: update.update_id, status, at: performance.now() });
    this.webhookInFlight.delete(update.update_id);
    if (status >= 200 && status < 300) {
      this.pending = this.pending.filter((candidate) => candidate !== update);
      // a method in the webhook's answer is executed, as the real service does
      if (body.trim().startsWith('{')) {
        const { method, ...params } = JSON.parse(body) as { method?: string } & Record<string, unknown>;
        if (method) await this.dispatch(method, params, 'json', performance.now(), undefined);
      }
      this.pumpWebhook();
    } else if (!this.closed && this.webhook === hook) {
      setTimeout(() => this.pumpWebhook(), 200).unref();
    }
  }

  /** Posts one update straight to the webhook with a chosen secret header (for refusal tests). */
  async postToWebhook(update: Omit<FakeUpdate, 'update_id'>, secretToken: string | undefined): Promise<number> {
    if (!this.webhook) throw new Error('no webhook is set');
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (secretToken !== undefined) headers['x-telegram-bot-api-secret-token'] = secretToken;
    const response = await fetch(this.webhook.url, {
      method: 'POST',
      headers,
      body: JSON.stringify({ update_id: this.nextUpdateId++, ...update }),
    });
    await response.arrayBuffer();
    return response.status;
  }

  // ---------------------------------------------------------------- commands

  private setMyCommands(params: Record<string, unknown>): true {
    const commands = arrayParam(params.commands) as BotCommand[] | undefined;
    if (!commands) throw badRequest('parameter "commands" is required');
    if (commands.length > 100) throw badRequest('too many commands');
    for (const command of commands) {
      if (typeof command.command !== 'string' || !/^[a-z0-9_]{1,32}$/.test(command.command)) throw badRequest('BOT_COMMAND_INVALID');
      if (typeof command.description !== 'string' || command.description.length < 1 || command.description.length > 256) {
        throw badRequest('BOT_COMMAND_DESCRIPTION_INVALID');
      }
    }
    const languageCode = stringParam(params.language_code);
    if (languageCode !== undefined && languageCode !== '' && !/^[a-z]{2}$/.test(languageCode)) throw badRequest('invalid language code specified');
    this.commandSets.set(commandKey(objectParam(params.scope), languageCode), commands.map((c) => ({ command: c.command, description: c.description })));
    return true;
  }

  // ---------------------------------------------------------------- messages

  private sendMessage(params: Record<string, unknown>): FakeMessage {
    const chat = this.requireChat(params.chat_id);
    this.requireNotBlocked(chat.id);
    const { text, entities, raw, parseMode } = this.parseText(params);
    const replyMarkup = this.parseReplyMarkup(params.reply_markup);
    const reply = objectParam(params.reply_parameters) as { message_id?: number; allow_sending_without_reply?: boolean } | undefined;
    const replyToId = numberParam(reply?.message_id ?? params.reply_to_message_id);
    let replyTo: FakeMessage | undefined;
    if (replyToId !== undefined) {
      replyTo = this.findMessage(chat.id, replyToId);
      if (!replyTo && !(reply?.allow_sending_without_reply ?? params.allow_sending_without_reply)) {
        throw badRequest('message to be replied not found');
      }
    }
    const now = performance.now();
    const state: BotMessageState = {
      chatId: chat.id,
      messageId: this.allocateMessageId(chat.id),
      text,
      rawText: raw,
      entities,
      deleted: false,
      history: [{ text, at: now }],
    };
    if (parseMode !== undefined) state.parseMode = parseMode;
    if (replyMarkup) state.replyMarkup = replyMarkup;
    if (replyTo) state.replyToMessageId = replyTo.message_id;
    this.botMessages.set(messageKey(chat.id, state.messageId), state);
    // a message the bot sends replaces the draft preview in that chat
    this.drafts.delete(chat.id);
    const inChat = this.botMessagesByChat.get(chat.id);
    if (inChat) inChat.push(state);
    else this.botMessagesByChat.set(chat.id, [state]);
    return this.botMessageAsMessage(state);
  }

  private editMessageText(params: Record<string, unknown>): FakeMessage {
    if (params.inline_message_id !== undefined) throw badRequest('inline messages are not supported by the fake');
    const chat = this.requireChat(params.chat_id);
    this.requireNotBlocked(chat.id);
    const state = this.botMessages.get(messageKey(chat.id, numberParam(params.message_id) ?? -1));
    if (!state || state.deleted) throw badRequest('message to edit not found');
    const { text, entities, raw, parseMode } = this.parseText(params);
    const replyMarkup = this.parseReplyMarkup(params.reply_markup);
    if (
      text === state.text &&
      JSON.stringify(entities) === JSON.stringify(state.entities) &&
      JSON.stringify(replyMarkup) === JSON.stringify(state.replyMarkup)
    ) {
      throw badRequest(
        'message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message',
      );
    }
    state.text = text;
    state.rawText = raw;
    state.entities = entities;
    if (parseMode !== undefined) state.parseMode = parseMode;
    else delete state.parseMode;
    // an edit without reply_markup removes the inline keyboard
    if (replyMarkup) state.replyMarkup = replyMarkup;
    else delete state.replyMarkup;
    state.history.push({ text, at: performance.now() });
    return { ...this.botMessageAsMessage(state), edit_date: unixNow() };
  }

  private editMessageReplyMarkup(params: Record<string, unknown>): FakeMessage {
    const chat = this.requireChat(params.chat_id);
    const state = this.botMessages.get(messageKey(chat.id, numberParam(params.message_id) ?? -1));
    if (!state || state.deleted) throw badRequest('message to edit not found');
    const replyMarkup = this.parseReplyMarkup(params.reply_markup);
    if (JSON.stringify(replyMarkup) === JSON.stringify(state.replyMarkup)) {
      throw badRequest('message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message');
    }
    if (replyMarkup) state.replyMarkup = replyMarkup;
    else delete state.replyMarkup;
    return this.botMessageAsMessage(state);
  }

  private deleteMessage(params: Record<string, unknown>): true {
    const chat = this.requireChat(params.chat_id);
    const state = this.botMessages.get(messageKey(chat.id, numberParam(params.message_id) ?? -1));
    if (!state || state.deleted) throw badRequest('message to delete not found');
    state.deleted = true;
    return true;
  }

  private sendMessageDraft(params: Record<string, unknown>): true {
    const chat = this.requireChat(params.chat_id);
    this.requireNotBlocked(chat.id);
    if (chat.type !== 'private') throw badRequest('TEXTDRAFT_PEER_INVALID');
    const draftId = numberParam(params.draft_id);
    if (!draftId) throw badRequest('parameter "draft_id" must be non-zero');
    const text = params.text !== undefined ? this.parseText(params, true).text : '';
    const now = performance.now();
    this.drafts.set(chat.id, { chatId: chat.id, draftId, text, at: now, expiresAt: now + this.draftLifetimeMs });
    return true;
  }

  private getFile(params: Record<string, unknown>) {
    const fileId = stringParam(params.file_id) ?? '';
    const file = this.files.get(fileId);
    if (!file) throw badRequest('invalid file_id');
    if (file.size > this.maxDownloadBytes) throw badRequest('file is too big');
    return { file_id: fileId, file_unique_id: file.uniqueId, file_size: file.size, file_path: file.path };
  }

  // ---------------------------------------------------------------- helpers

  private parseText(params: Record<string, unknown>, allowEmpty = false): { text: string; entities: FakeEntity[]; raw: string; parseMode?: string } {
    const raw = stringParam(params.text) ?? '';
    const parseMode = stringParam(params.parse_mode);
    let text = raw;
    let entities: FakeEntity[] = (arrayParam(params.entities) as FakeEntity[] | undefined) ?? [];
    if (parseMode !== undefined && parseMode !== '') {
      if (parseMode !== 'HTML') throw badRequest(`unsupported parse_mode "${parseMode}" (the fake parses HTML only)`);
      try {
        ({ text, entities } = parseTelegramHtml(raw));
      } catch (error) {
        if (error instanceof EntityParseError) throw badRequest(`can't parse entities: ${error.message}`);
        throw error;
      }
    }
    if (!allowEmpty && text.trim() === '') throw badRequest('message text is empty');
    if (text.length > TEXT_LIMIT) throw badRequest('message is too long');
    const result: { text: string; entities: FakeEntity[]; raw: string; parseMode?: string } = { text, entities, raw };
    if (parseMode !== undefined && parseMode !== '') result.parseMode = parseMode;
    return result;
  }

  private parseReplyMarkup(value: unknown): FakeReplyMarkup | undefined {
    const markup = objectParam(value) as FakeReplyMarkup | undefined;
    if (!markup) return undefined;
    if (!Array.isArray(markup.inline_keyboard)) throw badRequest("can't parse reply keyboard markup JSON object");
    for (const button of markup.inline_keyboard.flat()) {
      if (typeof button.text !== 'string' || button.text === '') throw badRequest('BUTTON_TEXT_INVALID');
      if (button.callback_data !== undefined) {
        const bytes = Buffer.byteLength(button.callback_data, 'utf8');
        if (bytes < 1 || bytes > 64) throw badRequest('BUTTON_DATA_INVALID');
      }
    }
    return { inline_keyboard: markup.inline_keyboard.map((row) => row.map((button) => ({ ...button }))) };
  }

  private requireChat(value: unknown): FakeChat {
    const chat = this.chats.get(numberParam(value) ?? Number.NaN);
    if (!chat) throw badRequest('chat not found');
    return chat;
  }

  private requireNotBlocked(chatId: number): void {
    if (this.blocked.has(chatId)) throw new ApiError({ error_code: 403, description: 'Forbidden: bot was blocked by the user' });
  }

  private allocateMessageId(chatId: number): number {
    const id = this.nextMessageId.get(chatId) ?? 1;
    this.nextMessageId.set(chatId, id + 1);
    return id;
  }

  private newUserMessage(from: FakeUser, options: InjectOptions): FakeMessage {
    const chat = options.chat ?? this.privateChat(from);
    this.chats.set(chat.id, chat);
    const message: FakeMessage = { message_id: this.allocateMessageId(chat.id), date: unixNow(), chat, from };
    if (options.replyTo !== undefined) {
      const original = this.findMessage(chat.id, options.replyTo);
      if (!original) throw new Error(`no message ${options.replyTo} in chat ${chat.id} to reply to`);
      message.reply_to_message = stripReply(original);
    }
    return message;
  }

  private deliverMessage(message: FakeMessage): FakeMessage {
    this.userMessages.set(messageKey(message.chat.id, message.message_id), message);
    this.enqueue({ update_id: this.nextUpdateId++, message });
    return message;
  }

  private applyCaption(message: FakeMessage, caption: string | undefined): void {
    if (caption === undefined) return;
    message.caption = caption;
    const entities = detectEntities(caption);
    if (entities.length > 0) message.caption_entities = entities;
  }

  private findMessage(chatId: number, messageId: number): FakeMessage | undefined {
    const user = this.userMessages.get(messageKey(chatId, messageId));
    if (user) return user;
    const bot = this.botMessages.get(messageKey(chatId, messageId));
    return bot && !bot.deleted ? this.botMessageAsMessage(bot) : undefined;
  }

  private botMessageAsMessage(state: BotMessageState): FakeMessage {
    const chat = this.chats.get(state.chatId)!;
    const message: FakeMessage = { message_id: state.messageId, date: unixNow(), chat, from: this.botUser, text: state.text };
    if (state.entities.length > 0) message.entities = state.entities;
    if (state.replyMarkup) message.reply_markup = state.replyMarkup;
    if (state.replyToMessageId !== undefined) {
      const original = this.findMessage(state.chatId, state.replyToMessageId);
      if (original) message.reply_to_message = stripReply(original);
    }
    return message;
  }

  private photoSizesOf(image: Uint8Array): Promise<PhotoSizeSpec[]> {
    const key = createHash('sha1').update(image).digest('hex');
    let sizes = this.photoCache.get(key);
    if (!sizes) {
      sizes = resizeLikeTelegram(Buffer.from(image));
      this.photoCache.set(key, sizes);
    }
    return sizes;
  }
}

/** Telegram keeps a few re-encoded JPEG sizes, the largest at most 1280 px on its long side. */
async function resizeLikeTelegram(image: Buffer): Promise<PhotoSizeSpec[]> {
  const { default: sharp } = await import('sharp');
  const meta = await sharp(image).metadata();
  const longest = Math.max(meta.width ?? 1, meta.height ?? 1);
  const targets = [90, 320, 800, 1280].filter((side) => side < longest);
  targets.push(Math.min(longest, 1280));
  const specs: PhotoSizeSpec[] = [];
  for (const side of [...new Set(targets)]) {
    const { data, info } = await sharp(image)
      .resize({ width: side, height: side, fit: 'inside', withoutEnlargement: true })
      .jpeg({ quality: 87 })
      .toBuffer({ resolveWithObject: true });
    specs.push({ bytes: data, width: info.width, height: info.height });
  }
  return specs;
}

// ------------------------------------------------------------------ request parsing

async function readParams(req: IncomingMessage, url: URL): Promise<{ params: Record<string, unknown>; encoding: RecordedCall['encoding'] }> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const body = Buffer.concat(chunks);
  const contentType = req.headers['content-type'] ?? '';
  const params: Record<string, unknown> = {};
  for (const [key, value] of url.searchParams) params[key] = coerceFormValue(value);
  if (body.length === 0) return { params, encoding: url.searchParams.size > 0 ? 'query' : 'none' };
  if (contentType.startsWith('application/json')) {
    Object.assign(params, JSON.parse(body.toString('utf8')) as Record<string, unknown>);
    return { params, encoding: 'json' };
  }
  if (contentType.startsWith('multipart/form-data') || contentType.startsWith('application/x-www-form-urlencoded')) {
    // the WHATWG Response parses both form encodings
    const form = await new Response(body, { headers: { 'content-type': contentType } }).formData();
    for (const [key, value] of form) {
      params[key] = typeof value === 'string' ? coerceFormValue(value) : { filename: value.name, bytes: Buffer.from(await value.arrayBuffer()) };
    }
    return { params, encoding: contentType.startsWith('multipart') ? 'multipart' : 'urlencoded' };
  }
  throw new Error(`unsupported content-type ${contentType}`);
}

/** Form fields arrive as strings; JSON-serialized objects and arrays are decoded like the real API does. */
function coerceFormValue(value: string): unknown {
  const trimmed = value.trim();
  if (trimmed.startsWith('{') || trimmed.startsWith('[')) {
    try {
      return JSON.parse(trimmed);
    } catch {
      return value;
    }
  }
  return value;
}

function numberParam(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return Number(value);
  return undefined;
}

function stringParam(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}

function objectParam(value: unknown): Record<string, unknown> | undefined {
  if (typeof value === 'string') value = coerceFormValue(value);
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

function arrayParam(value: unknown): unknown[] | undefined {
  if (typeof value === 'string') value = coerceFormValue(value);
  return Array.isArray(value) ? value : undefined;
}

function errorBody(failure: ApiFailure): Record<string, unknown> {
  const body: Record<string, unknown> = { ok: false, error_code: failure.error_code, description: failure.description };
  const parameters: Record<string, number> = {};
  if (failure.retry_after !== undefined) parameters.retry_after = failure.retry_after;
  if (failure.migrate_to_chat_id !== undefined) parameters.migrate_to_chat_id = failure.migrate_to_chat_id;
  if (Object.keys(parameters).length > 0) body.parameters = parameters;
  return body;
}

function commandKey(scope: BotCommandScope | Record<string, unknown> | undefined, languageCode: string | undefined): string {
  const s = (scope ?? { type: 'default' }) as BotCommandScope;
  return `${s.type}|${s.chat_id ?? ''}|${s.user_id ?? ''}|${languageCode ?? ''}`;
}

function messageKey(chatId: number, messageId: number): string {
  return `${chatId}:${messageId}`;
}

function unixNow(): number {
  return Math.floor(Date.now() / 1000);
}

/** reply_to_message never nests a further reply_to_message. */
function stripReply(message: FakeMessage): FakeMessage {
  const { reply_to_message: _nested, ...rest } = message;
  return rest;
}

/** The entities a Telegram client attaches by itself: /commands and @mentions (UTF-16 offsets). */
export function detectEntities(text: string): FakeEntity[] {
  const entities: FakeEntity[] = [];
  const pattern = /(^|[\s(])((\/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]{3,32})?)|(@[A-Za-z0-9_]{5,32}))/g;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    const token = match[2]!;
    const offset = match.index + match[1]!.length;
    entities.push({ type: token.startsWith('/') ? 'bot_command' : 'mention', offset, length: token.length });
  }
  return entities;
}
