// A streamed chat completion as server-sent events in OpenAI's chunk format:
//   data: {"id":"chatcmpl-…","object":"chat.completion.chunk","created":…,"model":"vistyle/grumpy",
//          "choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}
//   data: {… "choices":[{"index":0,"delta":{"content":"Hm"},"logprobs":null,"finish_reason":null}]}
//   data: {… "choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}
//   data: {… "choices":[],"usage":{…}}           (only with stream_options.include_usage; every
//                                                 other chunk then carries "usage": null)
//   data: [DONE]
// While the request waits in the queue, SSE comments (which clients ignore) say where it is:
//   : queue position 3
// and a failure after the stream has started is one `data: {"error": {…}}` event, which the openai
// clients raise as an APIError.
import type { ServerResponse } from 'node:http';
import type { ApiError } from './api-error.js';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  prompt_tokens_details?: { cached_tokens: number };
}

/** Comments while waiting keep proxies from closing an idle connection. */
const KEEPALIVE_MS = 15_000;

export class ChatStream {
  private keepalive: NodeJS.Timeout | undefined;

  constructor(
    private readonly response: ServerResponse,
    private readonly meta: { id: string; created: number; model: string; includeUsage: boolean },
  ) {}

  get open(): boolean {
    return this.response.headersSent && !this.response.writableEnded && !this.response.destroyed;
  }

  /** Sends the headers and the role chunk. */
  start(headers: Record<string, string>): void {
    this.response.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    this.response.flushHeaders();
    this.chunk({ role: 'assistant', content: '' }, null);
    this.keepalive = setInterval(() => this.write(': waiting\n\n'), KEEPALIVE_MS);
    this.keepalive.unref();
  }

  position(position: number): void {
    this.write(`: queue position ${position}\n\n`);
  }

  /** The engine started: no more waiting comments. */
  started(): void {
    clearInterval(this.keepalive);
  }

  delta(text: string): void {
    if (text) this.chunk({ content: text }, null);
  }

  finish(reason: 'stop' | 'length', usage: Usage): void {
    this.chunk({}, reason);
    if (this.meta.includeUsage) this.send({ ...this.base(), choices: [], usage });
    this.write('data: [DONE]\n\n');
    this.end();
  }

  fail(error: ApiError): void {
    this.write(`data: ${JSON.stringify(error.body())}\n\n`);
    this.end();
  }

  end(): void {
    clearInterval(this.keepalive);
    if (!this.response.writableEnded) this.response.end();
  }

  private base() {
    return { id: this.meta.id, object: 'chat.completion.chunk', created: this.meta.created, model: this.meta.model, system_fingerprint: null };
  }

  private chunk(delta: Record<string, string>, finishReason: string | null): void {
    this.send({
      ...this.base(),
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...(this.meta.includeUsage ? { usage: null } : {}),
    });
  }

  private send(payload: unknown): void {
    this.write(`data: ${JSON.stringify(payload)}\n\n`);
  }

  private write(text: string): void {
    if (this.open) this.response.write(text);
  }
}
