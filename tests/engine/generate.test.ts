// The engine in-process on real graphs built from tiny checkpoints: streaming (multi-byte
// characters whole), stop criteria, the KV cache (capacity, cancellation, consistency with a full
// recompute), the image-feature cache, and LoRA adapters fed per request.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { layoutModuleName } from '../../models/lora/names.js';
import { writePeftAdapter, type LoraModuleWeights } from '../../models/lora/writer.js';
import { BatchEngine } from '../../src/engine/batch-engine.js';
import type { TextParts, TokenSampler } from '../../src/engine/generation-parts.js';
import { HostKvCache } from '../../src/engine/kv-host.js';
import { LoraFeeds } from '../../src/engine/lora-batch.js';
import { createLocalEngine, type LocalEngine } from '../../src/engine/local-engine.js';
import { LruCache } from '../../src/engine/lru.js';
import { openModelFolder, type ModelFolder } from '../../src/engine/model-folder.js';
import { PrefixCache } from '../../src/engine/prefix-cache.js';
import { loadModelSessions, type ModelSessions } from '../../src/engine/session.js';
import { createTextParts, resolveSampling, type LoadedTextParts } from '../../src/engine/text-parts.js';
import type { ChatMessage, GenerationResult, SamplingOptions } from '../../src/engine/types.js';
import { isVistyleError } from '../../src/errors.js';
import { buildTinyA, byteTokens, fixtureImage, generatedModel, maxAbsDiff, referenceQuestion, removeDirs, showing } from './engine-test-helpers.js';

const CPU = { provider: 'cpu' as const, deviceId: 0, threads: 1 };
const GREEDY: Partial<SamplingOptions> = { greedy: true, stopStrings: [], maxNewTokens: 16 };

/** The real text parts, except that the sampler plays back a fixed sequence (cycling when `cycle`). */
function forcedTokens(text: TextParts, sequence: readonly number[], cycle = false): TextParts {
  return {
    ...text,
    preprocessImage: (bytes) => text.preprocessImage(bytes),
    encodePrompt: (messages, options) => text.encodePrompt(messages, options),
    createDetokenizer: () => text.createDetokenizer(),
    createSampler(): TokenSampler {
      let i = 0;
      return {
        next: () => {
          const id = cycle ? sequence[i % sequence.length]! : sequence[Math.min(i, sequence.length - 1)]!;
          i++;
          return id;
        },
      };
    },
  };
}

function isWellFormed(text: string): boolean {
  try {
    encodeURIComponent(text); // throws URIError on a lone surrogate
    return !text.includes('\ufffd');
  } catch {
    return false;
  }
}

describe('generator on the tiny-a fixture (toy byte tokenizer: token id = UTF-8 byte)', () => {
  let modelDir: string;
  let folder: ModelFolder;
  let sessions: ModelSessions;
  let text: LoadedTextParts;
  const question = referenceQuestion();
  const messages: ChatMessage[] = [showing(question)];

  beforeAll(async () => {
    modelDir = await buildTinyA();
    folder = openModelFolder(modelDir);
    sessions = await loadModelSessions(folder, CPU);
    text = await createTextParts(folder);
  });
  afterAll(async () => {
    await sessions?.release();
    removeDirs(modelDir);
  });

  /** The batch engine on the real graphs and cache, with these text parts (default: the real ones). */
  function generator(options: { capacity?: number; parts?: TextParts; featureCache?: LruCache<string, Float32Array> } = {}) {
    const m = folder.manifest;
    const cache = new HostKvCache({
      spec: { numLayers: m.text.numLayers, rows: 1, numKvHeads: m.text.numKvHeads, headDim: m.text.headDim, capacity: options.capacity ?? 256, dtype: m.kvCache.dtype },
      block: 16,
    });
    const lora = new LoraFeeds(m, sessions.decoder.inputTypes, sessions.vision.inputTypes);
    const prefix = new PrefixCache(0, () => undefined);
    const engine = new BatchEngine({ sessions, manifest: m, text: options.parts ?? text, cache, lora, prefix, featureCache: options.featureCache, prefillChunk: 512 });
    return { cache, generator: engine };
  }

  async function run(gen: BatchEngine, sampling: Partial<SamplingOptions>, extra: { signal?: AbortSignal; onToken?: (id: number, n: number) => void; image?: Uint8Array } = {}) {
    const deltas: string[] = [];
    const result = await gen.run(
      async () => ({ images: [extra.image ?? fixtureImage()], messages, sampling: resolveSampling(sampling), lora: null }),
      { onDelta: (d) => deltas.push(d), signal: extra.signal, onToken: extra.onToken },
    );
    return { result, deltas };
  }

  it('streams Chinese, Cantonese and emoji whole although each arrives as several byte tokens', async () => {
    const answer = '你好，世界！佢哋喺度🙂🎉 ok';
    const { generator: gen } = generator({ parts: forcedTokens(text, [...byteTokens(answer), 502]) });
    const { result, deltas } = await run(gen, { maxNewTokens: 200 });
    expect(result.finishReason).toBe('eos');
    expect(result.tokens).toEqual(byteTokens(answer));
    expect(result.text).toBe(answer);
    expect(deltas.join('')).toBe(answer);
    for (const delta of deltas) expect(isWellFormed(delta)).toBe(true);
    // Several byte tokens made each character: fewer deltas than tokens.
    expect(deltas.length).toBeLessThan(result.tokens.length);
    expect(deltas).toContain('🙂');
  });

  it('ends at a stop string without streaming any part of it', async () => {
    const { generator: gen } = generator({ parts: forcedTokens(text, byteTokens('The answer.\nUser: more text'), true) });
    const { result, deltas } = await run(gen, { maxNewTokens: 100, stopStrings: ['\nUser:'] });
    expect(result.finishReason).toBe('stop');
    expect(result.text).toBe('The answer.');
    expect(deltas.join('')).toBe('The answer.');
    expect(deltas.some((d) => d.includes('\n'))).toBe(false);
  });

  it("ends at the tokenizer's end-of-text token (pad <|endoftext|> 500) as at eos, greedy or sampled", async () => {
    expect(text.endTokenIds).toEqual([502, 500]);
    const { generator: gen } = generator({ parts: forcedTokens(text, [...byteTokens('Bread.'), 500, ...byteTokens(' More'), 502]) });
    for (const sampling of [GREEDY, { maxNewTokens: 50 }]) {
      const { result, deltas } = await run(gen, sampling);
      expect(result.finishReason).toBe('eos');
      expect(result.tokens).toEqual(byteTokens('Bread.'));
      expect(deltas.join('')).toBe('Bread.');
    }
  });

  it('ends at maxNewTokens with finishReason "length" and reports its timings', async () => {
    const { generator: gen } = generator();
    const { result } = await run(gen, { ...GREEDY, maxNewTokens: 5 });
    expect(result.finishReason).toBe('length');
    expect(result.tokens).toHaveLength(5);
    expect(result.promptTokens).toBe(58);
    expect(result.ttftMs).toBeGreaterThan(0);
    expect(result.tokensPerSecond).toBeGreaterThan(0);
    expect(result.timings.visionMs).toBeGreaterThan(0);
    expect(result.timings.totalMs).toBeGreaterThanOrEqual(result.ttftMs);
  });

  it('stops a sampled answer stuck in a loop, but leaves greedy runs to the model', async () => {
    const { generator: gen } = generator({ parts: forcedTokens(text, byteTokens('ab '), true) });
    const sampled = await run(gen, { maxNewTokens: 150 });
    expect(sampled.result.finishReason).toBe('stop');
    expect(sampled.result.tokens.length).toBeLessThan(100);
    expect(sampled.result.tokens.length).toBeGreaterThanOrEqual(48);
    const greedy = await run(gen, { ...GREEDY, maxNewTokens: 150 });
    expect(greedy.result.finishReason).toBe('length');
    expect(greedy.result.tokens).toHaveLength(150);
  });

  it('uses the whole KV cache and then ends with "length"', async () => {
    const capacity = 80;
    const { generator: gen, cache } = generator({ capacity });
    const { result } = await run(gen, { ...GREEDY, maxNewTokens: 1000 });
    expect(result.finishReason).toBe('length');
    // The prompt fills 58 positions; the last token is sampled from the last position's logits.
    expect(result.tokens).toHaveLength(capacity - 58 + 1);
    expect(cache.freeRows).toBe(1);
  });

  it('refuses a conversation longer than the cache with PROMPT_TOO_LONG', async () => {
    const { generator: gen } = generator({ capacity: 40 });
    const error = await run(gen, GREEDY).catch((e: unknown) => e);
    expect(isVistyleError(error, 'PROMPT_TOO_LONG')).toBe(true);
  });

  it('answers a follow-up about the same picture from the image-feature cache', async () => {
    const featureCache = new LruCache<string, Float32Array>(4);
    const { generator: gen } = generator({ featureCache });
    const first = await run(gen, GREEDY);
    expect(first.result.timings.visionMs).toBeGreaterThan(0);
    const again = await run(gen, GREEDY);
    expect(again.result.timings.visionMs).toBe(0);
    expect(again.result.timings.imageMs).toBe(0);
    expect(again.result.tokens).toEqual(first.result.tokens);
    // Another picture goes through the vision graph again.
    const other = new Uint8Array(await sharp({ create: { width: 56, height: 56, channels: 3, background: { r: 10, g: 200, b: 30 } } }).png().toBuffer());
    const third = await run(gen, GREEDY, { image: other });
    expect(third.result.timings.visionMs).toBeGreaterThan(0);
    expect(featureCache.size).toBe(2);
  });

  it('stops at the next step when cancelled, frees the cache, and the next request is unaffected', async () => {
    const { generator: gen, cache } = generator();
    const reference = await run(gen, GREEDY);
    const controller = new AbortController();
    let openWhenCancelled = -1;
    const cancelled = await run(gen, GREEDY, {
      signal: controller.signal,
      onToken: (_id, n) => {
        if (n === 3) {
          openWhenCancelled = cache.freeRows;
          controller.abort();
        }
      },
    });
    expect(openWhenCancelled).toBe(0);
    expect(cancelled.result.finishReason).toBe('cancelled');
    expect(cancelled.result.tokens).toEqual(reference.result.tokens.slice(0, 3));
    expect(cache.freeRows).toBe(1);
    const after = await run(gen, GREEDY);
    expect(after.result.tokens).toEqual(reference.result.tokens);
  });

  it('does nothing for a request cancelled before it starts', async () => {
    const { generator: gen } = generator();
    const controller = new AbortController();
    controller.abort();
    const { result } = await run(gen, GREEDY, { signal: controller.signal });
    expect(result.finishReason).toBe('cancelled');
    expect(result.tokens).toEqual([]);
  });
});

describe('local engine: slots, waiting line and cancellation', () => {
  let modelDir: string;
  let engine: LocalEngine;
  beforeAll(async () => {
    modelDir = await buildTinyA();
    engine = await createLocalEngine({ modelDir, threads: 1, slots: 2, prefixCacheBytes: 0 });
  });
  afterAll(async () => {
    await engine?.close();
    removeDirs(modelDir);
  });

  const request = () => ({ images: [fixtureImage()], messages: [showing(referenceQuestion())], sampling: GREEDY });

  it('runs up to info.slots requests together, the rest wait, every answer as alone', async () => {
    expect(engine.info.slots).toBe(2);
    const alone = await engine.generate(request()).result;
    const streams = [engine.generate(request()), engine.generate(request()), engine.generate(request())];
    expect(engine.queueLength).toBe(3);
    const results: GenerationResult[] = await Promise.all(streams.map((s) => s.result));
    for (const result of results) expect(result.tokens).toEqual(alone.tokens);
    expect(engine.batch.stats.maxBatch).toBe(2);
    expect(engine.queueLength).toBe(0);
    expect(engine.openSequences).toBe(0);
  });

  it('ends a waiting request at once when it is cancelled', async () => {
    const running = [engine.generate(request()), engine.generate(request())];
    const controller = new AbortController();
    const waiting = engine.generate(request(), { signal: controller.signal });
    controller.abort();
    const result = await waiting.result;
    expect(result.finishReason).toBe('cancelled');
    expect(result.tokens).toEqual([]);
    for (const stream of running) expect((await stream.result).finishReason).toBe('length');
  });

  it('reports bad requests as typed errors and keeps serving', async () => {
    const empty = engine.generate({ ...request(), messages: [showing('   ')] });
    await expect(empty.result).rejects.toMatchObject({ code: 'QUESTION_EMPTY' });
    const noImage = engine.generate({ messages: [showing('hi')], sampling: GREEDY });
    await expect(noImage.result).rejects.toMatchObject({ code: 'IMAGE_MISSING' });
    const badSampling = engine.generate({ ...request(), sampling: { topP: 2 } });
    await expect(badSampling.result).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    expect((await engine.generate(request()).result).tokens).toHaveLength(16);
    expect(engine.openSequences).toBe(0);
  });
});

describe('KV cache consistency: incremental decoding equals a full recompute', () => {
  // GQA with 4 query heads per KV head, untied lm_head, an image size that 14 does not divide,
  // and the second-to-last vision layer: none of it may change the equality.
  const checkpoint = {
    seed: 99,
    text: { numHeads: 8, numKvHeads: 2, hiddenSize: 64 },
    vision: { imageSize: 62 },
    tieWordEmbeddings: false,
    featureLayer: -2,
  };

  for (const dtype of ['fp32', 'fp16'] as const) {
    it(`${dtype}: logits of every step match the decoder run over the whole sequence`, async () => {
      const { checkpointDir, modelDir } = await generatedModel(checkpoint, { dtype });
      const engine = await createLocalEngine({ modelDir, threads: 1, prefixCacheBytes: 0, cacheBlock: 8 });
      try {
        const steps: Float32Array[] = [];
        const image = fixtureImage();
        const msgs: ChatMessage[] = [showing('Describe the picture.')];
        const result = await engine.generate({ images: [image], messages: msgs, sampling: { ...GREEDY, maxNewTokens: 10 } }, { onLogits: (_s, l) => steps.push(l) }).result;
        expect(result.tokens).toHaveLength(10);

        // Full recompute: embed the whole sequence, splice the features, one decoder run over a
        // fresh cache (nothing cached: the past window is all masked).
        const folder = openModelFolder(modelDir);
        const m = folder.manifest;
        const sessions = await loadModelSessions(folder, CPU);
        const text = await createTextParts(folder);
        const prompt = text.encodePrompt(msgs, { imageCount: 1, maxPromptTokens: 200, capacity: 256 });
        const features = await engine.batch.encodeImage(await text.preprocessImage(image));
        const lora = new LoraFeeds(m, sessions.decoder.inputTypes, sessions.vision.inputTypes).decoder([null]);
        let worst = 0;
        for (let k = 0; k < steps.length; k++) {
          const ids = [...prompt.ids, ...result.tokens.slice(0, k)];
          const embeds = new Float32Array((await sessions.embed.session.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [1, ids.length]) }))
            .inputs_embeds!.data as Float32Array);
          embeds.set(features, prompt.imageRuns[0]!.start * m.text.hiddenSize);
          const cache = new HostKvCache({ spec: { numLayers: m.text.numLayers, rows: 1, numKvHeads: m.text.numKvHeads, headDim: m.text.headDim, capacity: 256, dtype: m.kvCache.dtype } });
          const binding = await cache.bindPrefill(await cache.open(), ids.length);
          const out = await sessions.decoder.session.run({
            ...binding.feeds,
            inputs_embeds: new ort.Tensor('float32', embeds, [1, ids.length, m.text.hiddenSize]),
            ...lora,
          });
          worst = Math.max(worst, maxAbsDiff(steps[k]!, out.logits!.data as Float32Array));
        }
        // fp16 keeps the cache and the matmuls in half precision: same graph, other op shapes.
        expect(worst).toBeLessThanOrEqual(dtype === 'fp32' ? 1e-4 : 2e-2);
        await sessions.release();
      } finally {
        await engine.close();
        removeDirs(checkpointDir, modelDir);
      }
    });
  }
});

describe('LoRA adapters per request', () => {
  const rank = 4;
  const alpha = 8;
  let base: { checkpointDir: string; modelDir: string };
  let merged: { checkpointDir: string; modelDir: string };
  let adapterDir: string;
  let zeroAdapterDir: string;
  let modules: LoraModuleWeights[];

  function randomMatrix(rows: number, cols: number, seed: number, scale: number): Float32Array {
    let s = seed >>> 0;
    return Float32Array.from({ length: rows * cols }, () => {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      return ((s / 2 ** 32) * 2 - 1) * scale;
    });
  }

  beforeAll(async () => {
    const dims = { seed: 5, text: { hiddenSize: 64, numHeads: 4, numKvHeads: 2 } };
    base = await generatedModel(dims);
    const folder = openModelFolder(base.modelDir);
    const targets = folder.manifest.lora.targets.filter(
      (t) => t.module === 'language_model.layers.0.self_attn.q_proj' || t.module === 'vision_tower.encoder.layers.1.self_attn.v_proj',
    );
    expect(targets).toHaveLength(2);
    modules = targets.map((t, i) => ({
      module: t.module,
      inFeatures: t.inFeatures,
      outFeatures: t.outFeatures,
      rank,
      A: randomMatrix(rank, t.inFeatures, 11 + i, 0.5),
      B: randomMatrix(t.outFeatures, rank, 23 + i, 0.5),
    }));
    adapterDir = mkdtempSync(join(tmpdir(), 'vistyle-adapter-'));
    // Full module names: PEFT matches target_modules by suffix, and short names would claim every layer.
    const targetModules = modules.map((m) => layoutModuleName(m.module, 'legacy'));
    writePeftAdapter(adapterDir, { modules, rank, alpha, targetModules });
    zeroAdapterDir = mkdtempSync(join(tmpdir(), 'vistyle-adapter-'));
    writePeftAdapter(zeroAdapterDir, { modules: modules.map((m) => ({ ...m, B: new Float32Array(m.B.length) })), rank, alpha, targetModules });
    // The same checkpoint with W + (alpha/r) * B @ A merged into the weights.
    merged = await generatedModel({
      ...dims,
      transform: (name, values) => {
        const module = modules.find((m) => `${m.module}.weight` === name);
        if (!module) return values;
        const out = Float32Array.from(values);
        const scale = alpha / rank;
        for (let o = 0; o < module.outFeatures; o++) {
          for (let i = 0; i < module.inFeatures; i++) {
            let sum = 0;
            for (let r = 0; r < rank; r++) sum += module.B[o * rank + r]! * module.A[r * module.inFeatures + i]!;
            out[o * module.inFeatures + i]! += scale * sum;
          }
        }
        return out;
      },
    });
  });
  afterAll(() => removeDirs(base?.checkpointDir, base?.modelDir, merged?.checkpointDir, merged?.modelDir, adapterDir, zeroAdapterDir));

  async function firstLogits(engine: LocalEngine, adapter: { path: string } | null): Promise<{ logits: Float32Array; result: GenerationResult }> {
    let logits: Float32Array | undefined;
    const stream = engine.generate(
      { images: [fixtureImage()], messages: [showing('What is it?')], lora: adapter, sampling: { ...GREEDY, maxNewTokens: 4 } },
      { onLogits: (step, l) => (step === 0 ? (logits = l) : undefined) },
    );
    const result = await stream.result;
    return { logits: logits!, result };
  }

  it('an adapter fed as graph inputs answers like its weights merged into the checkpoint; a zero adapter like the base model', async () => {
    const engine = await createLocalEngine({ modelDir: base.modelDir, threads: 1, prefixCacheBytes: 0 });
    const mergedEngine = await createLocalEngine({ modelDir: merged.modelDir, threads: 1, prefixCacheBytes: 0 });
    try {
      const plain = await firstLogits(engine, null);
      const adapted = await firstLogits(engine, { path: adapterDir });
      const reference = await firstLogits(mergedEngine, null);
      expect(maxAbsDiff(adapted.logits, reference.logits)).toBeLessThan(1e-3);
      expect(maxAbsDiff(adapted.logits, plain.logits)).toBeGreaterThan(1e-2);
      // The vision LoRA changes the features: the feature cache must not serve the base model's.
      expect(adapted.result.timings.visionMs).toBeGreaterThan(0);
      const zero = await firstLogits(engine, { path: zeroAdapterDir });
      expect(maxAbsDiff(zero.logits, plain.logits)).toBeLessThan(1e-5);
      // Back to the base model: the cached base features, the base answer.
      const again = await firstLogits(engine, null);
      expect(again.result.timings.visionMs).toBe(0);
      expect(maxAbsDiff(again.logits, plain.logits)).toBe(0);
    } finally {
      await engine.close();
      await mergedEngine.close();
    }
  });

  it('a missing adapter folder is ADAPTER_INVALID and the engine keeps serving', async () => {
    const engine = await createLocalEngine({ modelDir: base.modelDir, threads: 1 });
    try {
      const stream = engine.generate({ images: [fixtureImage()], messages: [showing('x')], lora: { path: join(adapterDir, 'nope') } });
      await expect(stream.result).rejects.toMatchObject({ code: 'ADAPTER_INVALID' });
      expect((await firstLogits(engine, null)).result.tokens).toHaveLength(4);
    } finally {
      await engine.close();
    }
  });
});
