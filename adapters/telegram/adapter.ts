// The Telegram adapter: telegraf in, BotCore calls and rendered answers out. It only translates:
// messages and albums become BotRequests, commands (the core's command table) become core calls,
// callback queries become style choices and cancels. Limits, queueing, styles, conversations and
// strings live in the core. It also keeps the connection: a bounded, stoppable first getMe, and
// status() from the outcome of each getUpdates call (outages logged at a sane rate).
import { createServer, type Server } from 'node:http';
import { Telegraf } from 'telegraf';
import type { CallbackQuery, InlineKeyboardMarkup, Message, User } from 'telegraf/types';
import { ConnectionTracker, sleepUnlessAborted } from '../shared/connection.js';
import { EditSchedulers } from '../shared/edit-scheduler.js';
import { splitMessage } from '../shared/split-message.js';
import { argsFromText, findCommand, runCommand } from '../../src/bot/commands.js';
import type {
  AdapterStatus,
  BotChat,
  BotCore,
  BotRequest,
  BotUser,
  CommandContext,
  CommandResult,
  PlatformAdapter,
  StyleStatus,
  TelegramAdapterOptions,
} from '../../src/bot/types.js';
import { VistyleError } from '../../src/errors.js';
import { registerSecret, type Logger } from '../../src/log.js';
import { AlbumCollector } from './album.js';
import { TelegramAnswer, TELEGRAM_TEXT_LIMIT, type DraftSupport } from './answer.js';
import { apiErrorFields, describeApiError, isApiError, isTransient, retryAfterMs } from './api-errors.js';
import { commandMenus } from './commands.js';
import { readIncoming, type BotIdentity, type IncomingText } from './incoming.js';
import { picturesOf } from './media.js';
import { GlobalPacer } from './pacer.js';

/** Knobs beyond the shared contract; the defaults are what Telegram tolerates. */
export interface TelegramAdapterTuning {
  /** Gap between edits in a private chat (default 1000 ms). */
  privateEditIntervalMs?: number;
  /** Gap between edits in a group (default 3000 ms). */
  groupEditIntervalMs?: number;
  /** `typing` is re-sent this often while the model writes (default 4500 ms; it lasts 5 s). */
  typingIntervalMs?: number;
  /** Album parts arriving within this much of each other are one request (default 1200 ms). */
  albumWindowMs?: number;
  /** Stream with sendMessageDraft in private chats when the Bot API has it (default true). */
  drafts?: boolean;
  /** Register the command menu with setMyCommands on start (default true). */
  registerCommands?: boolean;
  /** Text calls (sends, edits, drafts) per second across all chats (default 30, Telegram's limit). */
  messagesPerSecond?: number;
  /** stop() waits at most this long for answers and replies still being delivered (default 5000 ms). */
  stopDrainMs?: number;
  /** getMe attempts before start() gives up on an unreachable Bot API (default 5, about 20 s). */
  startAttempts?: number;
  /** Least time between two "still unreachable" log lines during an outage (default 60 s). */
  outageReportEveryMs?: number;
}

export type CreateTelegramAdapterOptions = TelegramAdapterOptions & TelegramAdapterTuning;

const ALLOWED_UPDATES = ['message', 'callback_query'] as const;
const CANCEL_PREFIX = 'cancel:';
const STYLE_PREFIX = 'style:';

type Incoming = Message & { from: User };

export class TelegramAdapter implements PlatformAdapter {
  readonly name = 'telegram' as const;
  readonly bot: Telegraf;

  private readonly core: BotCore;
  private readonly logger: Logger;
  private readonly lanes: EditSchedulers;
  private readonly albums: AlbumCollector<Incoming>;
  private readonly drafts: DraftSupport;
  private readonly typingIntervalMs: number;
  /** Cancel button number -> core request id, while the request is open. */
  private readonly cancels = new Map<string, string>();
  /** Requests still open, and replies still being sent: stop() waits a little for them. */
  private readonly outstanding = new Set<Promise<unknown>>();
  private readonly work = new YieldingQueue();
  private readonly pacer: GlobalPacer;
  private identity: BotIdentity | undefined;
  private nextCancel = 1;
  private nextDraftId = 1 + Math.floor(Math.random() * 1_000_000);
  private polling: Promise<void> | undefined;
  private webhookServer: Server | undefined;
  private state: 'new' | 'starting' | 'running' | 'stopped' = 'new';
  /** Aborted by stop(): ends a start() still retrying getMe, at once. */
  private readonly lifetime = new AbortController();
  private readonly connection: ConnectionTracker;

  constructor(private readonly options: CreateTelegramAdapterOptions) {
    registerSecret(options.token);
    registerSecret(options.webhook?.secretToken);
    this.core = options.core;
    this.logger = options.logger.child({ adapter: 'telegram' });
    this.typingIntervalMs = options.typingIntervalMs ?? 4500;
    this.drafts = { enabled: options.drafts ?? true };
    const telegram: { webhookReply: boolean; apiRoot?: string } = { webhookReply: false };
    if (options.apiRoot) telegram.apiRoot = options.apiRoot;
    this.bot = new Telegraf(options.token, { telegram, handlerTimeout: 30_000 });
    this.connection = new ConnectionTracker({
      platform: 'telegram',
      logger: this.logger,
      what: 'Telegram Bot API',
      ...(options.outageReportEveryMs !== undefined ? { reportEveryMs: options.outageReportEveryMs } : {}),
    });
    this.observePolling();
    const privateGap = options.privateEditIntervalMs ?? 1000;
    const groupGap = options.groupEditIntervalMs ?? 3000;
    this.lanes = new EditSchedulers((chatKey) => ({
      // Telegram private chats have positive ids, groups and channels negative ones
      minIntervalMs: Number(chatKey) < 0 ? groupGap : privateGap,
      retryAfterMs,
      admit: (kind) => this.pacer.admit(kind === 'final' ? 'final' : 'stream'),
      describeError: (error) => ({ ...describeApiError(error) }),
      logger: this.logger,
    }));
    this.pacer = new GlobalPacer(options.messagesPerSecond ?? 30);
    this.albums = new AlbumCollector(options.albumWindowMs ?? 1200, (parts) => {
      // runs from a timer: a failure must be a log line, not an uncaught exception
      try {
        this.onAlbum(parts);
      } catch (error) {
        this.logger.error({ ...apiErrorFields(error, 'handleAlbum', parts[0]?.chat.id) }, 'album handling failed');
      }
    });

    // telegraf hands over a whole getUpdates batch (up to 100 updates) at once; the work queue
    // spreads a burst over several turns of the event loop instead of one long block.
    this.bot.on('message', (ctx) => {
      const message = ctx.message as Message;
      this.work.push(() => this.guard(ctx.update.update_id, () => this.onMessage(message)));
    });
    this.bot.on('callback_query', (ctx) => {
      const query = ctx.callbackQuery;
      this.work.push(() => this.guard(ctx.update.update_id, () => this.onCallbackQuery(query)));
    });
    this.bot.catch((error, ctx) => {
      this.logger.error({ ...apiErrorFields(error, 'handleUpdate'), updateId: ctx.update.update_id }, 'update handler failed');
    });
  }

  async start(): Promise<void> {
    if (this.state === 'stopped') throw stoppedWhileStarting();
    if (this.state !== 'new') return;
    this.state = 'starting';
    this.connection.starting();
    try {
      const me = await this.getMe();
      this.bot.botInfo = me;
      this.identity = { id: me.id, username: me.username };
      if (this.options.registerCommands ?? true) void this.registerCommands();
      if (this.options.webhook) {
        await this.startWebhook(this.options.webhook);
        this.connection.connected();
      } else {
        await this.bot.telegram.deleteWebhook();
        // The Bot API has just answered; a long poll that is then held open is no outage (the
        // next getUpdates that fails or succeeds moves the state on).
        this.connection.connected();
      }
    } catch (error) {
      this.connection.stop();
      throw this.lifetime.signal.aborted ? stoppedWhileStarting() : error;
    }
    if (this.lifetime.signal.aborted) {
      this.webhookServer?.closeAllConnections();
      this.webhookServer?.close();
      throw stoppedWhileStarting();
    }
    this.state = 'running';
    if (!this.options.webhook) this.polling = this.pollForever();
    this.logger.info({ username: this.identity.username, mode: this.options.webhook ? 'webhook' : 'polling' }, 'Telegram adapter started');
  }

  status(): AdapterStatus {
    return this.connection.status();
  }

  async stop(): Promise<void> {
    this.lifetime.abort();
    this.connection.stop();
    if (this.state !== 'running') {
      this.state = 'stopped';
      return;
    }
    this.state = 'stopped';
    // parts already received still become a request (the core answers or says why not)
    this.albums.flushAll();
    try {
      this.bot.stop('vistyle stop');
    } catch {
      // polling had already ended
    }
    if (this.polling) await withTimeout(this.polling, 10_000);
    // let answers and replies already on their way reach the users (bounded: the lanes may be
    // waiting out a flood wait)
    await withTimeout(Promise.all([...this.outstanding]), this.options.stopDrainMs ?? 5000);
    const server = this.webhookServer;
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    this.logger.info('Telegram adapter stopped');
  }

  // ------------------------------------------------------------------ connecting

  /** getMe, retried on network trouble (2, 4, 6, 8 s apart); stop() ends it at once. */
  private async getMe() {
    const attempts = this.options.startAttempts ?? 5;
    const signal = this.lifetime.signal;
    for (let attempt = 1; ; attempt++) {
      try {
        const raw = this.bot.telegram as unknown as RawApi;
        return (await raw.callApi('getMe', {}, { signal })) as Awaited<ReturnType<Telegraf['telegram']['getMe']>>;
      } catch (error) {
        if (signal.aborted) throw stoppedWhileStarting();
        if (isApiError(error, 401) || isApiError(error, 404)) {
          throw new VistyleError('CONFIG_INVALID', 'Telegram rejected the bot token (check TELEGRAM_BOT_TOKEN)', { cause: error });
        }
        const { description } = describeApiError(error);
        if (attempt >= attempts || !(isTransient(error) || retryAfterMs(error) !== undefined)) {
          throw new VistyleError('NETWORK', `cannot reach the Telegram Bot API: ${description}`, { cause: error });
        }
        const wait = Math.min(2000 * attempt, 10_000);
        this.connection.failed(wait, description);
        if (!(await sleepUnlessAborted(wait, signal))) throw stoppedWhileStarting();
      }
    }
  }

  /**
   * Connection state from the calls telegraf makes: a getUpdates that succeeds means connected,
   * one that fails (telegraf retries by itself every few seconds, silently) an outage.
   */
  private observePolling(): void {
    const telegram = this.bot.telegram as unknown as RawApi;
    const callApi = telegram.callApi.bind(telegram);
    telegram.callApi = async (method, payload, options) => {
      try {
        const result = await callApi(method, payload, options);
        if (method === 'getUpdates' && this.state === 'running') this.connection.connected();
        return result;
      } catch (error) {
        const aborted = (error as Error)?.name === 'AbortError' || this.state !== 'running';
        if (method === 'getUpdates' && !aborted) {
          const info = describeApiError(error);
          // telegraf waits retry_after (or 5 s) before the next getUpdates
          this.connection.failed(info.retryAfterMs ?? 5000, info.description);
        }
        throw error;
      }
    };
  }

  /** Long polling, restarted with a growing pause if it ever fails (409 conflicts, 401s, bugs). */
  private async pollForever(): Promise<void> {
    let pause = 2000;
    while (this.state === 'running') {
      try {
        await this.startPolling();
        return; // stopped on purpose
      } catch (error) {
        if (this.state !== 'running') return;
        this.connection.failed(pause, describeApiError(error).description);
        this.logger.error(apiErrorFields(error, 'getUpdates'), 'long polling failed; restarting');
        await sleep(pause);
        pause = Math.min(pause * 2, 60_000);
      }
    }
  }

  /**
   * telegraf's launch() awaits getMe and deleteWebhook before it creates its poller, so a stop()
   * in between finds nothing to stop and polling starts anyway. start() has already done both,
   * so go straight to telegraf's startPolling, which creates the poller synchronously.
   */
  private startPolling(): Promise<void> {
    const bot = this.bot as unknown as { startPolling?: (allowedUpdates: string[]) => Promise<void> };
    if (typeof bot.startPolling === 'function') return bot.startPolling([...ALLOWED_UPDATES]);
    return this.bot.launch({ allowedUpdates: [...ALLOWED_UPDATES] });
  }

  private async startWebhook(webhook: NonNullable<TelegramAdapterOptions['webhook']>): Promise<void> {
    const path = new URL(webhook.url).pathname;
    // telegraf's callback checks the path and X-Telegram-Bot-Api-Secret-Token (403 otherwise)
    const callback = this.bot.webhookCallback(path, { secretToken: webhook.secretToken });
    const server = createServer((req, res) => {
      callback(req, res).catch((error: unknown) => {
        this.logger.error(apiErrorFields(error, 'webhook'), 'webhook request failed');
        if (!res.headersSent) res.writeHead(500).end();
      });
    });
    const host = webhook.host ?? '0.0.0.0';
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error) =>
        reject(new VistyleError('CONFIG_INVALID', `cannot listen on ${host}:${webhook.port} for the Telegram webhook: ${error.message}`, { cause: error })),
      );
      server.listen(webhook.port, host, () => resolve());
    });
    this.webhookServer = server;
    try {
      await this.bot.telegram.setWebhook(webhook.url, {
        secret_token: webhook.secretToken,
        allowed_updates: [...ALLOWED_UPDATES],
      });
    } catch (error) {
      server.closeAllConnections();
      server.close();
      this.webhookServer = undefined;
      const { description } = describeApiError(error);
      throw new VistyleError('CONFIG_INVALID', `Telegram refused the webhook URL (check TELEGRAM_WEBHOOK_URL): ${description}`, { cause: error });
    }
  }

  private async registerCommands(): Promise<void> {
    for (const menu of commandMenus()) {
      try {
        await this.bot.telegram.setMyCommands(menu.commands, menu.languageCode ? { language_code: menu.languageCode } : {});
      } catch (error) {
        this.logger.warn({ ...apiErrorFields(error, 'setMyCommands'), languageCode: menu.languageCode ?? 'default' }, 'could not register the command menu');
      }
    }
  }

  // ------------------------------------------------------------------ messages

  private onMessage(message: Message): void {
    if (!message.from || message.from.is_bot || !this.identity) return;
    const incoming = message as Incoming;
    if ('media_group_id' in incoming && incoming.media_group_id) {
      this.albums.add(`${incoming.chat.id}:${incoming.media_group_id}`, incoming);
      return;
    }
    const text = readIncoming(incoming, this.identity, incoming.chat.type === 'private');
    if (!text.addressed) return;
    // every command but /ask (a question for the model, with this message's picture) is run here
    if (text.command !== undefined && findCommand(text.command)?.name !== 'ask') {
      this.runCommand(incoming, text);
      return;
    }
    this.ask(incoming, [incoming], text);
  }

  private onAlbum(parts: Incoming[]): void {
    if (!this.identity) return;
    const identity = this.identity;
    const isPrivate = parts[0]!.chat.type === 'private';
    const captioned = parts.find((part) => 'caption' in part && part.caption);
    const main = captioned ?? parts[0]!;
    const text = readIncoming(main, identity, isPrivate);
    const addressed = parts.some((part) => readIncoming(part, identity, isPrivate).addressed);
    if (!addressed || text.otherBot) return;
    this.ask(main, parts, text);
  }

  private ask(message: Incoming, parts: Incoming[], text: IncomingText): void {
    const user = this.botUser(message.from);
    const chat = this.botChat(message);
    const maxBytes = this.core.limits.maxImageBytes;
    // every part's picture, in the album's order (the core takes the first N and says so)
    const images = parts.flatMap((part) => picturesOf(part, this.bot.telegram, maxBytes));
    const request: BotRequest = { user, chat, messageId: String(message.message_id) };
    if (text.question !== '') request.question = text.question;
    if (images.length > 0) request.images = images;
    const related = parts.filter((part) => part !== message).map((part) => String(part.message_id));
    if (related.length > 0) request.relatedMessageIds = related;
    // an album sent as a reply: every part replies to the same message
    const replying = [message, ...parts].find((part) => 'reply_to_message' in part && part.reply_to_message);
    const replied = replying && 'reply_to_message' in replying ? replying.reply_to_message : undefined;
    if (replied) {
      request.replyToMessageId = String(replied.message_id);
      if (replied.from?.id !== this.identity?.id) {
        const repliedPictures = picturesOf(replied, this.bot.telegram, maxBytes);
        if (repliedPictures.length > 0) request.replyImages = repliedPictures;
      }
    }

    const cancelNumber = String(this.nextCancel++);
    const answer = new TelegramAnswer({
      telegram: this.bot.telegram,
      lane: this.lanes.forChat(String(message.chat.id)),
      chatId: message.chat.id,
      isPrivate: message.chat.type === 'private',
      replyToMessageId: message.message_id,
      cancelData: `${CANCEL_PREFIX}${cancelNumber}`,
      drafts: this.drafts,
      draftId: this.nextDraftId++,
      typingIntervalMs: this.typingIntervalMs,
      logger: this.logger,
    });
    const ticket = this.core.ask(request, answer);
    this.cancels.set(cancelNumber, ticket.requestId);
    this.track(
      ticket.done.finally(() => {
        answer.end();
        this.cancels.delete(cancelNumber);
      }),
    );
  }

  // ------------------------------------------------------------------ commands

  /** A command of the core's table; an unknown one gets the help where it is clearly meant for us. */
  private runCommand(message: Incoming, text: IncomingText): void {
    const ctx: CommandContext = { user: this.botUser(message.from), chat: this.botChat(message) };
    const replyTo = message.message_id;
    const command = findCommand(text.command ?? '');
    if (!command) {
      // "/foo" in a group may be meant for another bot; only answer when it is clearly ours
      if (message.chat.type === 'private' || /^\/\w+@/.test(('text' in message ? message.text : '') ?? '')) {
        this.send(message.chat.id, this.core.help(ctx).text, { replyTo });
      }
      return;
    }
    const args = argsFromText(command, 'telegram', text.question);
    const result: CommandResult = runCommand(this.core, command, ctx, args, (error) =>
      this.logger.error({ ...apiErrorFields(error, 'command'), command: command.name }, 'command failed'),
    );
    // `/style` on its own: the styles as buttons under the answer
    const keyboard = command.name === 'style' && !args.name && result.ok && isStyleStatus(result) ? this.styleKeyboard(result) : undefined;
    this.send(message.chat.id, result.text, { replyTo, keyboard });
  }

  private styleKeyboard(status: StyleStatus): InlineKeyboardMarkup {
    const rows = status.choices
      .filter((choice) => Buffer.byteLength(`${STYLE_PREFIX}${choice.id}`) <= 64)
      .map((choice) => [
        {
          text: `${choice.id === status.current.id ? '✓ ' : ''}${choice.name}`,
          callback_data: `${STYLE_PREFIX}${choice.id}`,
        },
      ]);
    return { inline_keyboard: rows };
  }

  // ------------------------------------------------------------------ buttons

  private onCallbackQuery(query: CallbackQuery): void {
    const data = 'data' in query ? query.data : undefined;
    const user = this.botUser(query.from);
    const message = query.message;
    let toast = '';
    if (data?.startsWith(CANCEL_PREFIX)) {
      // a button of a request that has ended: the core says so (in the user's language)
      const requestId = this.cancels.get(data.slice(CANCEL_PREFIX.length)) ?? `ended:${data}`;
      toast = this.core.cancel(requestId, user).text;
    } else if (data?.startsWith(STYLE_PREFIX) && message) {
      const chat: BotChat = {
        platform: 'telegram',
        id: String(message.chat.id),
        kind: message.chat.type === 'private' ? 'private' : 'group',
      };
      const status = this.core.setStyle({ user, chat }, data.slice(STYLE_PREFIX.length));
      toast = status.text;
      if (status.ok) {
        const keyboard = this.styleKeyboard(status);
        this.lanes.forChat(String(message.chat.id)).update(`keyboard:${message.message_id}`, status.text, async (latest) => {
          try {
            await this.bot.telegram.editMessageText(message.chat.id, message.message_id, undefined, latest, { reply_markup: keyboard });
          } catch (error) {
            if (!isApiError(error, 400, /not modified/)) throw error;
          }
        });
      }
    }
    // always answer, or the button keeps spinning; the toast holds at most 200 characters
    this.bot.telegram.answerCbQuery(query.id, toast.slice(0, 200) || undefined).catch((error: unknown) => {
      this.logger.warn(apiErrorFields(error, 'answerCallbackQuery'), 'could not answer a button press');
    });
  }

  // ------------------------------------------------------------------ helpers

  /** Sends a reply through the chat's lane (paced, retried after 429s), split at 4096 characters. */
  private send(chatId: number, text: string, options: { replyTo?: number; keyboard?: InlineKeyboardMarkup | undefined } = {}): void {
    const lane = this.lanes.forChat(String(chatId));
    const chunks = splitMessage(text, TELEGRAM_TEXT_LIMIT);
    chunks.forEach((chunk, index) => {
      const extra: Record<string, unknown> = {};
      if (options.replyTo !== undefined) extra.reply_parameters = { message_id: options.replyTo, allow_sending_without_reply: true };
      if (options.keyboard && index === chunks.length - 1) extra.reply_markup = options.keyboard;
      this.track(
        lane
          .final(undefined, () => this.bot.telegram.sendMessage(chatId, chunk, extra))
          .catch((error: unknown) => this.logger.warn(apiErrorFields(error, 'sendMessage', chatId), 'could not send a reply')),
      );
    });
  }

  /** Runs an update's handling; a bug in it is logged, never thrown into the event loop. */
  private guard(updateId: number, handle: () => void): void {
    try {
      handle();
    } catch (error) {
      this.logger.error({ ...apiErrorFields(error, 'handleUpdate'), updateId }, 'update handler failed');
    }
  }

  private track(work: Promise<unknown>): void {
    const settled = work.then(
      () => undefined,
      () => undefined,
    );
    this.outstanding.add(settled);
    void settled.then(() => this.outstanding.delete(settled));
  }

  private botUser(from: User): BotUser {
    const user: BotUser = { platform: 'telegram', id: String(from.id) };
    const name = [from.first_name, from.last_name].filter(Boolean).join(' ') || from.username;
    if (name) user.displayName = name;
    if (from.language_code) user.languageCode = from.language_code;
    return user;
  }

  private botChat(message: Message): BotChat {
    return { platform: 'telegram', id: String(message.chat.id), kind: message.chat.type === 'private' ? 'private' : 'group' };
  }
}

/**
 * Runs queued jobs in order, one per turn of the event loop (each with the promise work it starts,
 * which is most of a request's set-up in the core), so that timers and I/O — other chats' edits,
 * the engine's tokens — get their turn during a burst of updates.
 */
class YieldingQueue {
  private readonly jobs: (() => void)[] = [];
  private scheduled = false;

  push(job: () => void): void {
    this.jobs.push(job);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.runOne());
    }
  }

  private runOne(): void {
    this.jobs.shift()?.();
    if (this.jobs.length > 0) setImmediate(() => this.runOne());
    else this.scheduled = false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function stoppedWhileStarting(): VistyleError {
  return new VistyleError('CANCELLED', 'the Telegram adapter was stopped while connecting');
}

function isStyleStatus(result: CommandResult): result is StyleStatus {
  return 'choices' in result && Array.isArray((result as StyleStatus).choices);
}

interface RawApi {
  callApi(method: string, payload: Record<string, unknown>, options?: { signal?: AbortSignal }): Promise<unknown>;
}

async function withTimeout(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise.catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
