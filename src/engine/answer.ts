// One answer as it is generated: the sampler, the detokenizer, the stop criteria, the tokens so
// far and the timings. The batch engine hands it each step's logits for its row; it says whether
// the answer goes on (and with which token to feed) or how it ended. Nothing here knows about
// batches, rows or where the cache lives.
import { StopStringFilter, isStuckInLoop } from './stopping.js';
import type { DeltaDetokenizer, TokenSampler } from './generation-parts.js';
import type { FinishReason, GenerationResult, GenerationTimings, SamplingOptions } from './types.js';

const now = (): number => performance.now();

export interface AnswerHooks {
  onDelta?: (text: string) => void;
  /** Called after each generated token. */
  onToken?: (tokenId: number, count: number) => void;
  /** Raw logits of each step before sampling (step 0 = prefill), a copy. */
  onLogits?: (step: number, logits: Float32Array) => void;
}

export interface AnswerSetup {
  sampling: SamplingOptions;
  sampler: TokenSampler;
  detokenizer: DeltaDetokenizer;
  endIds: ReadonlySet<number>;
  loopGuard: boolean;
  hooks: AnswerHooks;
  startedAt: number;
}

export class Answer {
  readonly tokens: number[] = [];
  text = '';
  finishReason: FinishReason | null = null;
  readonly timings: GenerationTimings = { imageMs: 0, visionMs: 0, prefillMs: 0, decodeMs: 0, totalMs: 0 };
  ttftMs = 0;
  private firstTokenAt = 0;
  private step = 0;
  private readonly stops: StopStringFilter;

  constructor(private readonly setup: AnswerSetup) {
    this.stops = new StopStringFilter(setup.sampling.stopStrings);
  }

  get startedAt(): number {
    return this.setup.startedAt;
  }

  private emit(delta: string): void {
    if (delta.length === 0) return;
    this.text += delta;
    this.setup.hooks.onDelta?.(delta);
  }

  /**
   * Chooses the next token from this row's logits (modified in place by the sampler). Returns the
   * token to feed next, or null when the answer ended (finishReason says why). `room` is whether
   * the cache can take one more position.
   */
  next(logits: Float32Array, room: boolean): number | null {
    const { hooks, sampling } = this.setup;
    if (hooks.onLogits) hooks.onLogits(this.step, logits.slice());
    const token = this.setup.sampler.next(logits, this.tokens);
    if (this.step === 0) {
      this.firstTokenAt = now();
      this.ttftMs = this.firstTokenAt - this.setup.startedAt;
    }
    this.step++;
    if (this.setup.endIds.has(token)) return this.end('eos');
    this.tokens.push(token);
    hooks.onToken?.(token, this.tokens.length);
    this.emit(this.stops.push(this.setup.detokenizer.push(token)));
    if (this.stops.stopped) return this.end('stop');
    if (this.tokens.length >= sampling.maxNewTokens) return this.end('length');
    if (this.setup.loopGuard && !sampling.greedy && isStuckInLoop(this.tokens)) return this.end('stop');
    if (!room) return this.end('length');
    return token;
  }

  /** Ends the answer; pending text is flushed unless it was cancelled or stopped. */
  end(reason: FinishReason): null {
    if (this.finishReason) return null;
    this.finishReason = reason;
    if (reason !== 'cancelled' && !this.stops.stopped) {
      // An incomplete character at the very end, then whatever the stop filter held back.
      this.emit(this.stops.push(this.setup.detokenizer.flush()));
      if (this.stops.stopped) this.finishReason = 'stop';
      else this.emit(this.stops.flush());
    }
    return null;
  }

  result(fields: { promptTokens: number; cachedPromptTokens: number; imageCount: number; droppedMessages: number }): GenerationResult {
    const end = now();
    const decodeMs = this.tokens.length > 0 && this.firstTokenAt > 0 ? end - this.firstTokenAt : 0;
    return {
      text: this.text,
      tokens: [...this.tokens],
      promptTokens: fields.promptTokens,
      ttftMs: this.ttftMs,
      tokensPerSecond: this.tokens.length > 1 && decodeMs > 0 ? ((this.tokens.length - 1) * 1000) / decodeMs : 0,
      finishReason: this.finishReason ?? 'cancelled',
      timings: { ...this.timings, decodeMs, totalMs: end - this.setup.startedAt },
      cachedPromptTokens: fields.cachedPromptTokens,
      imageCount: fields.imageCount,
      droppedMessages: fields.droppedMessages,
    };
  }
}
