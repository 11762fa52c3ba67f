// The GenerationStream a RemoteEngine hands out: deltas as they arrive from the worker, then the
// result. Like the engine's own stream it buffers, so nothing is lost to a late consumer; unlike
// it, it can `restart()`: when the job starts over on another worker, deltas of the dead attempt
// that the consumer has not taken yet are dropped (what it did take, the scheduler's restart hook
// tells the core to forget).
import type { GenerationResult, GenerationStream } from '../engine/types.js';

export class RemoteStream implements GenerationStream {
  readonly result: Promise<GenerationResult>;
  private resolveResult!: (result: GenerationResult) => void;
  private rejectResult!: (error: unknown) => void;
  private readonly queue: string[] = [];
  private done = false;
  private failure: { error: unknown } | undefined;
  private wake: (() => void) | undefined;
  /** The text of the current attempt so far (for a cancelled result). */
  text = '';

  constructor() {
    this.result = new Promise<GenerationResult>((resolve, reject) => {
      this.resolveResult = resolve;
      this.rejectResult = reject;
    });
    this.result.catch(() => undefined);
  }

  get settled(): boolean {
    return this.done;
  }

  push(delta: string): void {
    if (this.done || delta.length === 0) return;
    this.text += delta;
    this.queue.push(delta);
    this.notify();
  }

  restart(): void {
    this.queue.length = 0;
    this.text = '';
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
    this.failure = { error };
    this.rejectResult(error);
    this.notify();
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
        if (this.failure) throw this.failure.error;
        return;
      }
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}

export function cancelledResult(text: string): GenerationResult {
  return {
    text,
    tokens: [],
    promptTokens: 0,
    ttftMs: 0,
    tokensPerSecond: 0,
    cachedPromptTokens: 0,
    imageCount: 0,
    droppedMessages: 0,
    finishReason: 'cancelled',
    timings: { imageMs: 0, visionMs: 0, prefillMs: 0, decodeMs: 0, totalMs: 0 },
  };
}
