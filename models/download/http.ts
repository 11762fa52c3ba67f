// HTTP for downloads on Node's fetch: redirects followed by hand (so the access token only ever goes
// to the hub itself, never to the CDN it redirects to), a time-out while waiting for the response
// and between body chunks (a stalled transfer), no content encoding (byte ranges must mean bytes of
// the file), and failures sorted into "try again" (network, 5xx, 429) and "give up" (4xx).

const MAX_REDIRECTS = 10;

export interface HttpClientOptions {
  userAgent: string;
  /** Bearer token, sent only to URLs on `tokenOrigin`. */
  token?: string;
  tokenOrigin?: string;
  /** Wait this long for response headers. */
  responseTimeoutMs: number;
  /** Give up on a transfer when no body bytes arrive for this long. */
  stallTimeoutMs: number;
}

/** An HTTP response with a status the caller did not ask for. */
export class HttpStatusError extends Error {
  readonly status: number;
  readonly url: string;
  /** Hugging Face's X-Error-Code header (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo). */
  readonly hubErrorCode: string | undefined;
  readonly hubErrorMessage: string | undefined;

  constructor(status: number, url: string, hubErrorCode?: string, hubErrorMessage?: string) {
    super(`HTTP ${status} from ${safeUrl(url)}${hubErrorCode ? ` (${hubErrorCode})` : ''}`);
    this.name = 'HttpStatusError';
    this.status = status;
    this.url = url;
    this.hubErrorCode = hubErrorCode;
    this.hubErrorMessage = hubErrorMessage;
  }

  get retryable(): boolean {
    return this.status >= 500 || this.status === 429 || this.status === 408;
  }
}

/** The network failed: no connection, a reset, a closed socket, a stall. Always worth a retry. */
export class TransferError extends Error {
  /** Short reason, e.g. "getaddrinfo ENOTFOUND", "connect ECONNREFUSED", "connection closed". */
  readonly reason: string;
  readonly url: string;
  /** True when nothing was received from the server at all (DNS, refused, unreachable). */
  readonly beforeResponse: boolean;

  constructor(reason: string, url: string, beforeResponse: boolean, cause?: unknown) {
    super(`${reason} (${safeUrl(url)})`, cause === undefined ? undefined : { cause });
    this.name = 'TransferError';
    this.reason = reason;
    this.url = url;
    this.beforeResponse = beforeResponse;
  }
}

export function isRetryable(error: unknown): boolean {
  if (error instanceof TransferError) return true;
  if (error instanceof HttpStatusError) return error.retryable;
  return false;
}

/** Origin and path of a URL without its query (signed CDN URLs carry credentials there). */
export function safeUrl(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.origin}${parsed.pathname}`;
  } catch {
    return '(invalid URL)';
  }
}

const FRIENDLY: Record<string, string> = {
  UND_ERR_SOCKET: 'connection closed',
  UND_ERR_CONNECT_TIMEOUT: 'connect timeout',
  UND_ERR_HEADERS_TIMEOUT: 'headers timeout',
  UND_ERR_BODY_TIMEOUT: 'body timeout',
  ECONNRESET: 'connection reset',
};

/** Turns what fetch throws ("fetch failed" with a cause) into a short reason. */
export function describeNetworkError(error: unknown): string {
  let cause: unknown = error;
  // fetch wraps the socket error; happy-eyeballs connects wrap several in an AggregateError
  for (let depth = 0; depth < 4; depth++) {
    const inner = (cause as { cause?: unknown } | undefined)?.cause;
    if (inner === undefined) break;
    cause = inner;
  }
  if (cause instanceof AggregateError && cause.errors.length > 0) cause = cause.errors[0];
  const { code, syscall, message } = (cause ?? {}) as { code?: unknown; syscall?: unknown; message?: unknown };
  if (typeof code === 'string') {
    if (FRIENDLY[code]) return FRIENDLY[code];
    return typeof syscall === 'string' ? `${syscall} ${code}` : code;
  }
  // fetch refuses the spec's "bad ports" (1, 6000, ...) before connecting
  if (message === 'bad port') return 'port blocked by fetch, use another port';
  return typeof message === 'string' && message ? message : String(cause);
}

export interface OpenResponse {
  status: number;
  /** URL of the last hop (after redirects). */
  url: string;
  /** Headers of the final response. */
  headers: Headers;
  /** Headers seen on any hop, first hop first (the hub sets X-Repo-Commit etc. on its redirect). */
  hopHeaders: Headers[];
  /** Body chunks; errors come out as TransferError, a stall included. */
  body: AsyncIterable<Uint8Array>;
  /** Drop the body without reading it. */
  discard(): Promise<void>;
}

/** The value of a header on any hop, last hop first. */
export function headerFromHops(response: OpenResponse, name: string): string | undefined {
  for (let i = response.hopHeaders.length - 1; i >= 0; i--) {
    const value = response.hopHeaders[i]?.get(name);
    if (value) return value;
  }
  return undefined;
}

export class HttpClient {
  private readonly options: HttpClientOptions;

  constructor(options: HttpClientOptions) {
    this.options = options;
  }

  private headersFor(url: URL, extra: Record<string, string>): Record<string, string> {
    const headers: Record<string, string> = {
      'user-agent': this.options.userAgent,
      'accept-encoding': 'identity',
      ...extra,
    };
    if (this.options.token && this.options.tokenOrigin && url.origin === this.options.tokenOrigin) {
      headers.authorization = `Bearer ${this.options.token}`;
    }
    return headers;
  }

  /**
   * GET a URL, following redirects. Non-2xx final statuses throw HttpStatusError (the body is read
   * for Hugging Face's error message first); network failures throw TransferError.
   */
  async get(url: string, extraHeaders: Record<string, string> = {}, signal?: AbortSignal): Promise<OpenResponse> {
    const controller = new AbortController();
    let stalled = false;
    let timer: NodeJS.Timeout | undefined;
    const arm = (ms: number): void => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        controller.abort();
      }, ms);
      timer.unref();
    };
    const disarm = (): void => {
      if (timer) clearTimeout(timer);
      timer = undefined;
    };
    const onOuterAbort = (): void => controller.abort(signal?.reason);
    if (signal?.aborted) throw signal.reason ?? new Error('aborted');
    signal?.addEventListener('abort', onOuterAbort, { once: true });
    const cleanup = (): void => {
      disarm();
      signal?.removeEventListener('abort', onOuterAbort);
    };

    const hopHeaders: Headers[] = [];
    let current = new URL(url);
    let response: Response | undefined;
    try {
      for (let hop = 0; ; hop++) {
        arm(this.options.responseTimeoutMs);
        try {
          response = await fetch(current, {
            headers: this.headersFor(current, extraHeaders),
            redirect: 'manual',
            signal: controller.signal,
          });
        } catch (error) {
          if (signal?.aborted) throw signal.reason ?? error;
          const reason = stalled ? `no response in ${seconds(this.options.responseTimeoutMs)}` : describeNetworkError(error);
          throw new TransferError(reason, current.href, !stalled, error);
        }
        hopHeaders.push(response.headers);
        const location = response.headers.get('location');
        if (response.status >= 300 && response.status < 400 && location) {
          await response.body?.cancel().catch(() => undefined);
          if (hop >= MAX_REDIRECTS) throw new HttpStatusError(response.status, current.href, 'TooManyRedirects');
          current = new URL(location, current);
          continue;
        }
        break;
      }
      if (response.status < 200 || response.status >= 300) {
        const errorCode = response.headers.get('x-error-code') ?? undefined;
        let message = response.headers.get('x-error-message') ?? undefined;
        const text = await response.text().catch(() => '');
        if (!message) {
          try {
            const parsed = JSON.parse(text) as { error?: unknown; Message?: unknown };
            const candidate = parsed.error ?? parsed.Message;
            if (typeof candidate === 'string') message = candidate;
          } catch {
            // not JSON: keep the status alone
          }
        }
        throw new HttpStatusError(response.status, current.href, errorCode, message);
      }
    } catch (error) {
      cleanup();
      throw error;
    }

    const finalResponse = response;
    const finalUrl = current.href;
    const stallMs = this.options.stallTimeoutMs;
    arm(stallMs);
    async function* chunks(): AsyncGenerator<Uint8Array> {
      const reader = finalResponse.body?.getReader();
      if (!reader) {
        cleanup();
        return;
      }
      try {
        for (;;) {
          let step: { done: true; value?: undefined } | { done: false; value: Uint8Array };
          try {
            step = await reader.read();
          } catch (error) {
            if (signal?.aborted) throw signal.reason ?? error;
            const reason = stalled ? `no data for ${seconds(stallMs)}` : describeNetworkError(error);
            throw new TransferError(reason, finalUrl, false, error);
          }
          if (step.done) return;
          arm(stallMs);
          yield step.value;
        }
      } finally {
        cleanup();
        await reader.cancel().catch(() => undefined);
      }
    }
    return {
      status: finalResponse.status,
      url: finalUrl,
      headers: finalResponse.headers,
      hopHeaders,
      body: chunks(),
      discard: async () => {
        cleanup();
        await finalResponse.body?.cancel().catch(() => undefined);
      },
    };
  }

  /** GET a JSON document. */
  async getJson(url: string, signal?: AbortSignal): Promise<unknown> {
    const response = await this.get(url, { accept: 'application/json' }, signal);
    const parts: Uint8Array[] = [];
    for await (const chunk of response.body) parts.push(chunk);
    const text = Buffer.concat(parts).toString('utf8');
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new HttpStatusError(response.status, url, 'InvalidJson', 'the response is not JSON');
    }
  }
}

function seconds(ms: number): string {
  return ms >= 1000 ? `${Math.round(ms / 100) / 10} s` : `${ms} ms`;
}
