// Choosing the next token from the decoder's last-position logits.
//
//   const sampler = new Sampler(resolveSampling(request.sampling), promptIds);
//   for (;;) { const id = sampler.next(logits, generated); ... generated.push(id) }
//
// `greedy` is plain argmax over every logit with no processors at all (reproducible; it can pick
// ids the tokenizer never produces — the logits are never cut down to the tokenizer's size).
// Otherwise, in transformers' order: repetition penalty, no-repeat n-gram ban, temperature,
// top-k, top-p, min-p, then a draw from the seeded RNG.
//
// Scope of the history-based processors (a deliberate difference from transformers, which applies
// both to the whole input_ids): they look at the GENERATED tokens only. The prompt of a vision
// chat holds 729 image tokens, the style's system prompt and the question; penalising those
// words pushes the answer away from the question's own vocabulary, and an n-gram ban over the
// prompt can forbid `<|im_end|>` right where the question's last words are echoed, so the answer
// can't end. `penaltyScope: 'all'` restores transformers' behaviour for the repetition penalty.
//
// Cost per step for V = 152000: the penalty and ban touch only the ids involved; top-k/top-p use
// partial selection (sampling-select.ts), never a full sort; no allocation after the first steps.
import type { SamplingOptions } from './types.js';
import { createRng, type Rng } from './rng.js';
import { NgramBan } from './sampling-ngram.js';
import { NucleusSelector, TopCandidates, argmax } from './sampling-select.js';

export { argmax } from './sampling-select.js';

export interface SamplerOptions extends SamplingOptions {
  /** Drop tokens whose probability is below minP x the top token's (0 disables). */
  minP: number;
  /** What the repetition penalty looks at: generated tokens (default) or prompt + generated. */
  penaltyScope: 'generated' | 'all';
}

/**
 * Defaults for answers in the bot: Qwen1.5-Chat's recommended sampling (temperature 0.7, top-k 20,
 * top-p 0.8, repetition penalty 1.1) plus a 5-gram ban, which makes a verbatim loop such as the
 * seed's endless `"Bakery"` impossible after its second round, and a bounded answer length. The
 * generator's loop guard (stopping.ts) is the last line behind these.
 */
export const DEFAULT_SAMPLING: Readonly<SamplerOptions> = Object.freeze({
  greedy: false,
  temperature: 0.7,
  topK: 20,
  topP: 0.8,
  minP: 0,
  repetitionPenalty: 1.1,
  noRepeatNgramSize: 5,
  maxNewTokens: 256,
  stopStrings: Object.freeze([]) as unknown as string[],
  penaltyScope: 'generated',
});

/** DEFAULT_SAMPLING overridden by the fields that are set (undefined fields keep the default). */
export function resolveSampling(overrides: Partial<SamplerOptions> = {}): SamplerOptions {
  const out: SamplerOptions = { ...DEFAULT_SAMPLING, stopStrings: [...DEFAULT_SAMPLING.stopStrings] };
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) (out as unknown as Record<string, unknown>)[key] = value;
  }
  return validateSampling(out);
}

/** Throws RangeError naming the first option out of range. */
export function validateSampling(o: SamplerOptions): SamplerOptions {
  const check = (ok: boolean, what: string): void => {
    if (!ok) throw new RangeError(`sampling option ${what}`);
  };
  check(Number.isFinite(o.temperature) && o.temperature >= 0, `temperature must be >= 0 (got ${o.temperature})`);
  check(Number.isInteger(o.topK) && o.topK >= 0, `topK must be an integer >= 0 (got ${o.topK})`);
  check(o.topP > 0 && o.topP <= 1, `topP must be in (0, 1] (got ${o.topP})`);
  check(o.minP >= 0 && o.minP < 1, `minP must be in [0, 1) (got ${o.minP})`);
  check(Number.isFinite(o.repetitionPenalty) && o.repetitionPenalty > 0, `repetitionPenalty must be > 0 (got ${o.repetitionPenalty})`);
  check(Number.isInteger(o.noRepeatNgramSize) && o.noRepeatNgramSize >= 0, `noRepeatNgramSize must be an integer >= 0 (got ${o.noRepeatNgramSize})`);
  check(Number.isInteger(o.maxNewTokens) && o.maxNewTokens >= 1, `maxNewTokens must be an integer >= 1 (got ${o.maxNewTokens})`);
  check(o.seed === undefined || Number.isSafeInteger(o.seed), `seed must be an integer (got ${o.seed})`);
  return o;
}

/** Sorted candidate pool tried first when top-k is off but top-p/min-p need the best tokens. */
const NUCLEUS_POOL = 64;

export class Sampler {
  readonly options: Readonly<SamplerOptions>;
  private readonly rng: Rng;
  private readonly ngrams: NgramBan | null;
  private readonly promptIds: readonly number[];
  /** Ids the repetition penalty applies to, once each. */
  private penalized = new Int32Array(256);
  private penalizedCount = 0;
  private seen: Uint8Array | null = null;
  /** How many of `generated` have been taken into the history. */
  private consumed = 0;
  private readonly top = new TopCandidates();
  private readonly nucleus = new NucleusSelector();
  private probs = new Float64Array(64);

  /** `promptIds` matter only with penaltyScope 'all'. */
  constructor(options: Partial<SamplerOptions> = {}, promptIds: readonly number[] = []) {
    this.options = resolveSampling(options);
    this.rng = createRng(this.options.seed);
    this.ngrams = this.options.noRepeatNgramSize > 0 ? new NgramBan(this.options.noRepeatNgramSize) : null;
    this.promptIds = this.options.penaltyScope === 'all' ? promptIds : [];
  }

  /**
   * The next token for these logits (all V rows). `generated` = the tokens generated so far in this
   * answer, oldest first (the caller appends each chosen token). Modifies `logits` in place.
   */
  next(logits: Float32Array, generated: readonly number[]): number {
    const o = this.options;
    if (o.greedy) return argmax(logits);
    this.observe(logits.length, generated);

    if (o.repetitionPenalty !== 1) {
      const p = o.repetitionPenalty;
      for (let i = 0; i < this.penalizedCount; i++) {
        const id = this.penalized[i]!;
        const v = logits[id]!;
        logits[id] = v < 0 ? v * p : v / p;
      }
    }
    const banned = this.ngrams?.banned();
    if (banned) for (const id of banned) if (id < logits.length) logits[id] = Number.NEGATIVE_INFINITY;

    if (o.temperature < 1e-5) return argmax(logits);

    const vocab = logits.length;
    const nucleus = o.topP < 1 || o.minP > 0;
    if (o.topK === 0 && !nucleus) return this.drawFromAll(logits);
    const k = o.topK > 0 ? Math.min(o.topK, vocab) : Math.min(NUCLEUS_POOL, vocab);
    this.top.select(logits, k);
    if (this.top.size === 0) return argmax(logits); // everything banned: nothing better to do
    const complete = o.topK > 0 || k >= vocab;
    const kept = this.keep(logits, this.top.size, complete);
    if (kept > 0) return this.draw(this.top.indices, this.probs, kept);
    // The nucleus reaches past the pool (a flat distribution with top-k off): over all V.
    const max = this.top.values[0]!;
    this.nucleus.select(logits, max, 1 / o.temperature, o.topP, o.minP);
    return this.draw(this.nucleus.indices, this.nucleus.weights, this.nucleus.size);
  }

  /**
   * Turns the n best candidates into weights (in `probs`) and applies top-p and min-p. With
   * `complete`, the candidates are the whole distribution (top-k); otherwise the normaliser is
   * taken over all logits, and 0 is returned when top-p or min-p would keep tokens past the pool.
   * Returns how many of the candidates are kept.
   */
  private keep(logits: Float32Array, n: number, complete: boolean): number {
    const o = this.options;
    const invT = 1 / o.temperature;
    const max = this.top.values[0]!;
    if (max === Number.POSITIVE_INFINITY) {
      this.probs[0] = 1; // an infinite logit takes all the probability
      return 1;
    }
    if (this.probs.length < n) this.probs = new Float64Array(Math.max(n, this.probs.length * 2));
    let z = 0;
    for (let i = 0; i < n; i++) {
      const w = Math.exp((this.top.values[i]! - max) * invT);
      this.probs[i] = w;
      z += w;
    }
    let total = z;
    if (!complete && o.topP < 1) {
      total = 0;
      for (let i = 0; i < logits.length; i++) {
        const v = logits[i]!;
        if (v > Number.NEGATIVE_INFINITY) total += Math.exp((v - max) * invT);
      }
    }
    let kept = n;
    if (o.topP < 1) {
      // transformers' TopP: keep a token while the mass of the better ones is below top_p.
      let before = 0;
      kept = 0;
      while (kept < n && before < o.topP * total) {
        before += this.probs[kept]!;
        kept++;
      }
      if (!complete && kept === n && before < o.topP * total) return 0;
    }
    if (o.minP > 0) {
      // probs[0] is the top token's weight (exp(0) = 1); min-p is relative, so weights suffice.
      const floor = o.minP * this.probs[0]!;
      let m = 1;
      while (m < kept && this.probs[m]! >= floor) m++;
      if (!complete && m === n) return 0; // more tokens past the pool may clear the floor
      kept = m;
    }
    return kept;
  }

  /** Plain temperature sampling over the whole vocabulary: no candidates to select or sort. */
  private drawFromAll(logits: Float32Array): number {
    const invT = 1 / this.options.temperature;
    let max = Number.NEGATIVE_INFINITY;
    for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
    if (max === Number.NEGATIVE_INFINITY || max === Number.POSITIVE_INFINITY) return argmax(logits);
    let total = 0;
    for (let i = 0; i < logits.length; i++) {
      const v = logits[i]!;
      if (v > Number.NEGATIVE_INFINITY) total += Math.exp((v - max) * invT);
    }
    let u = this.rng.nextFloat() * total;
    let last = 0;
    for (let i = 0; i < logits.length; i++) {
      const v = logits[i]!;
      if (!(v > Number.NEGATIVE_INFINITY)) continue;
      last = i;
      u -= Math.exp((v - max) * invT);
      if (u < 0) return i;
    }
    return last;
  }

  private draw(ids: Int32Array, weights: Float64Array, kept: number): number {
    let total = 0;
    for (let i = 0; i < kept; i++) total += weights[i]!;
    let u = this.rng.nextFloat() * total;
    for (let i = 0; i < kept; i++) {
      u -= weights[i]!;
      if (u < 0) return ids[i]!;
    }
    return ids[kept - 1]!;
  }

  /** Brings the penalty set and the n-gram table up to date with `generated`. */
  private observe(vocab: number, generated: readonly number[]): void {
    if (!this.seen || this.seen.length !== vocab) {
      this.seen = new Uint8Array(vocab);
      this.penalizedCount = 0;
      for (const id of this.promptIds) this.markPenalized(id);
      for (let i = 0; i < this.consumed; i++) this.markPenalized(generated[i]!);
    }
    if (generated.length < this.consumed) {
      throw new RangeError('Sampler.next: `generated` must only grow (use a new Sampler per answer)');
    }
    for (let i = this.consumed; i < generated.length; i++) {
      const id = generated[i]!;
      this.markPenalized(id);
      this.ngrams?.push(id);
    }
    this.consumed = generated.length;
  }

  private markPenalized(id: number): void {
    const seen = this.seen!;
    if (!(id >= 0 && id < seen.length) || seen[id]) return;
    seen[id] = 1;
    if (this.penalizedCount === this.penalized.length) {
      const grown = new Int32Array(this.penalized.length * 2);
      grown.set(this.penalized);
      this.penalized = grown;
    }
    this.penalized[this.penalizedCount++] = id;
  }
}
