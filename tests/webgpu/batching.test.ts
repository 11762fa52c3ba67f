// Continuous batching and prefix reuse on WebGPU with the cache on the device: requests with
// different prompts, pictures, system prompts and LoRA adapters (ranks 2, 4 and none), more than
// the slots, started together, give the greedy tokens the CPU engine gives each of them alone (and
// within 1e-4 its logits); a follow-up about the same picture reuses the cached prefix from a
// device snapshot and gives the logits of a full prefill.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { writePeftAdapter } from '../../models/lora/writer.js';
import { MANIFEST_FILE, ModelManifestSchema } from '../../models/manifest.js';
import { createLocalEngine, type LocalEngine } from '../../src/engine/local-engine.js';
import type { ChatMessage, GenerateRequest } from '../../src/engine/types.js';
import { fixtureImage, maxAbsDiff, removeDirs } from '../engine/engine-test-helpers.js';
import { randomLoraWeights } from '../lora/helpers.js';
import { tinyModel } from '../support/tiny-model.js';
import { webgpuSuite } from './support.js';

const GREEDY = { greedy: true, stopStrings: [], repetitionPenalty: 1, noRepeatNgramSize: 0, maxNewTokens: 14 };

const user = (text: string, ...images: number[]): ChatMessage => ({
  role: 'user',
  content: [...images.map((image) => ({ type: 'image' as const, image })), { type: 'text' as const, text }],
});

async function solidPng(r: number, g: number, b: number, size = 40): Promise<Uint8Array> {
  return new Uint8Array(await sharp({ create: { width: size, height: size, channels: 3, background: { r, g, b } } }).png().toBuffer());
}

async function runOne(engine: LocalEngine, request: GenerateRequest): Promise<{ tokens: number[]; logits: Float32Array[]; cached: number }> {
  const logits: Float32Array[] = [];
  const result = await engine.generate(request, { onLogits: (_step, l) => logits.push(l) }).result;
  return { tokens: result.tokens, logits, cached: result.cachedPromptTokens };
}

const describeGpu = await webgpuSuite();

describeGpu('batching and prefix reuse on WebGPU', () => {
  let modelDir: string;
  const adapters = mkdtempSync(join(tmpdir(), 'vistyle-webgpu-adapters-'));
  let requests: GenerateRequest[];

  beforeAll(async () => {
    modelDir = (await tinyModel({ seed: 17, build: { deviceDecoder: true } })).modelDir;
    const manifest = ModelManifestSchema.parse(JSON.parse(readFileSync(join(modelDir, MANIFEST_FILE), 'utf8')));
    writePeftAdapter(join(adapters, 'r4'), { modules: randomLoraWeights(manifest.lora.targets, 4, 31, 0.4), rank: 4, alpha: 8 });
    writePeftAdapter(join(adapters, 'r2'), { modules: randomLoraWeights(manifest.lora.targets, 2, 37, 0.4), rank: 2, alpha: 2 });
    const red = await solidPng(220, 30, 30);
    requests = [
      { images: [fixtureImage()], messages: [user('Describe the picture.', 0)], sampling: GREEDY },
      { images: [red], messages: [{ role: 'system', content: 'You are a grumpy baker.' }, user('And this?', 0)], lora: { path: join(adapters, 'r4') }, sampling: GREEDY },
      { messages: [user('Hello there, no picture today, but a longer question about light and colour.')], lora: { path: join(adapters, 'r2') }, sampling: GREEDY },
    ];
  }, 120_000);
  afterAll(() => removeDirs(adapters));

  it('more requests than slots, decoded together, give the CPU engine\'s solo tokens and logits', async () => {
    const cpu = await createLocalEngine({ modelDir, threads: 1, slots: 1, prefixCacheBytes: 0 });
    const expected: Array<{ tokens: number[]; logits: Float32Array[] }> = [];
    try {
      for (const request of requests) expected.push(await runOne(cpu, request));
    } finally {
      await cpu.close();
    }
    expect(expected[1]!.tokens).not.toEqual(expected[0]!.tokens);
    const gpu = await createLocalEngine({ modelDir, provider: 'webgpu', slots: 2, prefixCacheBytes: 0, prefillChunk: 12, maxContextTokens: 256 });
    try {
      const results = await Promise.all(requests.map((request) => runOne(gpu, request)));
      results.forEach((got, i) => {
        expect(got.tokens, `request ${i}`).toEqual(expected[i]!.tokens);
        got.logits.forEach((step, k) => expect(maxAbsDiff(step, expected[i]!.logits[k]!), `request ${i} step ${k}`).toBeLessThanOrEqual(1e-4));
      });
      const stats = gpu.batch.stats;
      expect(stats.maxBatch).toBe(2);
      expect(stats.decodeRows).toBeGreaterThan(stats.decodeSteps); // rows really decoded together
      expect(stats.prefillChunks).toBeGreaterThan(requests.length); // prompts were cut into chunks
      expect(gpu.openSequences).toBe(0);
    } finally {
      await gpu.close();
    }
  });

  it('a follow-up about the same picture reuses the device snapshot and gives a full prefill\'s logits', async () => {
    const gpu = await createLocalEngine({ modelDir, provider: 'webgpu', slots: 1, prefixCacheBytes: 8 * 2 ** 20, maxContextTokens: 256 });
    const cpu = await createLocalEngine({ modelDir, threads: 1, slots: 1, prefixCacheBytes: 0 });
    try {
      const first = await runOne(gpu, requests[0]!);
      const followUp: GenerateRequest = {
        images: [fixtureImage()],
        messages: [user('Describe the picture.', 0), { role: 'assistant', content: 'A picture.' }, user('What colour is it?')],
        sampling: GREEDY,
      };
      const reused = await runOne(gpu, followUp);
      expect(first.cached).toBe(0);
      expect(reused.cached).toBeGreaterThan(16); // at least the picture's rows came from the snapshot
      const full = await runOne(cpu, followUp);
      expect(reused.tokens).toEqual(full.tokens);
      reused.logits.forEach((step, k) => expect(maxAbsDiff(step, full.logits[k]!), `step ${k}`).toBeLessThanOrEqual(1e-4));
      expect(gpu.prefix.stats().hits).toBeGreaterThan(0);
      expect(gpu.prefix.stats().bytes).toBeGreaterThan(0);
    } finally {
      await gpu.close();
      await cpu.close();
    }
  });
});
