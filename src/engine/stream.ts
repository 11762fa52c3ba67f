// The GenerationStream the engine hands out: an async iterable of text deltas plus a `result`
// promise. The producer (the local generator or the worker client) pushes deltas as they come and
// then ends or fails the stream. Deltas are buffered, so a consumer that only awaits `result` (or
// starts iterating late) loses nothing. Intended for one consumer: a second iteration sees only
// the deltas that arrive after it starts.
import type { GenerationResult, GenerationStream } from './types.js';

export class DeltaStream implements GenerationStream {
  readonly result: Promise<GenerationResult>;
  private resolveResult!: (result: GenerationResult) => void;
  private rejectResult!: (error: unknown) => void;
  private readonly queue: string[] = [];
  private done = false;
  private error: unknown = undefined;
  private failed = false;
  private wake: (() => void) | undefined;

  constructor() {
    this.result = new Promise<GenerationResult>((resolve, reject) => {
      this.resolveResult = resolve;
      this.rejectResult = reject;
    });
    // The failure also reaches iterating consumers; don't let an unobserved `result` crash the process.
    this.result.catch(() => undefined);
  }

  get settled(): boolean {
    return this.done;
  }

  push(delta: string): void {
    if (this.done || delta.length === 0) return;
    this.queue.push(delta);
    this.notify();
  }

  end(result: GenerationResult): void {
    if (this.done) return;
    this.done = true;
    this.resolveResult(result);
    this.notify();
  }

  fail(error: unknown): void {
    if (this.done) return;
    this.done = true;
    this.failed = true;
    this.error = error;
    this.rejectResult(error);
    this.notify();
  }

  /** Drops the deltas no consumer has taken yet. */
  protected dropBuffered(): void {
    this.queue.length = 0;
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    for (;;) {
      const next = this.queue.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      if (this.done) {
        if (this.failed) throw this.error;
        return;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}

/**
 * The result of a request cancelled before it produced an answer (still waiting, or not yet
 * started): `text` is what it had streamed (a remote attempt cut short), `totalMs` how long it was
 * in the engine.
 */
export function cancelledResult(text = '', totalMs = 0): GenerationResult {
  return {
    text,
    tokens: [],
    promptTokens: 0,
    ttftMs: 0,
    tokensPerSecond: 0,
    finishReason: 'cancelled',
    timings: { imageMs: 0, visionMs: 0, prefillMs: 0, decodeMs: 0, totalMs },
    cachedPromptTokens: 0,
    imageCount: 0,
    droppedMessages: 0,
  };
}
