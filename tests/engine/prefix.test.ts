// Prefix (KV) reuse on tiny-a: a follow-up reuses the conversation so far, a style's fixed prefix
// (system prompt + examples) is shared by its requests, a hit is verified token for token (and
// picture for picture), the cache stays within its byte budget, and with reuse every step's
// logits equal those of a full prefill (an engine without a prefix cache) within 1e-4.
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytesPerPosition } from '../../src/engine/kv-cache.js';
import { createLocalEngine, type LocalEngine } from '../../src/engine/local-engine.js';
import type { ChatMessage, GenerateRequest, GenerationResult } from '../../src/engine/types.js';
import { buildTinyA, fixtureImage, maxAbsDiff, removeDirs, showing } from './engine-test-helpers.js';

const GREEDY = { greedy: true, stopStrings: [], maxNewTokens: 10 };

async function solidPng(r: number, g: number, b: number): Promise<Uint8Array> {
  return new Uint8Array(await sharp({ create: { width: 56, height: 56, channels: 3, background: { r, g, b } } }).png().toBuffer());
}

const STYLE: ChatMessage[] = [
  { role: 'system', content: 'You are a grumpy baker who answers in one short sentence.' },
  { role: 'user', content: 'What is this?' },
  { role: 'assistant', content: 'Bread. Obviously.' },
];

describe('prefix reuse', () => {
  let modelDir: string;
  let reuse: LocalEngine;
  let plain: LocalEngine;
  let other: Uint8Array;

  beforeAll(async () => {
    modelDir = await buildTinyA();
    reuse = await createLocalEngine({ modelDir, threads: 1, slots: 2, cacheBlock: 8, prefixCacheBytes: 64 * 2 ** 20 });
    plain = await createLocalEngine({ modelDir, threads: 1, slots: 1, prefixCacheBytes: 0 });
    other = await solidPng(30, 160, 90);
  });
  afterAll(async () => {
    await reuse?.close();
    await plain?.close();
    removeDirs(modelDir);
  });

  async function run(engine: LocalEngine, request: GenerateRequest): Promise<{ result: GenerationResult; logits: Float32Array[] }> {
    const logits: Float32Array[] = [];
    const result = await engine.generate(request, { onLogits: (_s, l) => logits.push(l) }).result;
    return { result, logits };
  }

  async function expectSameAsFullPrefill(request: GenerateRequest): Promise<GenerationResult> {
    const got = await run(reuse, request);
    const full = await run(plain, request);
    expect(full.result.cachedPromptTokens).toBe(0);
    expect(got.result.tokens).toEqual(full.result.tokens);
    expect(got.logits).toHaveLength(full.logits.length);
    got.logits.forEach((step, i) => expect(maxAbsDiff(step, full.logits[i]!), `step ${i}`).toBeLessThanOrEqual(1e-4));
    return got.result;
  }

  it('a follow-up reuses the conversation so far, with the logits of a full prefill', async () => {
    const first = await expectSameAsFullPrefill({ images: [fixtureImage()], messages: [showing('What is in this picture?')], sampling: GREEDY });
    expect(first.cachedPromptTokens).toBe(0);
    const followUp: GenerateRequest = {
      images: [fixtureImage()],
      messages: [showing('What is in this picture?'), { role: 'assistant', content: first.text }, { role: 'user', content: 'And its colour?' }],
      sampling: GREEDY,
    };
    const second = await expectSameAsFullPrefill(followUp);
    // everything up to the first answer came from the cache (the answer re-tokenized from its text
    // may differ from the generated ids near its end; the picture's rows certainly did)
    expect(second.cachedPromptTokens).toBeGreaterThanOrEqual(first.promptTokens);
    expect(second.timings.visionMs).toBe(0);
    // asking the very same again: all but the last position reused
    const again = await expectSameAsFullPrefill(followUp);
    expect(again.cachedPromptTokens).toBe(again.promptTokens - 1);
  });

  it("shares a style's fixed prefix between its requests, and verifies every hit token by token and picture by picture", async () => {
    const withStyle = (image: Uint8Array, question: string): GenerateRequest => ({
      images: [image],
      messages: [...STYLE, showing(question)],
      sampling: GREEDY,
    });
    const a = await expectSameAsFullPrefill(withStyle(fixtureImage(), 'Is it fresh?'));
    // another picture, same style: the text before the picture is reused, not a row of the picture
    const b = await expectSameAsFullPrefill(withStyle(other, 'Is it fresh?'));
    const styleLength = b.cachedPromptTokens;
    expect(styleLength).toBeGreaterThan(20);
    expect(styleLength).toBeLessThan(a.promptTokens - 16); // stops before the picture's 16 rows
    const stats = reuse.prefix.stats();
    expect(stats.entries).toBeGreaterThanOrEqual(2);
    // the same picture, one character different in the question: reused up to that character
    const c = await expectSameAsFullPrefill(withStyle(fixtureImage(), 'Is it fresk?'));
    // (toy byte tokenizer: one id per byte; after "fres" come "h?", <|im_end|>, <|im_start|>, "assistant")
    expect(c.cachedPromptTokens).toBe(a.promptTokens - ('h?'.length + 2 + 'assistant'.length));
  });

  it('stays within its byte budget, least recently used out first', async () => {
    const small = await createLocalEngine({ modelDir, threads: 1, slots: 1, prefixCacheBytes: 0 });
    const perPosition = bytesPerPosition(small.cache.spec);
    await small.close();
    // room for about two conversations of ~70 positions
    const budget = 150 * perPosition;
    const engine = await createLocalEngine({ modelDir, threads: 1, slots: 1, cacheBlock: 8, prefixCacheBytes: budget });
    try {
      const pictures = [fixtureImage(), other, await solidPng(200, 200, 20), await solidPng(10, 10, 10)];
      for (const picture of pictures) await engine.generate({ images: [picture], messages: [showing('Describe it.')], sampling: GREEDY }).result;
      const stats = engine.prefix.stats();
      expect(stats.bytes).toBeLessThanOrEqual(budget);
      expect(stats.entries).toBeLessThanOrEqual(3);
      const ask = (picture: Uint8Array) => engine.generate({ images: [picture], messages: [showing('Describe it.')], sampling: GREEDY }).result;
      const newest = await ask(pictures[3]!);
      expect(newest.cachedPromptTokens).toBe(newest.promptTokens - 1);
      const oldest = await ask(pictures[0]!);
      expect(oldest.cachedPromptTokens).toBeLessThan(oldest.promptTokens - 16); // its picture's rows were evicted
    } finally {
      await engine.close();
    }
  });

  it('restores a prefix while another request decodes, without changing either', async () => {
    const followUp: GenerateRequest = { images: [fixtureImage()], messages: [showing('What is in this picture?'), { role: 'assistant', content: 'x' }, { role: 'user', content: 'More?' }], sampling: GREEDY };
    const busy: GenerateRequest = { images: [other], messages: [showing('Tell me a long story about it.')], sampling: { ...GREEDY, maxNewTokens: 30 } };
    const alone = [await run(plain, busy), await run(plain, followUp)];
    const together = await Promise.all([run(reuse, busy), run(reuse, followUp)]);
    expect(together[1]!.result.cachedPromptTokens).toBeGreaterThan(0);
    together.forEach((got, i) => {
      expect(got.result.tokens).toEqual(alone[i]!.result.tokens);
      got.logits.forEach((step, k) => expect(maxAbsDiff(step, alone[i]!.logits[k]!)).toBeLessThanOrEqual(1e-4));
    });
  });
});
