// A minimal client for an OpenAI-compatible `POST {base}/chat/completions` (DeepSeek, OpenAI, vLLM,
// llama.cpp's server...). It classifies every failure for the retry policy: rate limits (429, with
// the server's Retry-After), server errors (5xx), time-outs (a request that hangs is aborted) and
// network errors may succeed later; 401/403/404 and an exhausted balance or quota (402, or a 429
// whose code is insufficient_quota) end the run; other 4xx fail the row.
import { redactSecrets } from '../../src/log.js';

export interface ChatMessageIn {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

export interface ChatApiConfig {
  /** e.g. https://api.deepseek.com or https://api.openai.com/v1 */
  baseUrl: string;
  apiKey: string;
  model: string;
  /** Abort a request that has not completed in this time. */
  timeoutMs: number;
}

export interface ChatRequest {
  messages: ChatMessageIn[];
  temperature?: number;
  maxTokens?: number;
  /** Ask for `response_format: {type: 'json_object'}`. */
  jsonObject?: boolean;
}

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
}

export interface ChatResponse {
  content: string;
  usage: TokenUsage | null;
  finishReason: string | null;
}

export type ChatFailureKind = 'rate-limit' | 'server' | 'timeout' | 'network' | 'auth' | 'quota' | 'client' | 'response';

export class ChatApiError extends Error {
  constructor(
    message: string,
    readonly kind: ChatFailureKind,
    readonly status?: number,
    /** From Retry-After / retry-after-ms, when the server sent one. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'ChatApiError';
  }

  get retryable(): boolean {
    return this.kind === 'rate-limit' || this.kind === 'server' || this.kind === 'timeout' || this.kind === 'network';
  }

  /** Ends the whole run (the key or the model is wrong, or the account has no credit left; every row would fail the same way). */
  get fatal(): boolean {
    return this.kind === 'auth' || this.kind === 'quota';
  }
}

export function chatCompletionsUrl(baseUrl: string): string {
  const base = baseUrl.replace(/\/+$/, '');
  return base.endsWith('/chat/completions') ? base : `${base}/chat/completions`;
}

/** Retry-After in milliseconds: delta-seconds or an HTTP date; retry-after-ms (OpenAI) wins. */
export function parseRetryAfter(headers: Headers, now = Date.now()): number | undefined {
  const ms = headers.get('retry-after-ms');
  if (ms !== null && Number.isFinite(Number(ms)) && Number(ms) >= 0) return Number(ms);
  const value = headers.get('retry-after');
  if (value === null || value.trim() === '') return undefined;
  if (/^\d+(\.\d+)?$/.test(value.trim())) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** OpenAI's `error.code` / `error.type` (e.g. insufficient_quota), when the body has one. */
function serverErrorCode(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown; type?: unknown } };
    const code = parsed.error?.code ?? parsed.error?.type;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

function serverMessage(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { message?: unknown } | string; message?: unknown };
    const message = typeof parsed.error === 'string' ? parsed.error : (parsed.error?.message ?? parsed.message);
    if (typeof message === 'string') return message.slice(0, 300);
  } catch {
    // not JSON
  }
  return body.slice(0, 200).replace(/\s+/g, ' ').trim();
}

export async function createChatCompletion(config: ChatApiConfig, request: ChatRequest, signal?: AbortSignal): Promise<ChatResponse> {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, config.timeoutMs);
  const onAbort = (): void => controller.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  const body: Record<string, unknown> = { model: config.model, messages: request.messages, stream: false };
  if (request.temperature !== undefined) body.temperature = request.temperature;
  if (request.maxTokens !== undefined) body.max_tokens = request.maxTokens;
  if (request.jsonObject) body.response_format = { type: 'json_object' };
  try {
    let response: Response;
    let text: string;
    try {
      response = await fetch(chatCompletionsUrl(config.baseUrl), {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${config.apiKey}` },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      text = await response.text();
    } catch (error) {
      if (timedOut) throw new ChatApiError(`no answer within ${config.timeoutMs} ms`, 'timeout');
      if (signal?.aborted) throw new ChatApiError('cancelled', 'client');
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      throw new ChatApiError(`network error (${cause?.code ?? cause?.message ?? (error as Error).message})`, 'network');
    }
    if (!response.ok) {
      const detail = redactSecrets(serverMessage(text));
      const what = `HTTP ${response.status}${detail ? `: ${detail}` : ''}`;
      // No balance (DeepSeek's 402) or no quota (OpenAI's 429 insufficient_quota): waiting will not help.
      if (response.status === 402 || (response.status === 429 && serverErrorCode(text) === 'insufficient_quota')) {
        throw new ChatApiError(what, 'quota', response.status);
      }
      if (response.status === 429) throw new ChatApiError(what, 'rate-limit', 429, parseRetryAfter(response.headers));
      if (response.status >= 500 || response.status === 408) {
        throw new ChatApiError(what, 'server', response.status, parseRetryAfter(response.headers));
      }
      if (response.status === 401 || response.status === 403 || response.status === 404) {
        throw new ChatApiError(what, 'auth', response.status);
      }
      throw new ChatApiError(what, 'client', response.status);
    }
    let parsed: {
      choices?: Array<{ message?: { content?: unknown }; finish_reason?: unknown }>;
      usage?: { prompt_tokens?: unknown; completion_tokens?: unknown; total_tokens?: unknown };
    };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      throw new ChatApiError('the API answered with something that is not JSON', 'server', response.status);
    }
    const choice = parsed.choices?.[0];
    const content = choice?.message?.content;
    const usage = parsed.usage;
    const tokens =
      usage && typeof usage.prompt_tokens === 'number' && typeof usage.completion_tokens === 'number'
        ? {
            promptTokens: usage.prompt_tokens,
            completionTokens: usage.completion_tokens,
            totalTokens: typeof usage.total_tokens === 'number' ? usage.total_tokens : usage.prompt_tokens + usage.completion_tokens,
          }
        : null;
    if (typeof content !== 'string') {
      throw Object.assign(new ChatApiError('the API answer has no message content', 'response', response.status), { usage: tokens });
    }
    return { content, usage: tokens, finishReason: typeof choice?.finish_reason === 'string' ? choice.finish_reason : null };
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  }
}
