// The OpenAI-compatible API: GET /v1/models, GET /v1/models/{id}, POST /v1/chat/completions.
// Styles are the models. A chat completion is checked (key, body, model, per-key limits), its
// pictures are loaded (data: or https: behind the SSRF guard), and it is answered through the bot
// core's stateless entry point: the same style registry, queue, time-outs and engine as the bots.
// A client that disconnects cancels its request (it leaves the queue or the engine stops) and
// frees its place.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BotCoreImpl } from '../bot/core.js';
import { languageFromCode } from '../bot/i18n.js';
import type { StatelessAnswer } from '../bot/stateless.js';
import type { ChatMessage, MessagePart } from '../engine/types.js';
import { VistyleError } from '../errors.js';
import type { Logger } from '../log.js';
import type { Style, StyleRegistry } from '../styles/types.js';
import { ApiError, apiErrorFrom, modelNotFound } from './api-error.js';
import { readJsonBody } from './body.js';
import { parseChatRequest, type ChatRequest, type ChatTurn } from './chat-request.js';
import { ChatStream, type Usage } from './chat-stream.js';
import { KeyLimiter } from './key-limits.js';
import { keyAllowsStyle, type ApiKey, type ApiKeys, type KeyDefaults } from './keys.js';
import { loadImageUrl } from './remote-image.js';
import { expandMedia } from '../media/index.js';
import type { MediaConfig } from '../config/config.js';

/** Who may call the API: keys required; anyone (no key configured, loopback only); or nobody. */
export type ApiAccess = 'keys' | 'open' | 'off';

export interface OpenAiApiOptions {
  /** The bot core, once the model is loaded (undefined before: requests get 503). */
  core: () => BotCoreImpl | undefined;
  styles: StyleRegistry;
  keys: ApiKeys;
  access: ApiAccess;
  /** Limits of the anonymous caller in 'open' mode (the bots' per-user limits). */
  defaults: KeyDefaults;
  maxImageBytes: number;
  maxImagesPerMessage: number;
  allowPrivateImageUrls: boolean;
  /** Animated GIF/WebP pictures become this many frames, as on the chat platforms. */
  media: Pick<MediaConfig, 'videoFrames' | 'videoMaxSeconds' | 'videoMaxBytes'>;
  /** Extra CA certificates trusted for https image URLs (tests). */
  imageUrlCa?: string | Buffer;
  logger: Logger;
}

/** The answer's header with the queue position (0: it started without waiting). */
export const QUEUE_POSITION_HEADER = 'x-vistyle-queue-position';

const CREATED = Math.floor(Date.now() / 1000);

export class OpenAiApi {
  private readonly limiter = new KeyLimiter();
  private readonly anonymous: ApiKey;
  private readonly maxBodyBytes: number;

  constructor(private readonly options: OpenAiApiOptions) {
    this.anonymous = { name: 'local', ...options.defaults, styles: null };
    // base64 grows a picture by 4/3; room for every picture a message may carry, plus the text.
    this.maxBodyBytes = Math.ceil((options.maxImageBytes * 4) / 3 + 64 * 1024) * Math.max(1, options.maxImagesPerMessage) + 1024 * 1024;
  }

  /** Handles the request when it is one of the API's; false when the path is not. */
  async handle(request: IncomingMessage, response: ServerResponse, path: string): Promise<boolean> {
    if (path === '/v1/chat/completions') {
      if (request.method !== 'POST') throw methodNotAllowed('POST');
      await this.chat(request, response);
      return true;
    }
    if (path === '/v1/models' || path.startsWith('/v1/models/')) {
      if (request.method !== 'GET' && request.method !== 'HEAD') throw methodNotAllowed('GET');
      const key = this.authenticate(request);
      if (path === '/v1/models') {
        sendJson(response, 200, { object: 'list', data: this.models(key) });
      } else {
        const id = decodeURIComponent(path.slice('/v1/models/'.length));
        const style = this.styleFor(id, key);
        if (!style) throw modelNotFound(id);
        sendJson(response, 200, this.modelObject(id.toLowerCase() === 'vistyle' ? 'vistyle' : `vistyle/${style.id}`, style));
      }
      return true;
    }
    return false;
  }

  /** The caller's key (the anonymous caller in 'open' mode). Throws 401/403. */
  authenticate(request: IncomingMessage): ApiKey {
    if (this.options.access === 'off') {
      throw new ApiError(
        403,
        'The API is off: no API key is configured and the server listens beyond loopback. Set VISTYLE_API_KEYS or VISTYLE_API_KEYS_FILE, or bind VISTYLE_HTTP_HOST to 127.0.0.1.',
        'permission_error',
        'api_disabled',
      );
    }
    if (this.options.access === 'open') {
      // No keys: only this machine may call. A page elsewhere could still reach 127.0.0.1 through
      // a DNS name it controls (DNS rebinding); such requests name that host, so refuse them.
      if (!isLoopbackHostHeader(request.headers.host)) {
        throw new ApiError(403, 'Without API keys only requests to a loopback host name (localhost, 127.0.0.1, [::1]) are served.', 'permission_error', 'loopback_only');
      }
      return this.anonymous;
    }
    const key = this.options.keys.authenticate(request.headers.authorization);
    if (!key) {
      const message = request.headers.authorization
        ? 'Incorrect API key provided.'
        : "You didn't provide an API key. Send it in the Authorization header: Authorization: Bearer YOUR_KEY.";
      throw new ApiError(401, message, 'invalid_request_error', 'invalid_api_key');
    }
    return key;
  }

  // ---------------------------------------------------------------- models

  private models(key: ApiKey) {
    const styles = this.options.styles.list().filter((style) => keyAllowsStyle(key, style.id));
    const plain = this.plainStyle();
    const alias = plain && keyAllowsStyle(key, plain.id) ? [this.modelObject('vistyle', plain)] : [];
    return [...alias, ...styles.map((style) => this.modelObject(`vistyle/${style.id}`, style))];
  }

  private modelObject(id: string, style: Style) {
    return {
      id,
      object: 'model',
      created: CREATED,
      owned_by: 'vistyle',
      name: id === 'vistyle' ? `vistyle (${style.names.en})` : style.names.en,
      style: style.id,
      names: { ...style.names },
      description: { ...style.description },
      sample_answer: { ...style.sampleAnswer },
      default_question: { ...style.defaultQuestion },
      lora: style.adapter !== null,
    };
  }

  private plainStyle(): Style | undefined {
    return this.options.styles.get('plain') ?? this.options.styles.defaultStyle();
  }

  /** The style a model name means for this key, or undefined (unknown, or not on its allow-list). */
  private styleFor(model: string, key: ApiKey): Style | undefined {
    const name = model.trim();
    let style: Style | undefined;
    if (name.toLowerCase() === 'vistyle') {
      style = this.plainStyle();
    } else {
      const bare = name.replace(/^vistyle\//i, '');
      const core = this.options.core();
      style = core
        ? core.findStyle(bare)
        : (this.options.styles.get(bare.toLowerCase()) ?? this.options.styles.list().find((s) => s.names.en.toLowerCase() === bare.toLowerCase() || s.names.zh === bare));
    }
    return style && keyAllowsStyle(key, style.id) ? style : undefined;
  }

  // ---------------------------------------------------------------- chat completions

  private async chat(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const key = this.authenticate(request);
    const chat = parseChatRequest(await readJsonBody(request, this.maxBodyBytes), { maxImagesPerMessage: this.options.maxImagesPerMessage });
    const core = this.options.core();
    if (!core) throw new ApiError(503, 'The model is still loading. Try again shortly.', 'server_error', 'model_loading', null, 5);
    const style = this.styleFor(chat.model, key);
    if (!style) throw modelNotFound(chat.model);

    const admission = this.limiter.admit(key);
    if (!admission.ok) {
      const why = admission.reason === 'in-flight' ? `${admission.limit} request(s) in progress` : `${admission.limit} requests per minute`;
      throw new ApiError(429, `Rate limit reached for key "${key.name}": ${why}. Try again later.`, 'requests', 'rate_limit_exceeded', null, Math.max(1, Math.ceil(admission.retryAfterMs / 1000)));
    }
    const controller = new AbortController();
    const onClose = () => {
      if (!response.writableFinished) controller.abort(new VistyleError('CANCELLED', 'the client went away'));
    };
    response.on('close', onClose);
    const log = this.options.logger.child({ key: key.name, style: style.id });
    try {
      await this.answer(request, response, core, chat, style, key, controller.signal, log);
    } finally {
      admission.release();
      response.off('close', onClose);
    }
  }

  private async answer(
    request: IncomingMessage,
    response: ServerResponse,
    core: BotCoreImpl,
    chat: ChatRequest,
    style: Style,
    key: ApiKey,
    signal: AbortSignal,
    log: Logger,
  ): Promise<void> {
    const urls = chat.turns.flatMap((turn) => turn.parts.flatMap((part) => (part.type === 'image' ? [part.url] : [])));
    const images = await Promise.all(
      urls.map((url) =>
        loadImageUrl(url, {
          maxBytes: this.options.maxImageBytes,
          allowPrivate: this.options.allowPrivateImageUrls,
          signal,
          ...(this.options.imageUrlCa ? { ca: this.options.imageUrlCa } : {}),
        }),
      ),
    ).catch((error: unknown) => {
      throw signal.aborted ? error : apiErrorFrom(error);
    });
    // An animated GIF/WebP is shown as frames sampled over its length (consecutive pictures), as
    // the bots do; a still picture stays as it is.
    const { videoFrames, videoMaxSeconds, videoMaxBytes } = this.options.media;
    const pictures = await Promise.all(
      images.map(async (image) =>
        (await expandMedia(image.bytes, { frames: videoFrames, maxSeconds: videoMaxSeconds, maxVideoBytes: videoMaxBytes, signal })).pictures.map((p) => p.bytes),
      ),
    ).catch((error: unknown) => {
      throw signal.aborted ? error : apiErrorFrom(error);
    });

    const id = `chatcmpl-${randomUUID().replace(/-/g, '')}`;
    const model = chat.model.toLowerCase() === 'vistyle' ? 'vistyle' : `vistyle/${style.id}`;
    const meta = { id, created: Math.floor(Date.now() / 1000), model, includeUsage: chat.includeUsage };
    const stream = chat.stream ? new ChatStream(response, meta) : undefined;
    let firstPosition = 0;
    const headers = () => ({ [QUEUE_POSITION_HEADER]: String(firstPosition), 'x-request-id': id });
    // The stream opens once the request is in the queue (so refusals still get their status):
    // with its position when it waits, or when it starts at once.
    const openStream = () => {
      if (stream && !response.headersSent) stream.start(headers());
    };
    const engineInput = engineConversation(chat.turns, pictures);
    const language = languageFromCode(String(request.headers['accept-language'] ?? '').split(/[,;]/)[0]) ?? 'en';

    let answer: StatelessAnswer;
    try {
      answer = await core.askStateless(
        {
          caller: `api:${key.name}`,
          style: style.id,
          messages: engineInput.messages,
          images: engineInput.images,
          sampling: chat.sampling,
          language,
          exemptFromUserLimits: true,
        },
        {
          signal,
          onPosition: (position) => {
            if (!response.headersSent) firstPosition = position;
            openStream();
            stream?.position(position);
          },
          onStart: () => {
            openStream();
            stream?.started();
          },
          onDelta: (delta) => stream?.delta(delta),
        },
      );
    } catch (error) {
      if (signal.aborted) {
        log.info({ requestId: id }, 'the client went away; request cancelled');
        stream?.end();
        return;
      }
      const apiError = apiErrorFrom(error);
      if (stream && response.headersSent) return stream.fail(apiError);
      throw apiError;
    }

    const result = answer.result;
    const usage: Usage = {
      prompt_tokens: result.promptTokens,
      completion_tokens: result.tokens.length,
      total_tokens: result.promptTokens + result.tokens.length,
      prompt_tokens_details: { cached_tokens: result.cachedPromptTokens },
    };
    const finishReason = result.finishReason === 'length' ? 'length' : 'stop';
    if (stream) {
      openStream();
      stream.finish(finishReason, usage);
      return;
    }
    sendJson(
      response,
      200,
      {
        id,
        object: 'chat.completion',
        created: meta.created,
        model,
        system_fingerprint: null,
        choices: [{ index: 0, message: { role: 'assistant', content: answer.text, refusal: null }, logprobs: null, finish_reason: finishReason }],
        usage,
      },
      { ...headers(), 'x-vistyle-queue-wait-ms': String(answer.waitedMs) },
    );
  }
}

/**
 * The API's turns in the engine's shape: text and picture parts in the caller's order, the
 * pictures numbered in the order they appear (indexes into `images`).
 */
function engineConversation(turns: ChatTurn[], pictures: Uint8Array[][]): { messages: ChatMessage[]; images: Uint8Array[] } {
  const images: Uint8Array[] = [];
  let url = 0;
  const messages = turns.map((turn): ChatMessage => {
    if (!turn.parts.some((part) => part.type === 'image')) {
      return { role: turn.role, content: turn.parts.map((part) => (part.type === 'text' ? part.text : '')).join('') };
    }
    // one image_url part -> one picture part per frame (an animation's frames in order)
    const content: MessagePart[] = turn.parts.flatMap((part): MessagePart[] => {
      if (part.type === 'text') return [{ type: 'text', text: part.text }];
      return pictures[url++]!.map((bytes) => ({ type: 'image', image: images.push(bytes) - 1 }));
    });
    return { role: turn.role, content };
  });
  return { messages, images };
}

export function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

function methodNotAllowed(allowed: string): ApiError {
  return new ApiError(405, `Use ${allowed} for this path.`, 'invalid_request_error', 'method_not_allowed');
}

/** Host header naming this machine: localhost, 127.x.x.x or [::1] (any port). */
export function isLoopbackHostHeader(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.trim().toLowerCase().replace(/:\d+$/, '');
  return name === 'localhost' || name.endsWith('.localhost') || /^127(\.\d{1,3}){3}$/.test(name) || name === '[::1]';
}
