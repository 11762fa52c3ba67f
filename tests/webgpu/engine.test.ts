// The engine on WebGPU with the cache on the device, against transformers (tests/fixtures/tiny-a)
// and against the CPU engine: `vistyle ask --provider webgpu --raw --greedy` gives the reference
// greedy tokens, every step's logits are within 1e-4 (fp32), a LoRA adapter gives what it gives
// on the CPU, "no adapter" runs (rank-1 zeros: zero-size inputs crash the WebGPU provider), host
// traffic per decode step is the same at any context length, and an fp16 build stays within its
// measured error bound.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { writePeftAdapter } from '../../models/lora/writer.js';
import { MANIFEST_FILE, ModelManifestSchema } from '../../models/manifest.js';
import { createLocalEngine, type LocalEngine } from '../../src/engine/local-engine.js';
import type { GenerateRequest, GenerationResult } from '../../src/engine/types.js';
import { buildTinyA, fixtureImage, maxAbsDiff, referenceArray, referenceInputs, referenceQuestion, removeDirs, showing, TINY_A_IMAGE } from '../engine/engine-test-helpers.js';
import { randomLoraWeights } from '../lora/helpers.js';
import { runVistyle } from '../support/run-cli.js';
import { webgpuSuite } from './support.js';

const V = 512;
const inputs = referenceInputs();
const L = inputs.input_ids.length;
const root = mkdtempSync(join(tmpdir(), 'vistyle-webgpu-engine-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const greedy16 = (extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
  images: [fixtureImage()],
  messages: [showing(referenceQuestion())],
  sampling: { greedy: true, maxNewTokens: 16, stopStrings: [] },
  ...extra,
});

async function answer(engine: LocalEngine, request: GenerateRequest): Promise<{ result: GenerationResult; logits: Float32Array[] }> {
  const logits: Float32Array[] = [];
  const stream = engine.generate(request, { onLogits: (_, l) => logits.push(l) });
  for await (const _ of stream) void _;
  return { result: await stream.result, logits };
}

const describeGpu = await webgpuSuite();

describeGpu('the WebGPU engine with the KV cache on the device', () => {
  let modelDir: string;
  let gpu: LocalEngine;

  beforeAll(async () => {
    // tiny-a with LoRA inputs and the device decoder
    modelDir = await buildTinyA({ deviceDecoder: true });
    gpu = await createLocalEngine({ modelDir, provider: 'webgpu', maxContextTokens: 256 });
  });
  afterAll(async () => {
    await gpu?.close();
    removeDirs(modelDir);
  });

  it('`vistyle ask --provider webgpu --raw --greedy` gives the reference greedy tokens', async () => {
    const run = await runVistyle(['ask', '--model', modelDir, '--provider', 'webgpu', '--image', TINY_A_IMAGE, '--raw', '--greedy', '--json', '--max-tokens', '16', referenceQuestion()]);
    expect(run.code, run.stderr).toBe(0);
    const summary = JSON.parse(run.stdout.trimEnd().split('\n').at(-1)!) as { tokens: number[]; text: string; promptTokens: number };
    expect(summary.tokens).toEqual(inputs.generate.new_tokens);
    expect(summary.promptTokens).toBe(L);
    expect(run.stdout.startsWith(summary.text)).toBe(true);
  });

  it('the prefill, the cached step 2 and all 16 greedy steps within 1e-4 of transformers', async () => {
    expect(gpu.info.provider).toBe('webgpu');
    const { result, logits } = await answer(gpu, greedy16());
    expect(result.tokens).toEqual(inputs.generate.new_tokens);
    expect(maxAbsDiff(logits[0]!, referenceArray('logits').data.subarray((L - 1) * V, L * V))).toBeLessThanOrEqual(1e-4);
    expect(maxAbsDiff(logits[1]!, referenceArray('step2_logits').data)).toBeLessThanOrEqual(1e-4);
    const steps = referenceArray('generate_logits').data;
    logits.forEach((l, i) => expect(maxAbsDiff(l, steps.subarray(i * V, (i + 1) * V)), `step ${i}`).toBeLessThanOrEqual(1e-4));
  });

  it('a LoRA adapter gives on WebGPU what it gives on the CPU; without it the base answer again', async () => {
    const cpu = await createLocalEngine({ modelDir, provider: 'cpu', threads: 1, maxContextTokens: 256 });
    try {
      const manifest = ModelManifestSchema.parse(JSON.parse(readFileSync(join(modelDir, MANIFEST_FILE), 'utf8')));
      const weights = randomLoraWeights(manifest.lora.targets, 2, 31, 0.4);
      const adapterDir = join(root, 'adapter');
      writePeftAdapter(adapterDir, { modules: weights, rank: 2, alpha: 4 });
      const withLora = greedy16({ lora: { path: adapterDir } });
      const onCpu = await answer(cpu, withLora);
      const onGpu = await answer(gpu, withLora);
      expect(onGpu.result.tokens).toEqual(onCpu.result.tokens);
      expect(onGpu.result.tokens).not.toEqual(inputs.generate.new_tokens); // the adapter changes the answer
      onGpu.logits.forEach((l, i) => expect(maxAbsDiff(l, onCpu.logits[i]!), `step ${i}`).toBeLessThanOrEqual(1e-4));
      const base = await answer(gpu, greedy16());
      expect(base.result.tokens).toEqual(inputs.generate.new_tokens);
    } finally {
      await cpu.close();
    }
  });

  it('host traffic per decode step does not grow with the context length', async () => {
    const cache = gpu.cache;
    expect(cache.constructor.name).toBe('DeviceKvCache');
    const perStep = async (request: GenerateRequest): Promise<{ prompt: number; steps: Array<{ in: number; out: number }> }> => {
      const seen: Array<{ in: number; out: number }> = [];
      const stream = gpu.generate(request, { onToken: () => seen.push({ ...cache.lastTraffic }) });
      for await (const _ of stream) void _;
      return { prompt: (await stream.result).promptTokens, steps: seen.slice(1) }; // the first token comes from the prefill
    };
    // a short conversation without a picture, and one with the picture 5 turns deep
    const short = await perStep({ messages: [{ role: 'user', content: 'hi' }], sampling: { greedy: true, maxNewTokens: 12, stopStrings: [] } });
    const turns = Array.from({ length: 4 }, (_, i) => [
      { role: 'user' as const, content: `question ${i} about the colours and the shapes` },
      { role: 'assistant' as const, content: `answer ${i} about the colours and the shapes` },
    ]).flat();
    const long = await perStep({ images: [fixtureImage()], messages: [...turns, showing(referenceQuestion())], sampling: { greedy: true, maxNewTokens: 12, stopStrings: [] } });
    expect(long.prompt).toBeGreaterThan(4 * short.prompt);
    expect(short.steps.length).toBeGreaterThan(2);
    expect(long.steps.length).toBeGreaterThan(2);
    const all = new Set([...short.steps, ...long.steps].map((t) => `${t.in}/${t.out}`));
    expect([...all]).toEqual([`${64 * 4 + 8 + 4 + 4}/${V * 4}`]); // embedding, position, lengths in; logits out
  });
});

describeGpu('an fp16 build on WebGPU', () => {
  it('stays within 0.25 of transformers\' fp32 logits and gives the same greedy tokens (measured: 0.10)', async () => {
    const dir = await buildTinyA({ deviceDecoder: true, dtype: 'fp16', noLora: true });
    const engine = await createLocalEngine({ modelDir: dir, provider: 'webgpu', maxContextTokens: 256 });
    try {
      const { result, logits } = await answer(engine, greedy16());
      expect(result.tokens).toEqual(inputs.generate.new_tokens);
      const steps = referenceArray('generate_logits').data;
      let worst = 0;
      logits.forEach((l, i) => (worst = Math.max(worst, maxAbsDiff(l, steps.subarray(i * V, (i + 1) * V)))));
      expect(worst).toBeLessThanOrEqual(0.25);
    } finally {
      await engine.close();
      removeDirs(dir);
    }
  });
});

describeGpu('an int4 build on WebGPU (MatMulNBits)', () => {
  it('gives the greedy tokens and logits (1e-4) of the same int4 build on the CPU', async () => {
    // accuracy level 1: the CPU keeps float32 activations too (its default, int8 activations, is
    // an approximation of its own; the WebGPU kernel computes in the activations' type)
    const dir = await buildTinyA({ deviceDecoder: true, dtype: 'int4', accuracyLevel: 1, noLora: true });
    const cpu = await createLocalEngine({ modelDir: dir, provider: 'cpu', threads: 1, maxContextTokens: 256 });
    const gpu = await createLocalEngine({ modelDir: dir, provider: 'webgpu', maxContextTokens: 256 });
    try {
      const onCpu = await answer(cpu, greedy16());
      const onGpu = await answer(gpu, greedy16());
      expect(gpu.cache.constructor.name).toBe('DeviceKvCache');
      expect(onGpu.result.tokens).toEqual(onCpu.result.tokens);
      onGpu.logits.forEach((l, i) => expect(maxAbsDiff(l, onCpu.logits[i]!), `step ${i}`).toBeLessThanOrEqual(1e-4));
    } finally {
      await cpu.close();
      await gpu.close();
      removeDirs(dir);
    }
  });
});
