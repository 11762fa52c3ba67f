import { describe, expect, it } from 'vitest';
import { createRng, Xoshiro128StarStar } from '../../src/engine/rng.js';
import { argmax, DEFAULT_SAMPLING, resolveSampling, Sampler, type SamplerOptions } from '../../src/engine/sampler.js';
import { NgramBan } from '../../src/engine/sampling-ngram.js';
import { TopCandidates } from '../../src/engine/sampling-select.js';
import { isStuckInLoop } from '../../src/engine/stopping.js';

/** A sampler that only applies the processors: temperature 0 = argmax after them. */
const processorsOnly = (o: Partial<SamplerOptions>): Sampler =>
  new Sampler({ temperature: 0, topK: 0, topP: 1, repetitionPenalty: 1, noRepeatNgramSize: 0, ...o });

const f32 = (values: number[]): Float32Array => Float32Array.from(values);

function histogram(sampler: Sampler, logits: () => Float32Array, draws: number): Map<number, number> {
  const counts = new Map<number, number>();
  for (let i = 0; i < draws; i++) {
    const id = sampler.next(logits(), []);
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

describe('xoshiro128** RNG', () => {
  it('matches the published first outputs from state (1, 2, 3, 4)', () => {
    const rng = Xoshiro128StarStar.fromState(1, 2, 3, 4);
    expect([rng.nextUint32(), rng.nextUint32(), rng.nextUint32(), rng.nextUint32()]).toEqual([11520, 0, 5927040, 70819200]);
  });

  it('seeds through splitmix32 (vectors from an independent Python implementation)', () => {
    const take = (seed: number): number[] => {
      const rng = createRng(seed);
      return [rng.nextUint32(), rng.nextUint32(), rng.nextUint32(), rng.nextUint32()];
    };
    expect(take(42)).toEqual([660444221, 3652823732, 77672526, 910233633]);
    expect(take(0)).toEqual([1789933344, 44971166, 2521387044, 3848737593]);
    expect(take(2 ** 40 + 7)).toEqual([2098392644, 4155793745, 3939309091, 154303161]);
  });

  it('gives floats in [0, 1) with a uniform mean', () => {
    const rng = createRng(7);
    let sum = 0;
    let outside = 0;
    for (let i = 0; i < 100_000; i++) {
      const x = rng.nextFloat();
      if (!(x >= 0 && x < 1)) outside++;
      sum += x;
    }
    expect(outside).toBe(0);
    expect(Math.abs(sum / 100_000 - 0.5)).toBeLessThan(0.01);
  });
});

describe('greedy', () => {
  it('is plain argmax over all logits, even ids past the tokenizer, with no processors', () => {
    const logits = new Float32Array(152_000);
    logits[151_999] = 5; // a row the tokenizer has no token for
    logits[10] = 4;
    const greedy = new Sampler({ greedy: true, repetitionPenalty: 2, noRepeatNgramSize: 1 });
    expect(greedy.next(logits, [151_999, 151_999])).toBe(151_999);
    expect(logits[151_999]).toBe(5); // untouched
  });

  it('takes the first of equal maxima and never NaN', () => {
    expect(argmax(f32([1, 3, 3, 2]))).toBe(1);
    expect(argmax(f32([Number.NaN, 1, Number.NaN, 2]))).toBe(3);
    expect(argmax(f32([Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY]))).toBe(0);
  });
});

describe('processors (transformers semantics)', () => {
  it('repetition penalty divides positive and multiplies negative logits of seen tokens, once each', () => {
    const s = processorsOnly({ repetitionPenalty: 1.1 });
    const logits = f32([2.0, 1.9, -1.0, 0.5]);
    expect(s.next(logits, [0, 0, 2])).toBe(1);
    expect(logits[0]).toBe(Math.fround(2.0 / 1.1)); // not divided twice for the repeated 0
    expect(logits[2]).toBe(Math.fround(-1.0 * 1.1));
    expect(logits[1]).toBe(Math.fround(1.9));
    const negative = processorsOnly({ repetitionPenalty: 1.1 });
    expect(negative.next(f32([-1.0, -1.05]), [0])).toBe(1);
  });

  it('looks at generated tokens only, unless penaltyScope is "all"', () => {
    const prompt = [0];
    expect(new Sampler({ temperature: 0, repetitionPenalty: 1.5, noRepeatNgramSize: 0 }, prompt).next(f32([2, 1.5]), [])).toBe(0);
    expect(new Sampler({ temperature: 0, repetitionPenalty: 1.5, noRepeatNgramSize: 0, penaltyScope: 'all' }, prompt).next(f32([2, 1.5]), [])).toBe(1);
  });

  it('bans the token that would repeat an n-gram', () => {
    const ban = new NgramBan(3);
    for (const t of [1, 2, 3, 1, 2]) ban.push(t);
    expect([...(ban.banned() ?? [])]).toEqual([3]);
    const s = processorsOnly({ noRepeatNgramSize: 2 });
    // bigram (5, 6) occurred; after another 5, token 6 is banned
    expect(s.next(f32([0, 0, 0, 0, 0, 0, 9, 1]), [5, 6, 5])).toBe(7);
    const unigram = processorsOnly({ noRepeatNgramSize: 1 });
    expect(unigram.next(f32([3, 2, 1]), [0, 1])).toBe(2);
  });

  it('keeps the history across steps as `generated` grows', () => {
    const s = processorsOnly({ noRepeatNgramSize: 2 });
    const generated: number[] = [];
    // the model always prefers 1 then 2: 1,2,1 then (1,2) is banned -> 3
    const prefer = (id: number): Float32Array => {
      const l = new Float32Array(4);
      l[id] = 5;
      l[3] = 1;
      return l;
    };
    for (const want of [1, 2, 1, 2]) generated.push(s.next(prefer(want), generated));
    expect(generated).toEqual([1, 2, 1, 3]);
    expect(() => s.next(prefer(1), [])).toThrow(/must only grow/);
  });
});

describe('sampling', () => {
  const probsLogits = (probs: number[]): (() => Float32Array) => () => f32(probs.map(Math.log));

  it('top-k draws only from the k best, in proportion', () => {
    const s = new Sampler({ seed: 1, temperature: 1, topK: 2, topP: 1, repetitionPenalty: 1, noRepeatNgramSize: 0 });
    const counts = histogram(s, probsLogits([0.1, 0.4, 0.2, 0.3]), 20_000);
    expect([...counts.keys()].sort()).toEqual([1, 3]);
    expect(counts.get(1)! / 20_000).toBeCloseTo(0.4 / 0.7, 1);
  });

  it('top-p keeps a token while the mass before it is below top_p', () => {
    const run = (topP: number): number[] => {
      const s = new Sampler({ seed: 2, temperature: 1, topK: 0, topP, repetitionPenalty: 1, noRepeatNgramSize: 0 });
      return [...histogram(s, probsLogits([0.05, 0.5, 0.15, 0.3]), 5000).keys()].sort();
    };
    expect(run(0.8)).toEqual([1, 3]); // 0.5 + 0.3 reaches 0.8: the third is not needed
    expect(run(0.81)).toEqual([1, 2, 3]);
    expect(run(0.3)).toEqual([1]);
  });

  it('handles a nucleus larger than the sorted pool (flat 152000-way distribution)', () => {
    const s = new Sampler({ seed: 3, temperature: 1, topK: 0, topP: 0.5, repetitionPenalty: 1, noRepeatNgramSize: 0 });
    const flat = new Float32Array(152_000);
    const ids = [...histogram(s, () => flat, 100).keys()];
    // ties keep the lower index: the nucleus is ids 0..75999
    expect(Math.max(...ids)).toBeLessThan(76_000);
    expect(Math.max(...ids)).toBeGreaterThan(50_000);
    expect(ids.length).toBeGreaterThan(95);
  });

  it('gives the same nucleus from the pool and from the full-vocabulary path', () => {
    // 300 distinct logits in shuffled order; top-p 0.9 needs far more than the 64-token pool
    const rng = createRng(8);
    const logits = new Float32Array(300);
    const order = Array.from({ length: 300 }, (_, i) => i).sort(() => rng.nextFloat() - 0.5);
    order.forEach((id, rank) => (logits[id] = -rank * 0.01));
    const expected = new Set(order.slice(0, 0)); // filled below from the definition
    let mass = 0;
    let total = 0;
    for (let r = 0; r < 300; r++) total += Math.exp(-r * 0.01);
    for (let r = 0; r < 300 && mass < 0.9 * total; r++) {
      mass += Math.exp(-r * 0.01);
      expected.add(order[r]!);
    }
    const s = new Sampler({ seed: 10, temperature: 1, topK: 0, topP: 0.9, repetitionPenalty: 1, noRepeatNgramSize: 0 });
    const seen = new Set(histogram(s, () => logits, 5000).keys());
    expect(expected.size).toBeGreaterThan(64);
    for (const id of seen) expect(expected.has(id)).toBe(true);
    expect(seen.size).toBeGreaterThan(expected.size - 5);
    const viaPool = new Sampler({ seed: 10, temperature: 1, topK: 300, topP: 0.9, repetitionPenalty: 1, noRepeatNgramSize: 0 });
    const seenPool = new Set(histogram(viaPool, () => logits, 5000).keys());
    for (const id of seenPool) expect(expected.has(id)).toBe(true);
  });

  it('min-p drops tokens below min_p x the best one', () => {
    const s = new Sampler({ seed: 4, temperature: 1, topK: 0, topP: 1, minP: 0.2, repetitionPenalty: 1, noRepeatNgramSize: 0 });
    expect([...histogram(s, probsLogits([0.55, 0.3, 0.1, 0.05]), 5000).keys()].sort()).toEqual([0, 1]);
  });

  it('temperature sharpens and flattens; without filters it samples the whole vocabulary', () => {
    const cold = new Sampler({ seed: 5, temperature: 0.25, topK: 0, topP: 1, repetitionPenalty: 1, noRepeatNgramSize: 0 });
    const hot = new Sampler({ seed: 5, temperature: 4, topK: 0, topP: 1, repetitionPenalty: 1, noRepeatNgramSize: 0 });
    const logits = probsLogits([0.6, 0.4]);
    const coldShare = histogram(cold, logits, 10_000).get(0)! / 10_000;
    const hotShare = histogram(hot, logits, 10_000).get(0)! / 10_000;
    // p ∝ p0^(1/T): 0.6^4 / (0.6^4 + 0.4^4) = 0.835; 0.6^0.25 / (...) = 0.525
    expect(coldShare).toBeCloseTo(0.835, 1);
    expect(hotShare).toBeCloseTo(0.525, 1);
  });

  it('is reproducible with a seed', () => {
    const draw = (seed: number): number[] => {
      const s = new Sampler({ seed, temperature: 1, topK: 0, topP: 0.95, repetitionPenalty: 1, noRepeatNgramSize: 0 });
      const out: number[] = [];
      for (let i = 0; i < 50; i++) out.push(s.next(f32(Array.from({ length: 100 }, (_, j) => Math.sin(j))), []));
      return out;
    };
    expect(draw(11)).toEqual(draw(11));
    expect(draw(11)).not.toEqual(draw(12));
  });

  it('never picks a banned token, and copes when everything is banned', () => {
    const s = new Sampler({ seed: 6, temperature: 1, topK: 5, noRepeatNgramSize: 0 });
    const banned = f32([Number.NEGATIVE_INFINITY, 1, Number.NEGATIVE_INFINITY, 1, Number.NaN]);
    for (let i = 0; i < 200; i++) expect([1, 3]).toContain(s.next(banned.slice(), []));
    expect(s.next(f32([Number.NEGATIVE_INFINITY, Number.NEGATIVE_INFINITY]), [])).toBe(0);
  });

  it('selects the top candidates exactly (partial selection vs a full sort)', () => {
    const rng = createRng(9);
    const logits = Float32Array.from({ length: 5000 }, () => Math.round(rng.nextFloat() * 100) / 10);
    const top = new TopCandidates();
    top.select(logits, 37);
    const expected = [...logits.keys()].sort((a, b) => logits[b]! - logits[a]! || a - b).slice(0, 37);
    expect([...top.indices.subarray(0, top.size)]).toEqual(expected);
  });
});

describe('defaults', () => {
  it('are sampled, penalised, n-gram-banned and bounded', () => {
    expect(DEFAULT_SAMPLING.greedy).toBe(false);
    expect(DEFAULT_SAMPLING.repetitionPenalty).toBeGreaterThan(1);
    expect(DEFAULT_SAMPLING.noRepeatNgramSize).toBeGreaterThan(0);
    expect(DEFAULT_SAMPLING.maxNewTokens).toBeLessThanOrEqual(512);
    expect(resolveSampling({ temperature: undefined, topK: 5 })).toMatchObject({ temperature: DEFAULT_SAMPLING.temperature, topK: 5 });
    expect(() => resolveSampling({ topP: 0 })).toThrow(/topP/);
    expect(() => resolveSampling({ maxNewTokens: 0 })).toThrow(/maxNewTokens/);
  });

  // The seed's failure: a model that, once it has said `"Bakery"`, keeps preferring to say it again.
  // Tokens: 3 = ' "', 4 = 'B', 5 = 'akery', 6 = '"'; 2 = EOS; the rest is noise.
  const EOS = 2;
  const PHRASE = [3, 4, 5, 6];
  const VOCAB = 2000;
  function loopingModel(generated: readonly number[]): Float32Array {
    const logits = new Float32Array(VOCAB);
    for (let i = 0; i < VOCAB; i++) logits[i] = Math.sin(i * 12.9898 + generated.length * 78.233) * 0.5;
    const last = generated.at(-1);
    const at = last === undefined ? -1 : PHRASE.indexOf(last);
    logits[PHRASE[(at + 1) % PHRASE.length]!] = 9; // continue (or restart) the phrase
    logits[EOS] = 4; // ending is the clear second choice
    return logits;
  }
  function generate(sampler: Sampler, maxNewTokens: number, loopGuard: boolean): { tokens: number[]; reason: string } {
    const tokens: number[] = [];
    for (;;) {
      const id = sampler.next(loopingModel(tokens), tokens);
      if (id === EOS) return { tokens, reason: 'eos' };
      tokens.push(id);
      if (tokens.length >= maxNewTokens) return { tokens, reason: 'length' };
      if (loopGuard && isStuckInLoop(tokens)) return { tokens, reason: 'loop' };
    }
  }
  const phraseCount = (tokens: number[]): number => tokens.filter((t) => t === 5).length;

  it('greedy repeats "Bakery" until it runs out of tokens', () => {
    const { tokens, reason } = generate(new Sampler({ greedy: true }), DEFAULT_SAMPLING.maxNewTokens, false);
    expect(reason).toBe('length');
    expect(phraseCount(tokens)).toBe(DEFAULT_SAMPLING.maxNewTokens / 4);
  });

  it('the defaults stop it after at most two rounds, for every seed', () => {
    for (let seed = 0; seed < 50; seed++) {
      const { tokens, reason } = generate(new Sampler({ ...DEFAULT_SAMPLING, seed }), DEFAULT_SAMPLING.maxNewTokens, true);
      expect(reason).toBe('eos');
      expect(phraseCount(tokens)).toBeLessThanOrEqual(2);
      expect(tokens.length).toBeLessThan(16);
    }
  });

  it('with the n-gram ban and penalty switched off, the loop guard still ends it early', () => {
    const { tokens, reason } = generate(
      new Sampler({ ...DEFAULT_SAMPLING, seed: 1, noRepeatNgramSize: 0, repetitionPenalty: 1 }),
      DEFAULT_SAMPLING.maxNewTokens,
      true,
    );
    expect(reason).toBe('loop');
    expect(tokens.length).toBeLessThan(64);
  });
});
