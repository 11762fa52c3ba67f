// A test double of the Engine interface: answers instantly or under the test's control, records
// every request, honours AbortSignal like the real engine (the stream ends with finishReason
// 'cancelled'), and can crash mid-answer or refuse a prompt as too long.
import { messageText } from '../../../src/engine/prompt.js';
import { DeltaStream } from '../../../src/engine/stream.js';
import type { Engine, GenerateRequest, GenerationResult, GenerationStream, ModelInfo } from '../../../src/engine/types.js';
import { VistyleError } from '../../../src/errors.js';

export interface FakeGeneration {
  index: number;
  request: GenerateRequest;
  signal: AbortSignal | undefined;
  /** Let a held generation stream its answer. */
  release(): void;
  /** Fail it now with ENGINE_CRASHED, after the words streamed so far. */
  crash(): void;
  /** Settles when the generation has ended, whichever way. */
  ended: Promise<void>;
}

export class FakeEngine implements Engine {
  readonly info: ModelInfo = {
    modelDir: '/fake',
    dtype: 'fp32',
    provider: 'cpu',
    maxContextTokens: 4096,
    imageSize: 384,
    imageTokens: 729,
    eosTokenIds: [0],
    loraTargets: [],
    slots: 1,
  };
  readonly generations: FakeGeneration[] = [];
  /** Hold each generation until release() (or crash()). */
  hold = false;
  /** Delay between streamed words. */
  wordDelayMs = 0;
  /** Requests with more messages than this fail with PROMPT_TOO_LONG (see trimHistory). */
  maxMessages = Number.POSITIVE_INFINITY;
  /**
   * Like the real engine: instead of refusing, leave out the oldest turns after the system
   * message until maxMessages fit, and report them in droppedMessages.
   */
  trimHistory = false;
  /** Fail the next generation with this error before any word (e.g. IMAGE_CORRUPT). */
  failNextWith: VistyleError | undefined;
  /** Crash the next generation after this many words. */
  crashNextAfterWords: number | undefined;
  answerFor: (request: GenerateRequest) => string = (request) => {
    const last = request.messages[request.messages.length - 1];
    return `Answer to: ${last ? messageText(last) : ''}`;
  };
  closed = false;
  private waiters: Array<{ count: number; resolve: () => void }> = [];

  generate(request: GenerateRequest, options: { signal?: AbortSignal } = {}): GenerationStream {
    const stream = new DeltaStream();
    const signal = options.signal;
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let crashed = false;
    let endedResolve!: () => void;
    const ended = new Promise<void>((resolve) => (endedResolve = resolve));
    const generation: FakeGeneration = {
      index: this.generations.length,
      request,
      signal,
      release,
      crash: () => {
        crashed = true;
        release();
      },
      ended,
    };
    this.generations.push(generation);
    for (const waiter of this.waiters.filter((w) => this.generations.length >= w.count)) waiter.resolve();
    this.waiters = this.waiters.filter((w) => this.generations.length < w.count);
    const crashAfter = this.crashNextAfterWords;
    this.crashNextAfterWords = undefined;
    const failWith = this.failNextWith;
    this.failNextWith = undefined;

    void (async () => {
      const started = Date.now();
      try {
        if (failWith) throw failWith;
        let dropped = 0;
        if (request.messages.length > this.maxMessages) {
          const turns = request.messages.length - 1 - (request.messages[0]?.role === 'system' ? 1 : 0);
          const over = request.messages.length - this.maxMessages;
          if (!this.trimHistory || over > turns - 1) throw new VistyleError('PROMPT_TOO_LONG', `${request.messages.length} messages do not fit`);
          dropped = over + (over % 2); // whole turns: a question and its answer
        }
        if (this.hold) await Promise.race([released, abortPromise(signal)]);
        const words = this.answerFor(request).split(/(?<= )/);
        let text = '';
        for (const [i, word] of words.entries()) {
          if (signal?.aborted) return stream.end(result(text, 'cancelled', started));
          if (crashed || (crashAfter !== undefined && i >= crashAfter)) {
            throw new VistyleError('ENGINE_CRASHED', 'the engine worker exited');
          }
          if (this.wordDelayMs > 0) await sleep(this.wordDelayMs);
          text += word;
          stream.push(word);
        }
        if (crashed) throw new VistyleError('ENGINE_CRASHED', 'the engine worker exited');
        stream.end({ ...result(text, signal?.aborted ? 'cancelled' : 'eos', started), droppedMessages: dropped, imageCount: imageParts(request) });
      } catch (error) {
        stream.fail(error);
      } finally {
        endedResolve();
      }
    })();
    return stream;
  }

  /** Resolves once `count` generations have started. */
  waitForGenerations(count: number): Promise<void> {
    if (this.generations.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ count, resolve }));
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

function result(text: string, finishReason: GenerationResult['finishReason'], started: number): GenerationResult {
  const tokens = text.split(' ').filter(Boolean).map((_, i) => i + 1);
  const totalMs = Date.now() - started;
  return {
    text,
    tokens,
    promptTokens: 10,
    cachedPromptTokens: 0,
    imageCount: 1,
    droppedMessages: 0,
    ttftMs: 1,
    tokensPerSecond: tokens.length,
    finishReason,
    timings: { imageMs: 0, visionMs: 0, prefillMs: 0, decodeMs: totalMs, totalMs },
  };
}

/** Picture occurrences in the request (what the real engine reports as imageCount). */
function imageParts(request: GenerateRequest): number {
  return request.messages.reduce((n, m) => n + (typeof m.content === 'string' ? 0 : m.content.filter((part) => part.type === 'image').length), 0);
}

function abortPromise(signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (!signal) return;
    if (signal.aborted) return resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
