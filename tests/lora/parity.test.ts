// Runtime LoRA against merged weights: a tiny checkpoint built with LoRA inputs and fed a PEFT
// adapter through the loader must give the logits of the same checkpoint with W + scale·B·A
// merged into its weights (built as a second model, without LoRA inputs), within 1e-4; fed no
// adapter it must give exactly the logits of the unmerged checkpoint built without LoRA inputs.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { halfToFloat32 } from '../../models/checkpoint/dtype.js';
import { allLoraTensors, loadPeftAdapter, zeroLoraTensors, type LoraTensor } from '../../models/lora/loader.js';
import { loadPeftLoraFeeds, toOrtTensor } from '../../src/engine/lora-feeds.js';
import { writePeftAdapter, type LoraModuleWeights } from '../../models/lora/writer.js';
import { ModelManifestSchema, MANIFEST_FILE, type ModelManifest } from '../../models/manifest.js';
import { tinyModel } from '../support/tiny-model.js';
import { randomLoraWeights, randomValues } from './helpers.js';

const SESSION: ort.InferenceSession.SessionOptions = { intraOpNumThreads: 1, interOpNumThreads: 1, logSeverityLevel: 3 };

/** The three sessions of a built model and a one-shot forward pass over a prompt with an image. */
class Model {
  private constructor(
    readonly manifest: ModelManifest,
    readonly vision: ort.InferenceSession,
    readonly embed: ort.InferenceSession,
    readonly decoder: ort.InferenceSession,
  ) {}

  static async open(dir: string): Promise<Model> {
    const manifest = ModelManifestSchema.parse(JSON.parse(readFileSync(join(dir, MANIFEST_FILE), 'utf8')));
    const open = (file: string): Promise<ort.InferenceSession> => ort.InferenceSession.create(join(dir, file), SESSION);
    return new Model(manifest, await open(manifest.graphs.vision), await open(manifest.graphs.embed), await open(manifest.graphs.decoder));
  }

  async close(): Promise<void> {
    await Promise.all([this.vision.release(), this.embed.release(), this.decoder.release()]);
  }

  /**
   * Logits at every position ([T, V], float32) for `ids` with the image in place of the image
   * tokens. LoRA feeds as the loader gives them ([r,in] / [out,r]; the decoder's get a batch axis
   * of 1); targets without one get "no adapter".
   */
  async logits(ids: number[], pixels: Float32Array, lora: Map<string, ort.Tensor> = new Map()): Promise<Float32Array> {
    const m = this.manifest;
    const given = new Map(lora);
    for (const tensor of zeroLoraTensors(m.lora.targets, m.lora.dtype ?? 'float32')) if (!given.has(tensor.name)) given.set(tensor.name, toOrtTensor(tensor));
    const decoderInputs = new Set(m.lora.targets.filter((t) => t.graph === 'decoder').flatMap((t) => [t.inputA, t.inputB]));
    const feedsFor = (session: ort.InferenceSession): Record<string, ort.Tensor> =>
      Object.fromEntries(
        [...given]
          .filter(([name]) => session.inputNames.includes(name))
          .map(([name, t]) => [name, decoderInputs.has(name) ? new ort.Tensor(t.type, t.data, [1, ...t.dims]) : t]),
      );
    const S = m.vision.imageSize;
    const vision = await this.vision.run({ pixel_values: new ort.Tensor('float32', pixels, [1, 3, S, S]), ...feedsFor(this.vision) });
    const features = vision.image_features!.data as Float32Array;
    const embedded = await this.embed.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]) });
    const D = m.text.hiddenSize;
    const embeds = new Float32Array(embedded.inputs_embeds!.data as Float32Array);
    let row = 0;
    ids.forEach((id, i) => {
      if (id === m.tokens.imageTokenId) embeds.set(features.subarray(row * D, ++row * D), i * D);
    });
    // an empty cache: a one-position window, masked
    const cacheType = m.kvCache.dtype;
    const { numKvHeads: kvH, headDim: hd } = m.text;
    const past: Record<string, ort.Tensor> = { past_mask: new ort.Tensor('int64', new BigInt64Array(1), [1, 1]) };
    const zeros = (): ort.Tensor => (cacheType === 'float16' ? new ort.Tensor('float16', new Uint16Array(kvH * hd), [1, kvH, hd, 1]) : new ort.Tensor('float32', new Float32Array(kvH * hd), [1, kvH, hd, 1]));
    for (let i = 0; i < m.text.numLayers; i++) {
      past[`past_key.${i}`] = zeros();
      const v = zeros();
      past[`past_value.${i}`] = new ort.Tensor(v.type, v.data, [1, kvH, 1, hd]);
    }
    const T = ids.length;
    const out = await this.decoder.run({
      inputs_embeds: new ort.Tensor('float32', embeds, [1, T, D]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map((_, i) => BigInt(i))), [1, T]),
      ...past,
      ...feedsFor(this.decoder),
    });
    const logits = out.logits as ort.Tensor;
    return logits.type === 'float16' ? halfToFloat32(logits.data as Uint16Array) : (logits.data as Float32Array);
  }
}

function feedsOf(tensors: LoraTensor[]): Map<string, ort.Tensor> {
  return new Map(tensors.map((tensor) => [tensor.name, toOrtTensor(tensor)]));
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** W [out,in] + scale · B [out,r] · A [r,in], in float64 then rounded once. */
function merge(W: Float32Array, w: LoraModuleWeights, scale: number): Float32Array {
  const out = new Float32Array(W.length);
  for (let o = 0; o < w.outFeatures; o++) {
    for (let i = 0; i < w.inFeatures; i++) {
      let delta = 0;
      for (let r = 0; r < w.rank; r++) delta += w.B[o * w.rank + r]! * w.A[r * w.inFeatures + i]!;
      out[o * w.inFeatures + i] = W[o * w.inFeatures + i]! + scale * delta;
    }
  }
  return out;
}

const root = mkdtempSync(join(tmpdir(), 'vistyle-lora-parity-'));
let base: Model;
let plain: Model;
let merged: Model;
let weights: LoraModuleWeights[];
const RANK = 4;
const ALPHA = 6; // scale 1.5
const adapterDir = join(root, 'adapter');
const prompt: number[] = [];
const pixels = randomValues(99, 3 * 56 * 56, 1);

beforeAll(async () => {
  const lora = await tinyModel({ build: { allPositionLogits: true } });
  base = await Model.open(lora.modelDir);
  const targets = base.manifest.lora.targets;
  expect(targets).toHaveLength(16); // q/k/v/out of 2 vision layers, q/k/v/o of 2 decoder layers
  // o_proj and out_proj get rank 2 through rank_pattern
  weights = randomLoraWeights(targets, (t) => (/o(ut)?_proj$/.test(t.module) ? 2 : RANK), 11, 0.3);
  writePeftAdapter(adapterDir, { modules: weights, rank: RANK, alpha: ALPHA });
  const byWeight = new Map(weights.map((w) => [`${w.module}.weight`, w]));
  const mergedModel = await tinyModel({
    build: { allPositionLogits: true, noLora: true },
    transform: (name, values) => {
      const w = byWeight.get(name);
      return w ? merge(values, w, ALPHA / w.rank) : values;
    },
  });
  merged = await Model.open(mergedModel.modelDir);
  plain = await Model.open((await tinyModel({ build: { allPositionLogits: true, noLora: true } })).modelDir);
  expect(merged.manifest.lora.targets).toEqual([]);
  const m = base.manifest;
  const text = (s: string): number[] => [...Buffer.from(s, 'utf8')];
  prompt.push(
    m.tokens.imageTokenId - 2, // <|im_start|>
    ...text('user '),
    ...Array.from({ length: m.vision.imageTokens }, () => m.tokens.imageTokenId),
    ...text('\nWhat is in this picture?'),
    m.tokens.imageTokenId - 1, // <|im_end|>
    m.tokens.imageTokenId - 2,
    ...text('assistant'),
  );
}, 240_000);

afterAll(async () => {
  await Promise.all([base?.close(), merged?.close(), plain?.close()]);
  rmSync(root, { recursive: true, force: true });
});

describe('LoRA at run time on a tiny checkpoint', () => {
  it('gives the merged checkpoint\'s logits at every position (within 1e-4)', async () => {
    const feeds = await loadPeftLoraFeeds({ path: adapterDir }, { manifest: base.manifest });
    expect(feeds.size).toBe(32);
    const runtime = await base.logits(prompt, pixels, feeds);
    const reference = await merged.logits(prompt, pixels);
    const noAdapter = await base.logits(prompt, pixels, feedsOf(zeroLoraTensors(base.manifest.lora.targets)));
    expect(runtime.length).toBe(prompt.length * base.manifest.text.vocabSize);
    // the adapter matters: otherwise the comparison proves nothing
    expect(maxAbsDiff(noAdapter, reference)).toBeGreaterThan(0.05);
    expect(maxAbsDiff(runtime, reference)).toBeLessThanOrEqual(1e-4);
  });

  it('gives exactly the base model without an adapter', async () => {
    const zero = feedsOf(zeroLoraTensors(base.manifest.lora.targets));
    const withZero = await base.logits(prompt, pixels, zero);
    const withoutLora = await plain.logits(prompt, pixels);
    expect(maxAbsDiff(withZero, withoutLora)).toBe(0);
  });

  it('loads the transformers >= 4.52 module layout to the same logits', async () => {
    const currentDir = join(root, 'adapter-current');
    writePeftAdapter(currentDir, { modules: weights, rank: RANK, alpha: ALPHA, layout: 'current' });
    const legacy = await base.logits(prompt, pixels, await loadPeftLoraFeeds({ path: adapterDir }, { manifest: base.manifest }));
    const current = await base.logits(prompt, pixels, await loadPeftLoraFeeds({ path: currentDir }, { manifest: base.manifest }));
    expect(maxAbsDiff(legacy, current)).toBe(0);
  });

  it('applies a decoder-only adapter with "no adapter" on the vision tower', async () => {
    const decoderOnly = weights.filter((w) => w.module.startsWith('language_model.'));
    const dir = join(root, 'adapter-decoder');
    writePeftAdapter(dir, { modules: decoderOnly, rank: RANK, alpha: ALPHA, targetModules: decoderOnly.map((w) => `language_model.model.${w.module.slice(15)}`) });
    const feeds = await loadPeftLoraFeeds({ path: dir }, { manifest: base.manifest });
    expect([...feeds.keys()].every((name) => !name.includes('vision_tower'))).toBe(true);
    // the engine fills the vision inputs with "no adapter", as allLoraTensors does
    const adapter = loadPeftAdapter({ path: dir }, { targets: base.manifest.lora.targets });
    const runtime = await base.logits(prompt, pixels, feedsOf(allLoraTensors(adapter)));
    const byWeight = new Map(decoderOnly.map((w) => [`${w.module}.weight`, w]));
    const reference = await Model.open(
      (
        await tinyModel({
          build: { allPositionLogits: true, noLora: true },
          transform: (name, values) => {
            const w = byWeight.get(name);
            return w ? merge(values, w, ALPHA / w.rank) : values;
          },
        })
      ).modelDir,
    );
    try {
      expect(maxAbsDiff(runtime, await reference.logits(prompt, pixels))).toBeLessThanOrEqual(1e-4);
    } finally {
      await reference.close();
    }
  });
});

describe('LoRA in an fp16 build', () => {
  it('takes float16 adapter inputs and stays close to the merged fp32 model', async () => {
    const fp16 = await Model.open((await tinyModel({ build: { allPositionLogits: true, dtype: 'fp16' } })).modelDir);
    try {
      expect(fp16.manifest.lora.dtype).toBe('float16');
      const feeds = await loadPeftLoraFeeds({ path: adapterDir }, { manifest: fp16.manifest });
      expect([...feeds.values()].every((t) => t.type === 'float16')).toBe(true);
      const runtime = await fp16.logits(prompt, pixels, feeds);
      const reference = await merged.logits(prompt, pixels);
      const noAdapter = await plain.logits(prompt, pixels);
      const error = maxAbsDiff(runtime, reference);
      // fp16 rounding (0.03 measured), against an adapter effect of ~20 on these logits
      expect(maxAbsDiff(noAdapter, reference)).toBeGreaterThan(1);
      expect(error).toBeLessThan(0.25);
    } finally {
      await fp16.close();
    }
  });
});
