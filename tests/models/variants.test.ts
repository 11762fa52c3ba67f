// Other checkpoints of the same architecture, generated here, built, and checked against the
// float64 reference forward (itself checked against transformers in reference-forward.test.ts):
// head ratios, feature layers, select strategy, untied lm_head, image sizes 14 does not divide,
// head_dim != hidden/heads, the current tensor layout with bf16 shards, and an fp16 build.
// Each also checks cache consistency: decoding in chunks through the cache gives the logits of
// one full pass.
import { afterAll, describe, expect, it } from 'vitest';
import { Rng } from '../../models/checkpoint/rng.js';
import { ReferenceModel } from '../support/reference-forward.js';
import { tinyModel, type TinyModelOptions } from '../support/tiny-model.js';
import { maxAbsDiff } from './fixture.js';
import { Graphs } from './ort-helpers.js';

interface Variant {
  name: string;
  options: TinyModelOptions;
  /** abs tolerance on image features */
  tol: number;
  /** abs tolerance on logits (|logits| reach ~20 with these weights) */
  logitTol?: number;
}

const VARIANTS: Variant[] = [
  { name: 'MHA (kv heads = heads)', options: { text: { numHeads: 4, numKvHeads: 4 } }, tol: 1e-4 },
  { name: 'GQA x4', options: { text: { numHeads: 8, numKvHeads: 2 }, seed: 2 }, tol: 1e-4 },
  { name: 'vision_feature_layer -2 of 3', options: { vision: { numLayers: 3 }, featureLayer: -2, seed: 3 }, tol: 1e-4 },
  { name: 'vision_feature_layer 1 (positive)', options: { vision: { numLayers: 3 }, featureLayer: 1, seed: 4 }, tol: 1e-4 },
  { name: 'strategy "default" drops the first patch', options: { selectStrategy: 'default', seed: 5 }, tol: 1e-4 },
  { name: 'untied lm_head', options: { tieWordEmbeddings: false, seed: 6 }, tol: 1e-4 },
  { name: 'image 60 px (14 does not divide it)', options: { vision: { imageSize: 60 }, seed: 7 }, tol: 1e-4 },
  {
    name: 'current layout, bf16 shards, head_dim 32, theta 1e4, eps 1e-5, other activations',
    options: {
      layout: 'current', dtype: 'BF16', shards: 2, seed: 8,
      text: { headDim: 32, ropeTheta: 10000, rmsNormEps: 1e-5, numLayers: 3 },
      vision: { patchSize: 8, imageSize: 40, layerNormEps: 1e-5, hiddenAct: 'quick_gelu' },
      projectorAct: 'gelu_pytorch_tanh',
    },
    tol: 1e-4,
  },
  // float16 weights and matrix work (norms and softmax in float32): measured 2e-3 / 4e-2
  { name: 'fp16 build', options: { seed: 9, build: { dtype: 'fp16' } }, tol: 1e-2, logitTol: 0.1 },
];

function prompt(imageToken: number, imageTokens: number, start: number): number[] {
  const text = (s: string): number[] => [...Buffer.from(s)];
  return [start + 1, ...text('user\n'), ...new Array(imageTokens).fill(imageToken), ...text('\nWhat is it?'), start + 2, start + 1,
    ...text('assistant\n')];
}

describe.each(VARIANTS)('$name', ({ options, tol, logitTol = 1e-4 }) => {
  let graphs: Graphs;
  let ref: ReferenceModel;
  afterAll(async () => {
    await graphs?.close();
    ref?.close();
  });

  it('matches the float64 reference and its own full pass through the cache', async () => {
    const model = await tinyModel({ ...options, build: { ...options.build, allPositionLogits: true } });
    graphs = await Graphs.open(model.modelDir);
    ref = new ReferenceModel(model.checkpointDir);
    const m = graphs.manifest;
    const S = m.vision.imageSize;
    const V = m.text.vocabSize;
    const D = m.text.hiddenSize;

    const rng = new Rng(42, 'pixels');
    const pixels = Float32Array.from({ length: 3 * S * S }, () => rng.uniform() * 2 - 1);
    const features = await graphs.runVision(pixels);
    const refVision = ref.vision(pixels);
    expect(features.length).toBe(m.vision.imageTokens * D);
    expect(maxAbsDiff(features, refVision.imageFeatures)).toBeLessThan(tol);

    const ids = prompt(m.tokens.imageTokenId, m.vision.imageTokens, m.tokens.imageTokenId - 3);
    const L = ids.length;
    const positions = ids.map((_, i) => i);
    const embeds = await graphs.mergedEmbeds([ids], features);
    const full = await graphs.step(graphs.emptyCache(1), embeds);
    const refOut = ref.decoder(ref.mergeEmbeds(ids, refVision.imageFeatures), positions);
    expect(maxAbsDiff(full, refOut.logits)).toBeLessThan(logitTol);

    // chunks through the cache == the full pass
    const cache = graphs.emptyCache(1);
    let at = 0;
    let worst = 0;
    for (const size of [7, 1, 9, 1, 1, L]) {
      const n = Math.min(size, L - at);
      if (n <= 0) break;
      const logits = await graphs.step(cache, embeds.slice(at * D, (at + n) * D));
      worst = Math.max(worst, maxAbsDiff(logits, full.subarray(at * V, (at + n) * V)));
      at += n;
    }
    expect(at).toBe(L);
    // fp32: the chunks read the earlier ones from the cache window (a past part and a new part
    // summed), the full pass has them all in its new part: the same sums in another order
    expect(worst).toBeLessThan(m.dtype === 'fp16' ? logitTol : 3e-5);
  });
});

describe('rows of different lengths in one batch on a generated GQA model', () => {
  it("a decode step over two rows matches the reference's full pass of each row", async () => {
    const model = await tinyModel({ text: { numHeads: 8, numKvHeads: 2 }, seed: 2 });
    const graphs = await Graphs.open(model.modelDir);
    const ref = new ReferenceModel(model.checkpointDir);
    try {
      const m = graphs.manifest;
      const S = m.vision.imageSize;
      const V = m.text.vocabSize;
      const rng = new Rng(43, 'pixels');
      const pixels = Float32Array.from({ length: 2 * 3 * S * S }, () => rng.uniform() * 2 - 1);
      const start = m.tokens.imageTokenId - 3;
      const a = prompt(m.tokens.imageTokenId, m.vision.imageTokens, start);
      const rows = [a, a.slice(0, a.length - 9)];
      const next = [start + 1, start + 2];
      const cache = graphs.emptyCache(2);
      const refFeatures: Float64Array[] = [];
      for (let b = 0; b < 2; b++) {
        const one = pixels.subarray(b * 3 * S * S, (b + 1) * 3 * S * S);
        const features = await graphs.runVision(one);
        refFeatures.push(ref.vision(one).imageFeatures);
        expect(maxAbsDiff(features, refFeatures[b]!)).toBeLessThan(1e-4);
        await graphs.step(cache, await graphs.mergedEmbeds([rows[b]!], features), { rows: [b] });
      }
      const logits = await graphs.step(cache, await graphs.runEmbed(next.map((id) => [id])));
      for (let b = 0; b < 2; b++) {
        const ids = [...rows[b]!, next[b]!];
        const out = ref.decoder(ref.mergeEmbeds(ids, refFeatures[b]!), ids.map((_, i) => i));
        const last = out.logits.subarray((ids.length - 1) * V, ids.length * V);
        expect(maxAbsDiff(logits.subarray(b * V, (b + 1) * V), last)).toBeLessThan(1e-4);
      }
    } finally {
      await graphs.close();
      ref.close();
    }
  });
});
