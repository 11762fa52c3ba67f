// Several pictures in one conversation against transformers' references on tiny-a
// (tests/fixtures/tiny-a-multi, whose README pins the semantics): two pictures in one question,
// text and pictures interleaved (the template puts a message's pictures first), a follow-up turn
// with a new picture (the assistant turn given as a plain string), the same picture twice (two
// occurrences). Prompt ids and pixel values exactly, features per occurrence and every step's
// logits within 1e-4, the 12 greedy tokens exactly; alone and all four cases batched; the
// follow-up with prefix reuse prefills only its new turn and never re-encodes the first picture;
// a conversation that cannot fit is refused saying how many pictures fit; then end to end through
// `vistyle ask --image A --image B --raw --greedy --json`.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createLocalEngine, type LocalEngine } from '../../src/engine/local-engine.js';
import { openModelFolder } from '../../src/engine/model-folder.js';
import { createTextParts, type LoadedTextParts } from '../../src/engine/text-parts.js';
import type { ChatMessage, GenerateRequest, GenerationResult, MessagePart } from '../../src/engine/types.js';
import { isVistyleError, type VistyleError } from '../../src/errors.js';
import { FIXTURES, buildTinyA, ensureBuiltCli, maxAbsDiff, removeDirs, runCli } from './engine-test-helpers.js';

const MULTI = join(FIXTURES, 'tiny-a-multi');
const V = 512;
const P = 16;

interface Case {
  messages: Array<{ role: 'user' | 'assistant'; content: Array<{ type: 'image' } | { type: 'text'; text: string }> }>;
  images: Array<'image1' | 'image2'>;
  input_ids: number[];
  image_token_spans: Array<[number, number]>;
  generate: { new_tokens: number[] };
}
const inputs = JSON.parse(readFileSync(join(MULTI, 'inputs.json'), 'utf8')) as { cases: Record<string, Case> };
const CASES = ['two_images', 'interleaved', 'follow_up', 'same_image_twice'] as const;

function array(name: string): Float32Array {
  const manifest = JSON.parse(readFileSync(join(MULTI, 'manifest.json'), 'utf8')) as { arrays: Array<{ name: string; file: string }> };
  const entry = manifest.arrays.find((a) => a.name === name);
  if (!entry) throw new Error(`no array ${name}`);
  const bytes = readFileSync(join(MULTI, entry.file));
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

const picture = (name: 'image1' | 'image2'): Uint8Array => new Uint8Array(readFileSync(join(MULTI, `${name}_56x56.png`)));

/**
 * The case as an engine request: each distinct picture once in `images`, image parts pointing at
 * it (same_image_twice: one picture, shown twice), assistant turns as plain strings.
 */
function requestOf(name: (typeof CASES)[number], maxNewTokens = 12): GenerateRequest {
  const c = inputs.cases[name]!;
  const distinct = [...new Set(c.images)];
  let occurrence = 0;
  const messages: ChatMessage[] = c.messages.map((m) => {
    if (m.role === 'assistant') return { role: 'assistant', content: m.content.map((p) => (p.type === 'text' ? p.text : '')).join('') };
    const content: MessagePart[] = m.content.map((p) => (p.type === 'image' ? { type: 'image', image: distinct.indexOf(c.images[occurrence++]!) } : { type: 'text', text: p.text }));
    return { role: 'user', content };
  });
  return { images: distinct.map(picture), messages, sampling: { greedy: true, stopStrings: [], maxNewTokens } };
}

describe('several pictures per conversation on tiny-a (transformers references)', () => {
  let modelDir: string;
  let engine: LocalEngine;
  let text: LoadedTextParts;

  beforeAll(async () => {
    modelDir = await buildTinyA();
    engine = await createLocalEngine({ modelDir, threads: 1, slots: 4, prefixCacheBytes: 0, featureCacheSize: 0 });
    text = await createTextParts(openModelFolder(modelDir));
  });
  afterAll(async () => {
    await engine?.close();
    removeDirs(modelDir);
  });

  async function run(request: GenerateRequest, on: LocalEngine = engine): Promise<{ result: GenerationResult; logits: Float32Array[] }> {
    const logits: Float32Array[] = [];
    const result = await on.generate(request, { onLogits: (_s, l) => logits.push(l) }).result;
    return { result, logits };
  }

  function expectCase(name: (typeof CASES)[number], got: { result: GenerationResult; logits: Float32Array[] }): void {
    const c = inputs.cases[name]!;
    expect(got.result.promptTokens, name).toBe(c.input_ids.length);
    expect(got.result.imageCount).toBe(2);
    expect(got.result.tokens, name).toEqual(c.generate.new_tokens);
    const steps = array(`${name}.generate_logits`);
    expect(got.logits).toHaveLength(12);
    expect(maxAbsDiff(got.logits[0]!, array(`${name}.prefill_last_logits`))).toBeLessThanOrEqual(1e-4);
    got.logits.forEach((step, i) => expect(maxAbsDiff(step, steps.subarray(i * V, (i + 1) * V)), `${name} step ${i}`).toBeLessThanOrEqual(1e-4));
  }

  for (const name of CASES) {
    it(`${name}: prompt ids, pixel values and features per occurrence, every step's logits, the 12 tokens`, async () => {
      const c = inputs.cases[name]!;
      const request = requestOf(name);
      const prompt = text.encodePrompt(request.messages, { imageCount: request.images!.length, maxPromptTokens: 1000, capacity: 2048 });
      expect(prompt.ids).toEqual(c.input_ids);
      expect(prompt.imageRuns.map((run) => [run.start, run.start + P])).toEqual(c.image_token_spans);
      const pixels = array(`${name}.pixel_values`);
      const features = array(`${name}.image_features`);
      const S = 3 * 56 * 56;
      const F = P * 64;
      for (let i = 0; i < 2; i++) {
        const ours = await text.preprocessImage(picture(c.images[i]!));
        expect(maxAbsDiff(ours, pixels.subarray(i * S, (i + 1) * S)), `pixels of occurrence ${i}`).toBe(0);
        expect(maxAbsDiff(await engine.batch.encodeImage(ours), features.subarray(i * F, (i + 1) * F)), `features of occurrence ${i}`).toBeLessThanOrEqual(1e-4);
      }
      expectCase(name, await run(request));
    });
  }

  it('all four cases decoded together in one batch give the same', async () => {
    const results = await Promise.all(CASES.map((name) => run(requestOf(name))));
    results.forEach((got, i) => expectCase(CASES[i]!, got));
  });

  it('the follow-up with prefix reuse prefills only its new turn and never re-encodes the first picture', async () => {
    const reuse = await createLocalEngine({ modelDir, threads: 1, slots: 1, prefixCacheBytes: 16 * 2 ** 20 });
    try {
      const followUp = requestOf('follow_up');
      const firstTurn: GenerateRequest = { images: [followUp.images![0]!], messages: [followUp.messages[0]!], sampling: { greedy: true, stopStrings: [], maxNewTokens: 4 } };
      const first = await run(firstTurn, reuse);
      const vision = vi.spyOn(reuse.batch, 'encodeImage');
      const got = await run(followUp, reuse);
      expectCase('follow_up', got);
      // the first turn's prompt, picture included, came from the cache; only the second picture was encoded
      expect(got.result.cachedPromptTokens).toBeGreaterThanOrEqual(first.result.promptTokens);
      expect(got.result.cachedPromptTokens).toBeLessThan(inputs.cases.follow_up!.image_token_spans[1]![0]);
      expect(vision).toHaveBeenCalledTimes(1);
      vision.mockRestore();
    } finally {
      await reuse.close();
    }
  });

  it('refuses a conversation that cannot fit, saying how many pictures fit; drops the oldest turns first and says so', async () => {
    const small = await createLocalEngine({ modelDir, threads: 1, slots: 1, prefixCacheBytes: 0, maxContextTokens: 96 });
    try {
      const images = [picture('image1'), picture('image2'), picture('image1'), picture('image2'), picture('image1')];
      const ask = (n: number): GenerateRequest => ({
        images: images.slice(0, n),
        messages: [{ role: 'user', content: [...images.slice(0, n).map((_, image) => ({ type: 'image' as const, image })), { type: 'text', text: 'Compare.' }] }],
        sampling: { greedy: true, stopStrings: [], maxNewTokens: 8 },
      });
      const error = await small.generate(ask(5)).result.catch((e: unknown) => e);
      expect(isVistyleError(error, 'PROMPT_TOO_LONG')).toBe(true);
      const details = (error as VistyleError).details as { promptTokens: number; capacity: number; imageTokens: number; maxImages: number };
      expect(details).toMatchObject({ capacity: 96, imageTokens: P });
      expect(details.maxImages).toBeGreaterThan(0);
      expect(details.maxImages).toBeLessThan(5);
      expect((error as Error).message).toContain(`At most ${details.maxImages} picture(s) fit`);
      // that many do fit, one more does not
      expect((await small.generate(ask(details.maxImages)).result).imageCount).toBe(details.maxImages);
      await expect(small.generate(ask(details.maxImages + 1)).result).rejects.toMatchObject({ code: 'PROMPT_TOO_LONG' });

      // a follow-up that would overflow: the oldest turn goes (its picture moves on) and the result says so
      const long = 'Tell me more about it, please, in detail. ';
      const conversation: GenerateRequest = {
        images: [picture('image1')],
        messages: [
          { role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: `First. ${long}` }] },
          { role: 'assistant', content: 'An answer.' },
          { role: 'user', content: 'Second?' },
          { role: 'assistant', content: 'Another answer.' },
          { role: 'user', content: 'Third?' },
        ],
        sampling: { greedy: true, stopStrings: [], maxNewTokens: 8 },
      };
      const trimmed = await small.generate(conversation).result;
      expect(trimmed.droppedMessages).toBe(2);
      expect(trimmed.imageCount).toBe(1);
    } finally {
      await small.close();
    }
  });
});

describe('vistyle ask --image A --image B on tiny-a', () => {
  let modelDir: string;
  beforeAll(async () => {
    await ensureBuiltCli();
    modelDir = await buildTinyA();
  });
  afterAll(() => removeDirs(modelDir));

  it('every picture in order, then the question, one user turn: the reference tokens', async () => {
    const c = inputs.cases.two_images!;
    const run = await runCli([
      'ask', '--model', modelDir, '--image', join(MULTI, 'image1_56x56.png'), '--image', join(MULTI, 'image2_56x56.png'),
      '--raw', '--greedy', '--json', '--max-tokens', '12', '--threads', '1', 'Compare the two pictures.',
    ]);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const summary = JSON.parse(run.stdout.trimEnd().split('\n').at(-1)!) as { tokens: number[]; promptTokens: number };
    expect(summary.promptTokens).toBe(c.input_ids.length);
    expect(summary.tokens).toEqual(c.generate.new_tokens);
  });
});
