// LoRA inputs of the vision and decoder graphs: "no adapter" (a rank-1 zero) gives the base model's outputs exactly; a
// random adapter (A [r,in], B [out,r], scale folded into B) gives the outputs of a checkpoint
// whose weights were merged, W + B·A, within 1e-4; targets follow --lora-targets.
import { describe, expect, it } from 'vitest';
import { Rng } from '../../models/checkpoint/rng.js';
import { tinyModel, type TinyModelOptions } from '../support/tiny-model.js';
import { maxAbsDiff } from './fixture.js';
import { Graphs, type LoraFeed } from './ort-helpers.js';

const BASE: TinyModelOptions = { seed: 11, vision: { numLayers: 3 }, featureLayer: -1 };

function randomAdapters(targets: Graphs['manifest']['lora']['targets'], seed: number): LoraFeed {
  const feed: LoraFeed = {};
  targets.forEach((t, i) => {
    const r = 1 + (i % 4) * 2; // ranks 1, 3, 5, 7: each target its own rank
    const rng = new Rng(seed, t.module);
    feed[t.module] = { r, A: rng.normalArray(r * t.inFeatures, 0.2), B: rng.normalArray(t.outFeatures * r, 0.2) };
  });
  return feed;
}

/** W [out,in] + B [out,r] · A [r,in] */
function merge(W: Float32Array, delta: { A: Float32Array; B: Float32Array; r: number }, outF: number, inF: number): Float32Array {
  const out = new Float32Array(W);
  for (let o = 0; o < outF; o++) {
    for (let i = 0; i < inF; i++) {
      let s = 0;
      for (let k = 0; k < delta.r; k++) s += delta.B[o * delta.r + k]! * delta.A[k * inF + i]!;
      out[o * inF + i]! += s;
    }
  }
  return out;
}

async function outputs(graphs: Graphs, adapters?: LoraFeed): Promise<{ features: Float32Array; logits: Float32Array }> {
  const m = graphs.manifest;
  const S = m.vision.imageSize;
  const rng = new Rng(5, 'pixels');
  const pixels = Float32Array.from({ length: 3 * S * S }, () => rng.uniform() * 2 - 1);
  const features = await graphs.runVision(pixels, 1, adapters);
  const start = m.tokens.imageTokenId - 3;
  const ids = [start + 1, 117, 10, ...new Array(m.vision.imageTokens).fill(m.tokens.imageTokenId), 10, 72, 105, 63, start + 2, start + 1, 97];
  const embeds = await graphs.mergedEmbeds([ids], features);
  const logits = await graphs.step(graphs.emptyCache(1), embeds, { adapters });
  return { features, logits };
}

describe('LoRA inputs', () => {
  it('default targets: q/k/v/o of the decoder, q/k/v/out of every vision layer in use', async () => {
    const model = await tinyModel({ ...BASE, featureLayer: -2 });
    const graphs = await Graphs.open(model.modelDir);
    try {
      const targets = graphs.manifest.lora.targets;
      const modules = targets.map((t) => t.module);
      expect(modules).toContain('language_model.layers.1.self_attn.o_proj');
      expect(modules).toContain('vision_tower.encoder.layers.1.self_attn.out_proj');
      // layer 2 is past vision_feature_layer -2: not computed, no inputs
      expect(modules.some((m) => m.startsWith('vision_tower.encoder.layers.2.'))).toBe(false);
      expect(modules).toHaveLength(2 * 4 + 2 * 4);
      const q = targets.find((t) => t.module === 'language_model.layers.0.self_attn.k_proj')!;
      expect(q).toMatchObject({ graph: 'decoder', inFeatures: 64, outFeatures: 32 });
      expect(graphs.decoder.inputNames).toContain(q.inputA);
      expect(graphs.decoder.inputNames).toContain(q.inputB);
      const vt = targets.find((t) => t.graph === 'vision')!;
      expect(graphs.vision.inputNames).toContain(vt.inputA);
      expect(graphs.manifest.lora.dtype).toBe('float32');
    } finally {
      await graphs.close();
    }
  });

  it('"no adapter" (a rank-1 zero) gives the outputs of a build without LoRA exactly', async () => {
    const withLora = await Graphs.open((await tinyModel({ ...BASE, build: { allPositionLogits: true } })).modelDir);
    const without = await Graphs.open((await tinyModel({ ...BASE, build: { allPositionLogits: true, noLora: true } })).modelDir);
    try {
      expect(without.manifest.lora.targets).toEqual([]);
      expect(without.decoder.inputNames.some((n) => n.startsWith('lora.'))).toBe(false);
      const b = await outputs(without);
      // alternate adapter runs and "no adapter" runs on the same sessions, so that the zero
      // adapter also runs on reused (dirty) buffers
      const adapters = randomAdapters(withLora.manifest.lora.targets, 3);
      for (let round = 0; round < 3; round++) {
        const fed = await outputs(withLora, adapters);
        expect(maxAbsDiff(fed.logits, b.logits)).toBeGreaterThan(1);
        const a = await outputs(withLora);
        expect(maxAbsDiff(a.features, b.features)).toBe(0);
        expect(maxAbsDiff(a.logits, b.logits)).toBe(0);
      }
    } finally {
      await withLora.close();
      await without.close();
    }
  });

  for (const dtype of ['fp32', 'fp16'] as const) {
    it(`a random adapter equals merged weights W + B·A (${dtype})`, async () => {
      const build = { allPositionLogits: true, dtype };
      const base = await Graphs.open((await tinyModel({ ...BASE, build })).modelDir);
      try {
        expect(base.manifest.lora.dtype).toBe(dtype === 'fp16' ? 'float16' : 'float32');
        const adapters = randomAdapters(base.manifest.lora.targets, 99);
        const shapes = new Map(base.manifest.lora.targets.map((t) => [t.module, t]));
        const merged = await tinyModel({
          ...BASE,
          build,
          transform: (name, values) => {
            const module = name.replace(/\.weight$/, '');
            const t = shapes.get(module);
            return t && name.endsWith('.weight') ? merge(values, adapters[module]!, t.outFeatures, t.inFeatures) : values;
          },
        });
        const mergedGraphs = await Graphs.open(merged.modelDir);
        try {
          const fed = await outputs(base, adapters);
          const want = await outputs(mergedGraphs);
          const plain = await outputs(base);
          const tol = dtype === 'fp16' ? { f: 2e-2, l: 0.2 } : { f: 1e-4, l: 1e-4 };
          expect(maxAbsDiff(fed.features, want.features)).toBeLessThan(tol.f);
          expect(maxAbsDiff(fed.logits, want.logits)).toBeLessThan(tol.l);
          // and the adapter really changes things
          expect(maxAbsDiff(fed.logits, plain.logits)).toBeGreaterThan(1);
        } finally {
          await mergedGraphs.close();
        }
      } finally {
        await base.close();
      }
    });
  }

  it('--lora-targets picks modules: a short name in both towers, or a full path', async () => {
    const model = await tinyModel({ ...BASE, build: { loraTargets: ['v_proj', 'model.language_model.layers.1.self_attn.o_proj'] } });
    const graphs = await Graphs.open(model.modelDir);
    try {
      expect(graphs.manifest.lora.targets.map((t) => t.module)).toEqual([
        'vision_tower.encoder.layers.0.self_attn.v_proj',
        'vision_tower.encoder.layers.1.self_attn.v_proj',
        'vision_tower.encoder.layers.2.self_attn.v_proj',
        'language_model.layers.0.self_attn.v_proj',
        'language_model.layers.1.self_attn.v_proj',
        'language_model.layers.1.self_attn.o_proj',
      ]);
      // feeding just one target (the others "no adapter") runs
      const t = graphs.manifest.lora.targets.at(-1)!;
      const rng = new Rng(1, 'o');
      const out = await outputs(graphs, { [t.module]: { r: 2, A: rng.normalArray(2 * t.inFeatures, 0.2), B: rng.normalArray(t.outFeatures * 2, 0.2) } });
      expect(out.logits.every(Number.isFinite)).toBe(true);
    } finally {
      await graphs.close();
    }
  });
});
