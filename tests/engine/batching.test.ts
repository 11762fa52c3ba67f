// Continuous batching on a tiny generated model: requests with different prompts, pictures,
// system prompts and LoRA adapters (of different ranks, and none), started together on an engine
// with fewer slots than requests, give exactly the greedy tokens (and within 1e-4 the logits)
// each gives alone. The batch really ran: rows decoded together, a prefill was cut into chunks
// between decode steps, the window moved, a finished row's space was taken by a waiting request.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePeftAdapter } from '../../models/lora/writer.js';
import { ModelManifestSchema } from '../../models/manifest.js';
import { HostKvCache } from '../../src/engine/kv-host.js';
import { createLocalEngine, type LocalEngine } from '../../src/engine/local-engine.js';
import type { ChatMessage, GenerateRequest } from '../../src/engine/types.js';
import { tinyModel } from '../support/tiny-model.js';
import { randomLoraWeights } from '../lora/helpers.js';
import { fixtureImage, maxAbsDiff, removeDirs } from './engine-test-helpers.js';

const GREEDY = { greedy: true, stopStrings: [], repetitionPenalty: 1, noRepeatNgramSize: 0 };

async function solidPng(r: number, g: number, b: number, size = 40): Promise<Uint8Array> {
  return new Uint8Array(await sharp({ create: { width: size, height: size, channels: 3, background: { r, g, b } } }).png().toBuffer());
}

const user = (text: string, ...images: number[]): ChatMessage => ({
  role: 'user',
  content: [...images.map((image) => ({ type: 'image' as const, image })), { type: 'text' as const, text }],
});

describe('continuous batching', () => {
  let modelDir: string;
  const adapters = mkdtempSync(join(tmpdir(), 'vistyle-batch-adapters-'));
  let requests: GenerateRequest[];

  beforeAll(async () => {
    modelDir = (await tinyModel({ seed: 17 })).modelDir;
    const manifest = ModelManifestSchema.parse(JSON.parse(readFileSync(join(modelDir, 'vistyle-model.json'), 'utf8')));
    writePeftAdapter(join(adapters, 'r4'), { modules: randomLoraWeights(manifest.lora.targets, 4, 31, 0.4), rank: 4, alpha: 8 });
    writePeftAdapter(join(adapters, 'r2'), { modules: randomLoraWeights(manifest.lora.targets, 2, 37, 0.4), rank: 2, alpha: 2 });
    const red = await solidPng(220, 30, 30);
    const blue = await solidPng(20, 40, 230, 70);
    const long = 'Tell me about the light, the colours, the shapes and what it might be. '.repeat(3);
    requests = [
      { images: [fixtureImage()], messages: [user('Describe the picture.', 0)], sampling: { ...GREEDY, maxNewTokens: 30 } },
      {
        images: [red],
        messages: [{ role: 'system', content: 'You are a grumpy baker.' }, user('And this?', 0)],
        lora: { path: join(adapters, 'r4') },
        sampling: { ...GREEDY, maxNewTokens: 30 },
      },
      { images: [blue, red], messages: [user(`Compare them. ${long}`, 0, 1)], lora: { path: join(adapters, 'r2') }, sampling: { ...GREEDY, maxNewTokens: 30 } },
      { messages: [user('Hello there, no picture today.')], lora: { path: join(adapters, 'r4') }, sampling: { ...GREEDY, maxNewTokens: 30 } },
      {
        images: [fixtureImage(), blue],
        messages: [user('First this.', 0), { role: 'assistant', content: 'A thing.' }, user('Now that one?', 1)],
        sampling: { ...GREEDY, maxNewTokens: 30 },
      },
    ];
  }, 120_000);
  afterAll(() => removeDirs(adapters));

  async function runOne(engine: LocalEngine, request: GenerateRequest): Promise<{ tokens: number[]; logits: Float32Array[] }> {
    const logits: Float32Array[] = [];
    const result = await engine.generate(request, { onLogits: (_step, l) => logits.push(l) }).result;
    expect(['length', 'eos']).toContain(result.finishReason);
    return { tokens: result.tokens, logits };
  }

  it('N concurrent requests with different prompts, pictures, styles and adapters give exactly their solo tokens', async () => {
    const solo = await createLocalEngine({ modelDir, threads: 1, slots: 1, prefixCacheBytes: 0 });
    const expected: Array<{ tokens: number[]; logits: Float32Array[] }> = [];
    try {
      for (const request of requests) expected.push(await runOne(solo, request));
    } finally {
      await solo.close();
    }
    expect(expected.every((e) => e.tokens.length === 30)).toBe(true); // long enough to overlap
    // the adapters really change the answers, or this test would prove little
    expect(expected[1]!.tokens).not.toEqual(expected[0]!.tokens);

    // 4 slots for 5 requests, small prefill chunks and window blocks so every path runs
    const engine = await createLocalEngine({ modelDir, threads: 1, slots: 4, prefixCacheBytes: 0, prefillChunk: 24, cacheBlock: 8 });
    try {
      const results = await Promise.all(requests.map((request) => runOne(engine, request)));
      results.forEach((got, i) => {
        expect(got.tokens, `request ${i}`).toEqual(expected[i]!.tokens);
        got.logits.forEach((step, k) => expect(maxAbsDiff(step, expected[i]!.logits[k]!), `request ${i} step ${k}`).toBeLessThanOrEqual(1e-4));
      });
      const stats = engine.batch.stats;
      // never more rows than slots (the fifth request waited); how many decoded at once depends on
      // when each picture finished preprocessing on sharp's thread pool and on the machine's load,
      // so only that rows really shared decode steps is asserted, not that all four met
      expect(stats.maxBatch).toBeLessThanOrEqual(4);
      expect(stats.maxBatch).toBeGreaterThanOrEqual(2);
      expect(stats.decodeRows).toBeGreaterThan(stats.decodeSteps);
      expect(stats.prefillChunks).toBeGreaterThan(requests.length); // prompts were cut into chunks
      expect((engine.cache as HostKvCache).restrides).toBeGreaterThan(0);
      expect(engine.openSequences).toBe(0);
    } finally {
      await engine.close();
    }
  });

  it('a request that joins while others decode changes none of their tokens, and a cancelled row leaves at once', async () => {
    const engine = await createLocalEngine({ modelDir, threads: 1, slots: 3, prefixCacheBytes: 0, prefillChunk: 16, cacheBlock: 8 });
    try {
      const alone = await runOne(engine, { ...requests[0]!, sampling: { ...GREEDY, maxNewTokens: 40 } });
      const controller = new AbortController();
      let cancelledAt = -1;
      let late: ReturnType<LocalEngine['generate']> | undefined;
      const first = engine.generate({ ...requests[0]!, sampling: { ...GREEDY, maxNewTokens: 40 } }, {
        // a request with a long prompt arrives while this one decodes: its prefill is chunked in
        onToken: (_id, n) => {
          if (n === 5) late = engine.generate(requests[2]!);
        },
      });
      const doomed = engine.generate(requests[4]!, {
        signal: controller.signal,
        onToken: (_id, n) => {
          if (n === 3) {
            cancelledAt = engine.openSequences;
            controller.abort();
          }
        },
      });
      const [a, b] = await Promise.all([first.result, doomed.result]);
      const c = await late!.result;
      expect(a.tokens).toEqual(alone.tokens);
      expect(b.finishReason).toBe('cancelled');
      expect(b.tokens).toHaveLength(3);
      expect(cancelledAt).toBeGreaterThanOrEqual(2);
      expect(c.tokens.length).toBeGreaterThan(0);
      expect(engine.openSequences).toBe(0);
    } finally {
      await engine.close();
    }
  });
});
