// The bot core: everything between the platform adapters and the engine that is the same on every
// platform. A request goes: access check -> question and picture checks (from metadata; the first
// VISTYLE_MAX_IMAGES_PER_MESSAGE pictures, the user told of the rest) -> conversation lookup
// (follow-ups; new pictures in a reply join the conversation) -> style resolution -> the
// scheduler (one request however many pictures: per-user limits, queue cap, positions) ->
// pictures downloaded and turned into what the model sees (animations and videos: frames,
// src/media) -> engine.generate streamed to the sink (the oldest turns left out to fit, the user
// told) -> the turn and its pictures stored so replies can continue it. Every accepted request ends in exactly one terminal
// sink call, with a polite localised message when there is no answer.
import { createHash, randomUUID } from 'node:crypto';
import type { AccessConfig, LimitsConfig, MediaConfig } from '../config/config.js';
import { idListMatches } from '../config/config.js';
import type { Engine, GenerationResult } from '../engine/types.js';
import { isVistyleError, VistyleError, type ErrorCode } from '../errors.js';
import { errorFields, moduleLogger, redactSecrets, type Logger } from '../log.js';
import { BotMetrics } from '../metrics/metrics.js';
import type { AnswerScheduler } from '../scheduler/answer-scheduler.js';
import { LimitError, Scheduler } from '../scheduler/scheduler.js';
import type { ConversationWithTurns, Store } from '../store/store.js';
import { buildStyledRequest } from '../styles/conversation.js';
import type { Style, StyleRegistry } from '../styles/types.js';
import { helpText } from './commands.js';
import { errorMessage, languageFromCode, t } from './i18n.js';
import { downloadLimit, downloadSource, precheckMedia } from './image-input.js';
import { conversationPrompt, type PromptPicture, type StoredPicture } from './conversation-pictures.js';
import { mediaRefusalOf } from '../media/errors.js';
import { expandMedia, videoTooLarge } from '../media/pictures.js';
import { isVideoMime } from '../media/sniff.js';
import { finalAnswerText, SinkDriver } from './sink-driver.js';
import { styledStatelessRequest, type StatelessAnswer, type StatelessHooks, type StatelessRequest } from './stateless.js';
import type {
  AccessDecision,
  AnswerSink,
  AskOutcome,
  AskTicket,
  BotChat,
  BotCore,
  BotRequest,
  BotUser,
  CommandContext,
  CommandResult,
  CoreLimits,
  ImageSource,
  Language,
  MessageParams,
  QueueStatusResult,
  SetStyleOptions,
  StylesList,
  StyleSource,
  StyleStatus,
  StyleSummary,
} from './types.js';

export interface CoreConfig {
  limits: LimitsConfig;
  access: AccessConfig;
  defaultLanguage: Language;
  /** Pictures per message, animations and videos (default DEFAULT_MEDIA_CONFIG). */
  media?: MediaConfig;
}

/** The media settings when the caller gives none (as loadConfig's defaults on CPU). */
export const DEFAULT_MEDIA_CONFIG: Readonly<MediaConfig> = Object.freeze({
  maxImagesPerMessage: 4,
  videoFrames: 4,
  videoMaxSeconds: 120,
  videoMaxBytes: 50 * 1024 * 1024,
});

/** A registry that can be reloaded on an admin's request (H8's LiveStyleRegistry). */
type ReloadableRegistry = StyleRegistry & {
  reload?: () => { ok: true; styles: number; defaultId: string } | { ok: false; error: VistyleError };
};

export interface BotCoreDeps {
  engine: Engine;
  styles: ReloadableRegistry;
  store: Store;
  config: CoreConfig;
  logger?: Logger;
  metrics?: BotMetrics;
  /** The queue and limits (default: the in-process Scheduler; src/queue's RedisScheduler for a front end). */
  scheduler?: AnswerScheduler;
  /** How often to forget idle conversations (default hourly). */
  expirySweepMs?: number;
}

interface LiveRequest {
  id: string;
  user: BotUser;
  chat: BotChat;
  messageIds: Set<string>;
  /** Set once the request is in the scheduler. */
  scheduled: boolean;
  /**
   * Set when the scheduler has taken the request into the line (its first position or start). The
   * in-process scheduler decides its limits in submit(); the Redis one a moment later, so a limit
   * refusal can still come after submit() returned.
   */
  admitted: boolean;
  /** Aborts the picture download (cancel before the engine starts). */
  download: AbortController;
  cancelledBy?: 'user' | 'shutdown';
}

interface Answer {
  text: string;
  result: GenerationResult;
  historyTurnsUsed: number;
  /** Turns of the history window left out because the conversation did not fit. */
  droppedTurns: number;
}

interface RequestPictures {
  /** What this request brought (frames of clips), shown with the question and stored with its turn. */
  fresh: (PromptPicture & { mime: string })[];
  /** The conversation's pictures from the store. */
  stored: (StoredPicture & { mime: string | null })[];
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Bot API ids can be numbers; the core's keys are strings. */
const key = (platform: string, id: string) => `${platform}:${id}`;

export class BotCoreImpl implements BotCore {
  readonly limits: CoreLimits;
  readonly metrics: BotMetrics;
  private readonly engine: Engine;
  private readonly styles: ReloadableRegistry;
  private readonly store: Store;
  private readonly config: CoreConfig;
  private readonly media: MediaConfig;
  private readonly mediaLimits: { maxImageBytes: number; maxVideoBytes: number };
  private readonly logger: Logger;
  private readonly scheduler: AnswerScheduler;
  private readonly live = new Map<string, LiveRequest>();
  private readonly outstanding = new Set<Promise<unknown>>();
  private readonly expiryTimer: NodeJS.Timeout;
  private closing = false;

  constructor(deps: BotCoreDeps) {
    this.engine = deps.engine;
    this.styles = deps.styles;
    this.store = deps.store;
    this.config = deps.config;
    this.media = deps.config.media ?? DEFAULT_MEDIA_CONFIG;
    this.mediaLimits = { maxImageBytes: deps.config.limits.maxImageBytes, maxVideoBytes: this.media.videoMaxBytes };
    this.logger = deps.logger ?? moduleLogger('bot');
    this.metrics = deps.metrics ?? new BotMetrics();
    const limits = deps.config.limits;
    this.limits = { maxImageBytes: limits.maxImageBytes, maxQuestionChars: limits.maxQuestionChars };
    // One waiting line: the scheduler runs as many requests as the engine decodes together, so a
    // request the engine cannot take yet is still "waiting, position N" here, and its time-out
    // starts when it starts. (A queue front end brings its own scheduler.)
    this.scheduler =
      deps.scheduler ??
      new Scheduler({
        slots: this.engine.info.slots,
        userInFlight: limits.userInFlight,
        userPerMinute: limits.userPerMinute,
        maxQueueLength: limits.maxQueueLength,
        requestTimeoutMs: limits.requestTimeoutMs,
        metrics: this.metrics,
      });
    this.sweepExpired();
    this.expiryTimer = setInterval(() => this.sweepExpired(), deps.expirySweepMs ?? 3600_000);
    this.expiryTimer.unref();
  }

  // ---------------------------------------------------------------- asking

  ask(request: BotRequest, sink: AnswerSink): AskTicket {
    const requestId = randomUUID();
    const log = this.logger.child({
      requestId,
      platform: request.user.platform,
      chatId: request.chat.id,
      chatKind: request.chat.kind,
      userId: request.user.id,
    });
    const language = this.safeLanguage(request);
    const driver = new SinkDriver(sink, log, language);
    let decide: (accepted: boolean) => void = () => undefined;
    const accepted = new Promise<boolean>((resolve) => (decide = resolve));
    const liveRequest: LiveRequest = {
      id: requestId,
      user: request.user,
      chat: request.chat,
      messageIds: new Set([request.messageId, ...(request.relatedMessageIds ?? [])].filter((id): id is string => !!id)),
      scheduled: false,
      admitted: false,
      download: new AbortController(),
    };
    this.live.set(requestId, liveRequest);
    const done = this.handle(request, liveRequest, driver, log, language, decide)
      .catch(async (error: unknown): Promise<AskOutcome> => {
        // Last line of defence: nothing accepted is dropped.
        log.error({ error: errorFields(error, { stack: true }) }, 'request pipeline failed unexpectedly');
        const text = errorMessage(language, 'INTERNAL');
        const refused = !liveRequest.admitted;
        decide(false);
        await driver.failed(text, 'INTERNAL', refused);
        return { status: 'failed', code: 'INTERNAL', text, messageIds: [] };
      })
      .finally(() => {
        decide(false); // no-op once decided
        this.live.delete(requestId);
        this.outstanding.delete(done);
      });
    this.outstanding.add(done);
    return { requestId, language, accepted, done };
  }

  private async handle(
    request: BotRequest,
    liveRequest: LiveRequest,
    driver: SinkDriver,
    log: Logger,
    lang: Language,
    decide: (accepted: boolean) => void,
  ): Promise<AskOutcome> {
    await Promise.resolve(); // no sink call before ask() has returned its ticket
    const startedAt = Date.now();
    const record: Record<string, unknown> = { lang, pictures: request.images?.length ?? 0, replyPictures: request.replyImages?.length ?? 0 };
    let style: Style | undefined;

    const fail = async (error: unknown): Promise<AskOutcome> => {
      const { code, text } = this.describeFailure(error, lang, liveRequest);
      const refused = !liveRequest.admitted;
      decide(false);
      await driver.failed(text, code, refused);
      this.metrics.requests.inc({ platform: request.user.platform, outcome: 'failed' });
      this.metrics.errors.inc({ code });
      const level = code === 'INTERNAL' ? 'error' : code === 'ENGINE_CRASHED' ? 'warn' : 'info';
      const reason = isVistyleError(error) ? mediaRefusalOf(error) : undefined;
      log[level](
        {
          ...record,
          style: style?.id,
          outcome: 'failed',
          code,
          ...(reason ? { reason } : {}),
          err: isVistyleError(error) ? redactSecrets(error.message) : redactSecrets(String((error as Error)?.message ?? error)),
          totalMs: Date.now() - startedAt,
        },
        'request failed',
      );
      return { status: 'failed', code, text, messageIds: [] };
    };

    try {
      // 1. who and where
      const access = this.checkAccess(request.user, request.chat);
      if (!access.allowed) throw new VistyleError('NOT_ALLOWED', 'not on the allow-lists');
      if (this.closing) throw new VistyleError('SHUTTING_DOWN', 'shutting down');

      // 2. what: the question
      const question = (request.question ?? '').trim();
      if (question.length > this.config.limits.maxQuestionChars) {
        throw new VistyleError('PROMPT_TOO_LONG', `the question has ${question.length} characters (limit ${this.config.limits.maxQuestionChars})`);
      }

      // 3. which pictures and conversation: new pictures replying to a known message join its
      //    conversation, else start one; without new pictures a reply to a known message
      //    continues its conversation; else the replied-to message's own pictures start one;
      //    else the chat's current conversation continues.
      const platform = request.chat.platform;
      const replied = request.replyToMessageId ? this.store.findByMessage(platform, request.chat.id, request.replyToMessageId) : undefined;
      let conversation: ConversationWithTurns | undefined = replied;
      let sent = request.images ?? [];
      if (sent.length === 0) {
        if (!conversation && request.replyImages && request.replyImages.length > 0) sent = request.replyImages;
        if (!conversation && sent.length === 0) conversation = this.store.latest(platform, request.chat.id);
        if (!conversation && sent.length === 0) throw new VistyleError('IMAGE_MISSING', 'no picture and no conversation to continue');
        if (conversation && !question) throw new VistyleError('QUESTION_EMPTY', 'a follow-up needs a question');
      }
      // More pictures than a message may bring: the first ones, and the user is told.
      const sources = sent.slice(0, this.media.maxImagesPerMessage);
      const skipped = sent.length - sources.length;
      for (const source of sources) await precheckMedia(source, this.mediaLimits);
      record.followUp = conversation !== undefined;
      record.conversationId = conversation?.id;
      record.newPictures = sources.length;
      if (skipped > 0) record.picturesSkipped = skipped;

      // 4. which voice
      const resolved = this.resolveStyle(request.user, request.chat, request.style);
      style = resolved.style;
      record.styleSource = resolved.source;

      // 5. the queue (one request, however many pictures); accepted (AskTicket.accepted) once the
      //    scheduler has admitted it
      const admit = () => {
        if (liveRequest.admitted) return;
        liveRequest.admitted = true;
        decide(true);
      };
      let pictures!: Promise<RequestPictures>;
      const job = this.scheduler.submit<Answer>({
        id: liveRequest.id,
        userKey: key(request.user.platform, request.user.id),
        exempt: false,
        onPosition: (position) => {
          admit();
          driver.queued(position);
        },
        onStart: () => {
          admit();
          driver.started();
        },
        onNotice: (notice) => driver.progress(t(lang, notice)),
        run: async ({ signal, waitedMs, onRestart }) => {
          record.waitMs = waitedMs;
          return this.generate({ style: style!, question, lang, conversation, pictures: await pictures, signal, driver, onRestart });
        },
      });
      liveRequest.scheduled = true;

      // The pictures download (and clips become frames) while the request waits; a failure takes
      // it out of the line.
      pictures = this.loadPictures(sources, conversation, liveRequest.download.signal, record);
      let pictureError: unknown;
      pictures.catch((error: unknown) => {
        pictureError = error;
        this.scheduler.cancel(liveRequest.id);
      });

      let answer: Answer;
      try {
        answer = await job.result;
      } catch (error) {
        throw pictureError ?? error;
      } finally {
        liveRequest.download.abort();
      }
      Object.assign(record, {
        historyTurns: answer.historyTurnsUsed,
        droppedTurns: answer.droppedTurns,
        imageCount: answer.result.imageCount,
        promptTokens: answer.result.promptTokens,
        cachedPromptTokens: answer.result.cachedPromptTokens,
        tokens: answer.result.tokens.length,
        finishReason: answer.result.finishReason,
        ttftMs: Math.round(answer.result.ttftMs),
        generationMs: Math.round(answer.result.timings.totalMs),
        tokensPerSecond: Math.round(answer.result.tokensPerSecond * 10) / 10,
      });

      // 6. deliver (the driver cleans the text and never hands over a blank one), then remember
      const notices: string[] = [];
      if (skipped > 0) notices.push(t(lang, 'picturesSkipped', { used: sources.length, total: sent.length, max: this.media.maxImagesPerMessage }));
      if (answer.droppedTurns > 0) notices.push(t(lang, 'turnsDropped', { turns: answer.droppedTurns }));
      let messageIds: string[];
      try {
        ({ messageIds } = await driver.finished(answer.text, notices));
      } catch (error) {
        this.metrics.requests.inc({ platform: request.user.platform, outcome: 'undelivered' });
        this.metrics.errors.inc({ code: 'NETWORK' });
        log.warn({ ...record, style: style.id, outcome: 'undelivered', err: String((error as Error)?.message ?? error), totalMs: Date.now() - startedAt }, 'the adapter could not deliver the answer');
        return { status: 'failed', code: 'NETWORK', text: finalAnswerText(answer.text, lang), messageIds: [] };
      }
      // What is remembered is the model's answer, without the notices (they are not context).
      const text = finalAnswerText(answer.text, lang);
      this.remember(request, liveRequest, conversation, await pictures, question || answerQuestion(style, lang), text, style, messageIds, log);
      this.metrics.requests.inc({ platform: request.user.platform, outcome: 'answered' });
      this.metrics.requestPictures.observe({ platform: request.user.platform }, answer.result.imageCount);
      log.info({ ...record, style: style.id, outcome: 'answered', answerChars: text.length, totalMs: Date.now() - startedAt }, 'request answered');
      return { status: 'answered', text, messageIds };
    } catch (error) {
      liveRequest.download.abort();
      return fail(error);
    }
  }

  /**
   * This request's pictures, downloaded and turned into what the model sees (an animation or a
   * video: frames), and the conversation's stored pictures. Runs while the request waits.
   */
  private async loadPictures(
    sources: readonly ImageSource[],
    conversation: ConversationWithTurns | undefined,
    signal: AbortSignal,
    record: Record<string, unknown>,
  ): Promise<RequestPictures> {
    const expanded = await Promise.all(
      sources.map(async (source) => {
        let bytes: Uint8Array;
        try {
          bytes = await downloadSource(source, downloadLimit(source, this.mediaLimits), signal);
        } catch (error) {
          // a video whose size the platform did not report, over the video limit
          if (isVistyleError(error, 'IMAGE_TOO_LARGE') && isVideoMime(source.mime)) throw videoTooLarge(Number(error.details?.sizeBytes ?? 0), this.mediaLimits.maxVideoBytes);
          throw error;
        }
        return expandMedia(bytes, {
          frames: this.media.videoFrames,
          maxSeconds: this.media.videoMaxSeconds,
          maxVideoBytes: this.media.videoMaxBytes,
          signal,
        });
      }),
    );
    const kinds = expanded.map((media) => media.kind);
    for (const kind of kinds) this.metrics.mediaInputs.inc({ kind });
    if (kinds.some((kind) => kind !== 'picture')) record.media = kinds;
    const fresh = expanded.flatMap((media) => media.pictures.map((picture) => ({ ...picture, sha256: sha256(picture.bytes) })));
    record.newFrames = fresh.length;
    const stored: RequestPictures['stored'] = [];
    for (const image of conversation?.images ?? []) {
      const bytes = this.store.getImage(image.sha256);
      if (bytes) stored.push({ sha256: image.sha256, turnSeq: image.turnSeq, bytes: bytes.bytes, mime: bytes.mime });
    }
    if (conversation && stored.length === 0 && fresh.length === 0) throw new VistyleError('IMAGE_MISSING', 'the conversation’s pictures were forgotten');
    return { fresh, stored };
  }

  /**
   * Runs the engine, streaming to the sink. The engine leaves out the oldest turns itself when the
   * conversation does not fit (result.droppedMessages); an engine that refuses instead gets fewer
   * turns, halving until it fits or there are none left.
   */
  private async generate(input: {
    style: Style;
    question: string;
    lang: Language;
    conversation: ConversationWithTurns | undefined;
    pictures: RequestPictures;
    signal: AbortSignal;
    driver: SinkDriver;
    onRestart?: ((listener: () => void) => void) | undefined;
  }): Promise<Answer> {
    // A distributed job that starts over on another worker: the text so far is forgotten.
    let restarted = false;
    input.onRestart?.(() => {
      restarted = true;
    });
    const turns = input.conversation?.turns ?? [];
    const window = Math.min(turns.length, this.config.limits.historyTurns);
    let keep = window;
    for (;;) {
      const shown = conversationPrompt(turns.slice(turns.length - keep), input.pictures.stored, input.pictures.fresh);
      const styled = buildStyledRequest(input.style, { question: input.question, language: input.lang, history: shown.history, images: shown.questionImages });
      // The style's own messages (system prompt, few-shot examples) come before the history.
      const styleMessages = styled.messages.length - shown.history.length - 1;
      const styleSystem = styled.messages[0]?.role === 'system' ? 1 : 0;
      try {
        const stream = this.engine.generate(
          { ...(shown.images.length > 0 ? { images: shown.images } : {}), messages: styled.messages, lora: styled.lora, sampling: styled.sampling },
          { signal: input.signal },
        );
        stream.result.catch(() => undefined); // observed below; never an unhandled rejection
        let text = '';
        for await (const delta of stream) {
          if (restarted) [text, restarted] = ['', false];
          text += delta;
          if (text.trim()) input.driver.progress(text);
        }
        const result = await stream.result;
        if (result.finishReason === 'cancelled' || input.signal.aborted) {
          throw input.signal.reason ?? new VistyleError('CANCELLED', 'cancelled');
        }
        this.metrics.generation.observe(result.timings.totalMs / 1000);
        this.metrics.timeToFirstToken.observe(result.ttftMs / 1000);
        if (result.tokens.length > 1) this.metrics.tokensPerSecond.observe(result.tokensPerSecond);
        this.metrics.generatedTokens.inc(result.tokens.length);
        // The engine drops whole turns, oldest first: the style's examples, then the history.
        const droppedHistory = Math.max(0, (result.droppedMessages ?? 0) - (styleMessages - styleSystem));
        const droppedByEngine = Math.min(keep, Math.ceil(droppedHistory / 2));
        return { text: result.text || text, result, historyTurnsUsed: keep - droppedByEngine, droppedTurns: window - keep + droppedByEngine };
      } catch (error) {
        // Bounded context: the conversation no longer fits, so forget its oldest turns and retry.
        if (isVistyleError(error, 'PROMPT_TOO_LONG') && keep > 0 && !input.signal.aborted) {
          keep = Math.floor(keep / 2);
          continue;
        }
        throw error;
      }
    }
  }

  private remember(
    request: BotRequest,
    liveRequest: LiveRequest,
    conversation: ConversationWithTurns | undefined,
    pictures: RequestPictures,
    question: string,
    answer: string,
    style: Style,
    answerIds: string[],
    log: Logger,
  ): void {
    try {
      this.store.saveTurn({
        platform: request.chat.platform,
        chatId: request.chat.id,
        userId: request.user.id,
        ...(conversation ? { conversationId: conversation.id } : {}),
        images: pictures.fresh.map((picture) => ({ bytes: picture.bytes, mime: picture.mime })),
        // should the conversation be forgotten meanwhile, the new one starts with what this answer was about
        restartImages: pictures.stored.map((picture) => ({ bytes: picture.bytes, mime: picture.mime })),
        question,
        answer,
        style: style.id,
        messageIds: [...liveRequest.messageIds, ...answerIds],
      });
    } catch (error) {
      // The user has the answer; only follow-ups on it are lost. A refusing disk is logged by the
      // store itself, once a minute.
      if (isVistyleError(error, 'STORE_UNAVAILABLE')) return;
      log.error({ error: errorFields(error, { stack: true }) }, 'could not store the conversation turn');
    }
  }

  private describeFailure(error: unknown, lang: Language, liveRequest: LiveRequest): { code: ErrorCode; text: string } {
    if (error instanceof LimitError) {
      if (error.reason === 'in-flight') return { code: error.code, text: t(lang, 'rateLimitedInFlight') };
      if (error.reason === 'per-minute') {
        const seconds = Math.max(1, Math.ceil(Number(error.details?.retryAfterMs ?? 60_000) / 1000));
        return { code: error.code, text: t(lang, 'rateLimitedPerMinute', { seconds }) };
      }
    }
    if (isVistyleError(error)) {
      const code = error.code === 'CANCELLED' && liveRequest.cancelledBy === 'shutdown' ? 'SHUTTING_DOWN' : error.code;
      const reason = mediaRefusalOf(error);
      if (reason) return { code, text: t(lang, `media.${reason}`, this.messageParams(error)) };
      // Pictures are most of a prompt: say how many fit (the engine's refusal counts them).
      const { maxImages, imageCount } = error.details ?? {};
      if (code === 'PROMPT_TOO_LONG' && typeof maxImages === 'number' && typeof imageCount === 'number' && maxImages >= 1 && imageCount > maxImages) {
        return { code, text: t(lang, 'tooManyPictures', { maxImages, imageCount }) };
      }
      return { code, text: errorMessage(lang, code, this.messageParams(error)) };
    }
    return { code: 'INTERNAL', text: errorMessage(lang, 'INTERNAL') };
  }

  private messageParams(error: VistyleError): MessageParams {
    const params: MessageParams = {
      limit: formatLimit(this.config.limits.maxImageBytes),
      waiting: this.scheduler.status().waiting,
      available: this.styles.list().map((s) => s.id).join(', '),
    };
    for (const [name, value] of Object.entries(error.details ?? {})) {
      if (typeof value === 'string' || typeof value === 'number') params[name] = value;
    }
    if (error.code === 'STYLE_UNKNOWN' && typeof error.details?.style === 'string') params.name = error.details.style;
    return params;
  }

  // ---------------------------------------------------------------- stateless (the HTTP API)

  /**
   * Answers a whole conversation the caller gives (src/bot/stateless.ts) through the same styles,
   * scheduler (queue cap, positions, time-outs, cancellation) and engine as the bots, storing
   * nothing. Rejects with a VistyleError (a LimitError when refused by a limit).
   */
  askStateless(request: StatelessRequest, hooks: StatelessHooks = {}): Promise<StatelessAnswer> {
    const done = this.answerStateless(request, hooks);
    const settled = done.then(
      () => undefined,
      () => undefined,
    );
    this.outstanding.add(settled);
    void settled.finally(() => this.outstanding.delete(settled));
    return done;
  }

  private async answerStateless(request: StatelessRequest, hooks: StatelessHooks): Promise<StatelessAnswer> {
    const id = randomUUID();
    const log = this.logger.child({ requestId: id, platform: 'api', caller: request.caller });
    const startedAt = Date.now();
    let style: Style | undefined;
    try {
      if (this.closing) throw new VistyleError('SHUTTING_DOWN', 'shutting down');
      style = request.style === undefined ? this.styles.defaultStyle() : this.findStyle(request.style);
      if (!style) throw new VistyleError('STYLE_UNKNOWN', `unknown style "${request.style}"`, { details: { style: request.style } });
      const chosen = style;
      const engineRequest = styledStatelessRequest(chosen, request, this.config.limits.maxQuestionChars);
      if (hooks.signal?.aborted) throw new VistyleError('CANCELLED', 'cancelled before it was queued');
      const job = this.scheduler.submit<StatelessAnswer>({
        id,
        userKey: request.caller,
        exempt: request.exemptFromUserLimits === true,
        ...(hooks.onPosition ? { onPosition: hooks.onPosition } : {}),
        ...(hooks.onStart ? { onStart: hooks.onStart } : {}),
        run: async ({ signal, waitedMs }) => {
          const stream = this.engine.generate(engineRequest, { signal });
          stream.result.catch(() => undefined); // observed below
          let text = '';
          for await (const delta of stream) {
            text += delta;
            try {
              hooks.onDelta?.(delta);
            } catch (error) {
              log.warn({ error: errorFields(error) }, 'stateless delta hook failed');
            }
          }
          const result = await stream.result;
          if (result.finishReason === 'cancelled' || signal.aborted) throw signal.reason ?? new VistyleError('CANCELLED', 'cancelled');
          this.metrics.generation.observe(result.timings.totalMs / 1000);
          this.metrics.timeToFirstToken.observe(result.ttftMs / 1000);
          if (result.tokens.length > 1) this.metrics.tokensPerSecond.observe(result.tokensPerSecond);
          this.metrics.generatedTokens.inc(result.tokens.length);
          return { text: result.text || text, result, style: chosen, waitedMs };
        },
      });
      // The caller went away: leave the queue, or stop the engine at its next step.
      const onAbort = () => this.scheduler.cancel(id, 'CANCELLED');
      hooks.signal?.addEventListener('abort', onAbort, { once: true });
      let answer: StatelessAnswer;
      try {
        answer = await job.result;
      } finally {
        hooks.signal?.removeEventListener('abort', onAbort);
      }
      this.metrics.requests.inc({ platform: 'api', outcome: 'answered' });
      this.metrics.requestPictures.observe({ platform: 'api' }, answer.result.imageCount ?? 0);
      log.info(
        { style: chosen.id, outcome: 'answered', waitMs: answer.waitedMs, imageCount: answer.result.imageCount, promptTokens: answer.result.promptTokens, tokens: answer.result.tokens.length, finishReason: answer.result.finishReason, totalMs: Date.now() - startedAt },
        'request answered',
      );
      return answer;
    } catch (error) {
      const code: ErrorCode = isVistyleError(error) ? error.code : 'INTERNAL';
      this.metrics.requests.inc({ platform: 'api', outcome: 'failed' });
      this.metrics.errors.inc({ code });
      const level = code === 'INTERNAL' ? 'error' : code === 'ENGINE_CRASHED' ? 'warn' : 'info';
      log[level]({ style: style?.id, outcome: 'failed', code, err: redactSecrets(String((error as Error)?.message ?? error)), totalMs: Date.now() - startedAt }, 'request failed');
      throw error;
    }
  }

  // ---------------------------------------------------------------- cancelling

  cancel(requestId: string, by?: BotUser): CommandResult {
    const liveRequest = this.live.get(requestId);
    const lang = by ? this.languageOf(by) : this.config.defaultLanguage;
    if (!liveRequest || !this.scheduler.has(requestId)) return { ok: false, text: t(lang, 'cancelUnknown') };
    if (by && !(by.platform === liveRequest.user.platform && by.id === liveRequest.user.id) && !this.isAdmin(by)) {
      return { ok: false, code: 'NOT_ALLOWED', text: t(lang, 'cancelNotYours') };
    }
    liveRequest.cancelledBy = 'user';
    liveRequest.download.abort();
    this.scheduler.cancel(requestId, 'CANCELLED');
    return { ok: true, text: t(lang, 'cancelDone') };
  }

  cancelByMessage(chat: BotChat, messageId: string, by?: BotUser): CommandResult {
    for (const liveRequest of this.live.values()) {
      if (liveRequest.chat.platform === chat.platform && liveRequest.chat.id === chat.id && liveRequest.messageIds.has(messageId)) {
        return this.cancel(liveRequest.id, by);
      }
    }
    return { ok: false, text: t(by ? this.languageOf(by) : this.config.defaultLanguage, 'cancelUnknown') };
  }

  // ---------------------------------------------------------------- commands

  showStyle(ctx: CommandContext): StyleStatus {
    const lang = this.languageOf(ctx.user, ctx.locale);
    const { style, source } = this.resolveStyle(ctx.user, ctx.chat);
    const denied = this.denied(ctx, lang);
    const current = summarize(style, lang);
    const choices = this.styles.list().map((s) => summarize(s, lang));
    if (denied) return { ...denied, current, source, choices };
    const text = t(lang, 'styleCurrent', { name: current.name, description: current.description, source: t(lang, sourceKey(source)) });
    return { ok: true, text, current, source, choices };
  }

  setStyle(ctx: CommandContext, name: string, options: SetStyleOptions = {}): StyleStatus {
    const lang = this.languageOf(ctx.user, ctx.locale);
    const denied = this.denied(ctx, lang);
    if (denied) return { ...this.showStyle(ctx), ...denied };
    const style = this.findStyle(name);
    if (!style) {
      const status = this.showStyle(ctx);
      const text = errorMessage(lang, 'STYLE_UNKNOWN', { name: name.trim(), available: this.styles.list().map((s) => s.id).join(', ') });
      return { ...status, ok: false, code: 'STYLE_UNKNOWN', text };
    }
    const scope = options.scope ?? (ctx.chat.kind === 'private' ? 'user' : 'chat');
    try {
      if (scope === 'user') this.store.setStyle('user', ctx.user.platform, ctx.user.id, style.id);
      else this.store.setStyle('chat', ctx.chat.platform, ctx.chat.id, style.id);
    } catch (error) {
      // the disk refuses writes (the store logs it, once a minute): say so, keep the old style
      if (!isVistyleError(error, 'STORE_UNAVAILABLE')) throw error;
      return { ...this.showStyle(ctx), ok: false, code: 'STORE_UNAVAILABLE', text: errorMessage(lang, 'STORE_UNAVAILABLE') };
    }
    this.logger.info({ platform: ctx.user.platform, chatId: ctx.chat.id, userId: ctx.user.id, scope, style: style.id }, 'style set');
    const status = this.showStyle(ctx);
    const summary = summarize(style, lang);
    return { ...status, ok: true, text: t(lang, scope === 'user' ? 'styleSetUser' : 'styleSetChat', { name: summary.name }) };
  }

  listStyles(ctx: CommandContext): StylesList {
    const lang = this.languageOf(ctx.user, ctx.locale);
    const styles = this.styles.list().map((s) => summarize(s, lang));
    const denied = this.denied(ctx, lang);
    if (denied) return { ...denied, styles };
    const lines = [t(lang, 'stylesHeader')];
    for (const style of styles) {
      lines.push('', `• ${style.name} (${style.id}) — ${style.description}`, `  ${t(lang, 'styleSampleLabel')}: ${style.sampleAnswer}`);
    }
    return { ok: true, text: lines.join('\n'), styles };
  }

  help(ctx: CommandContext): CommandResult {
    const lang = this.languageOf(ctx.user, ctx.locale);
    return this.denied(ctx, lang) ?? { ok: true, text: helpText(lang, { platform: ctx.user.platform, admin: this.isAdmin(ctx.user) }) };
  }

  reset(ctx: CommandContext): CommandResult {
    const lang = this.languageOf(ctx.user, ctx.locale);
    const denied = this.denied(ctx, lang);
    if (denied) return denied;
    let forgotten: number;
    try {
      forgotten = this.store.resetChat(ctx.chat.platform, ctx.chat.id);
    } catch (error) {
      if (!isVistyleError(error, 'STORE_UNAVAILABLE')) throw error;
      return { ok: false, code: 'STORE_UNAVAILABLE', text: errorMessage(lang, 'STORE_UNAVAILABLE') };
    }
    this.logger.info({ platform: ctx.chat.platform, chatId: ctx.chat.id, userId: ctx.user.id, forgotten }, 'conversation reset');
    return { ok: true, text: t(lang, forgotten > 0 ? 'resetDone' : 'resetNothing') };
  }

  queueStatus(ctx: CommandContext): QueueStatusResult {
    const lang = this.languageOf(ctx.user, ctx.locale);
    if (!this.isAdmin(ctx.user)) return { ok: false, code: 'NOT_ALLOWED', text: t(lang, 'adminOnly') };
    const status = this.scheduler.status();
    const text = t(lang, 'queueStatus', { ...status, oldestWait: Math.round(status.oldestWaitMs / 1000) });
    return { ok: true, text, status };
  }

  /** `/reload` (admins): re-read the styles file now. */
  reloadStyles(ctx: CommandContext): CommandResult {
    const lang = this.languageOf(ctx.user, ctx.locale);
    if (!this.isAdmin(ctx.user)) return { ok: false, code: 'NOT_ALLOWED', text: t(lang, 'adminOnly') };
    if (!this.styles.reload) return { ok: true, text: `${this.styles.list().length} styles` };
    const result = this.styles.reload();
    return result.ok
      ? { ok: true, text: `${result.styles} styles (default: ${result.defaultId})` }
      : { ok: false, code: result.error.code, text: result.error.message };
  }

  setLanguage(ctx: CommandContext, language: Language | null): CommandResult {
    const current = this.languageOf(ctx.user, ctx.locale);
    const denied = this.denied(ctx, current);
    if (denied) return denied;
    try {
      this.store.setLanguage('user', ctx.user.platform, ctx.user.id, language);
    } catch (error) {
      if (!isVistyleError(error, 'STORE_UNAVAILABLE')) throw error;
      return { ok: false, code: 'STORE_UNAVAILABLE', text: errorMessage(current, 'STORE_UNAVAILABLE') };
    }
    const lang = this.languageOf(ctx.user, ctx.locale);
    return { ok: true, text: t(lang, 'languageSet') };
  }

  // ---------------------------------------------------------------- access, language, styles

  checkAccess(user: BotUser, chat: BotChat): AccessDecision {
    if (this.isAdmin(user)) return { allowed: true };
    const { allowedUsers, allowedChats, allowedGuilds } = this.config.access;
    if (allowedUsers.length + allowedChats.length + allowedGuilds.length === 0) return { allowed: true };
    // The lists add up: these people anywhere, anyone in these chats, anyone in these guilds.
    const allowed =
      idListMatches(allowedUsers, user.platform, user.id) ||
      idListMatches(allowedChats, chat.platform, chat.id) ||
      idListMatches(allowedGuilds, chat.platform, chat.guildId);
    return allowed ? { allowed } : { allowed, message: errorMessage(this.languageOf(user), 'NOT_ALLOWED') };
  }

  isAdmin(user: BotUser): boolean {
    return idListMatches(this.config.access.adminIds, user.platform, user.id);
  }

  languageOf(user: BotUser, locale?: string): Language {
    const saved = languageFromCode(this.store.getSettings('user', user.platform, user.id).language);
    return saved ?? languageFromCode(locale) ?? languageFromCode(user.languageCode) ?? this.config.defaultLanguage;
  }

  /** Request style > the user's own > the chat's > the registry's default. */
  resolveStyle(user: BotUser, chat: BotChat, requested?: string): { style: Style; source: StyleSource } {
    if (requested !== undefined && requested.trim() !== '') {
      const style = this.findStyle(requested);
      if (!style) throw new VistyleError('STYLE_UNKNOWN', `unknown style "${requested}"`, { details: { style: requested } });
      return { style, source: 'request' };
    }
    const own = this.store.getSettings('user', user.platform, user.id).style;
    const ownStyle = own ? this.styles.get(own) : undefined;
    if (ownStyle) return { style: ownStyle, source: 'user' };
    if (chat.kind === 'group') {
      const chatSetting = this.store.getSettings('chat', chat.platform, chat.id).style;
      const chatStyle = chatSetting ? this.styles.get(chatSetting) : undefined;
      if (chatStyle) return { style: chatStyle, source: 'chat' };
    }
    // A saved style the styles file no longer has falls through to the next level.
    return { style: this.styles.defaultStyle(), source: 'default' };
  }

  /** By id, else by a display name (case-insensitive). */
  findStyle(name: string): Style | undefined {
    const wanted = name.trim();
    const byId = this.styles.get(wanted) ?? this.styles.get(wanted.toLowerCase());
    if (byId) return byId;
    const folded = wanted.toLowerCase();
    return this.styles.list().find((s) => s.names.en.toLowerCase() === folded || s.names.zh === wanted);
  }

  private denied(ctx: CommandContext, lang: Language): CommandResult | undefined {
    const access = this.checkAccess(ctx.user, ctx.chat);
    return access.allowed ? undefined : { ok: false, code: 'NOT_ALLOWED', text: errorMessage(lang, 'NOT_ALLOWED') };
  }

  private safeLanguage(request: BotRequest): Language {
    try {
      return this.languageOf(request.user, request.locale);
    } catch {
      return this.config.defaultLanguage;
    }
  }

  private sweepExpired(): void {
    try {
      const forgotten = this.store.expire(this.config.limits.conversationTtlMs);
      if (forgotten > 0) this.logger.info({ forgotten }, 'forgot idle conversations');
    } catch (error) {
      if (isVistyleError(error, 'STORE_UNAVAILABLE')) return; // logged by the store
      this.logger.warn({ error: errorFields(error) }, 'conversation expiry failed');
    }
  }

  // ---------------------------------------------------------------- lifecycle

  /** Admin view of the queue (also for tests). */
  queueSnapshot() {
    return this.scheduler.status();
  }

  async shutdown(options: { drainMs?: number } = {}): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.expiryTimer);
    for (const liveRequest of this.live.values()) liveRequest.cancelledBy ??= 'shutdown';
    await this.scheduler.shutdown(options.drainMs ?? this.config.limits.shutdownDrainMs);
    // Let every request's terminal message go out (bounded: adapters may be stopping too).
    await Promise.race([Promise.allSettled([...this.outstanding]), new Promise((resolve) => setTimeout(resolve, 15_000).unref())]);
  }
}

export function createBotCore(deps: BotCoreDeps): BotCoreImpl {
  return new BotCoreImpl(deps);
}

function answerQuestion(style: Style, lang: Language): string {
  return style.defaultQuestion[lang];
}

function summarize(style: Style, lang: Language): StyleSummary {
  return {
    id: style.id,
    name: style.names[lang],
    description: style.description[lang],
    sampleAnswer: style.sampleAnswer[lang],
    hasAdapter: style.adapter !== null,
  };
}

function sourceKey(source: StyleSource) {
  return ({ user: 'styleSourceUser', chat: 'styleSourceChat', default: 'styleSourceDefault', request: 'styleSourceRequest' } as const)[source];
}

function formatLimit(bytes: number): string {
  return `${Math.round((bytes / (1024 * 1024)) * 10) / 10} MB`;
}
