// Built graphs vs what transformers computed for tests/fixtures/tiny-a (fp32, tolerance 1e-4):
// image features, inputs_embeds, every position's logits (all-position build and token by token
// through the cache), the cache after prefill, the cached second step, the left-padded batch,
// and the 16 greedy tokens of generate().
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildModel } from '../../models/build/build.js';
import { fixtureArray, fixtureInputs, maxAbsDiff, TINY_A_DIR } from './fixture.js';
import { argmax, Graphs, SESSION_OPTIONS } from './ort-helpers.js';

const TOL = 1e-4;
const inputs = fixtureInputs();
const L = inputs.input_ids.length;
const V = 512;
const D = 64;

describe('graphs built from tiny-a match transformers', () => {
  const root = mkdtempSync(join(tmpdir(), 'vistyle-parity-'));
  let graphs: Graphs; // default build: last-position logits
  let all: Graphs; // allPositionLogits build
  let imageFeatures: Float32Array;

  beforeAll(async () => {
    await buildModel({ checkpointDir: TINY_A_DIR, outDir: join(root, 'last') });
    await buildModel({ checkpointDir: TINY_A_DIR, outDir: join(root, 'all'), allPositionLogits: true });
    graphs = await Graphs.open(join(root, 'last'));
    all = await Graphs.open(join(root, 'all'));
    imageFeatures = await graphs.runVision(fixtureArray('image1_pixel_values').data);
  });
  afterAll(async () => {
    await graphs?.close();
    await all?.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('writes a manifest that describes the graphs', () => {
    const m = graphs.manifest;
    expect(m.text).toMatchObject({ hiddenSize: 64, numLayers: 2, numHeads: 4, numKvHeads: 2, headDim: 16, vocabSize: 512 });
    expect(m.vision).toEqual({ imageSize: 56, patchSize: 14, imageTokens: 16 });
    expect(m.tokens).toEqual({ imageTokenId: 503, eosTokenIds: [502], padTokenId: 500, bosTokenId: 500 });
    expect(m.kvCache).toEqual({ layout: 'window', dtype: 'float32' });
    expect(m.allPositionLogits).toBe(false);
    expect(all.manifest.allPositionLogits).toBe(true);
    expect(graphs.decoder.inputNames.slice(0, 7)).toEqual(['inputs_embeds', 'position_ids', 'past_mask', 'past_key.0', 'past_value.0', 'past_key.1', 'past_value.1']);
    expect(graphs.decoder.outputNames).toEqual(expect.arrayContaining(['logits', 'key.0', 'value.0', 'key.1', 'value.1']));
  });

  it('image features from the reference pixel values', () => {
    expect(maxAbsDiff(imageFeatures, fixtureArray('image_features').data)).toBeLessThan(TOL);
  });

  it('inputs_embeds: text rows exactly, image rows within tolerance', async () => {
    const embeds = await graphs.mergedEmbeds([inputs.input_ids], imageFeatures);
    const ref = fixtureArray('inputs_embeds').data;
    const image = new Set(inputs.image_token_positions);
    expect(maxAbsDiff(embeds, ref, (i) => !image.has(Math.floor(i / D)))).toBe(0);
    expect(maxAbsDiff(embeds, ref)).toBeLessThan(TOL);
  });

  it('every position\'s logits in one prefill (allPositionLogits build)', async () => {
    const embeds = await all.mergedEmbeds([inputs.input_ids], imageFeatures);
    const logits = await all.step(all.emptyCache(1), embeds);
    expect(logits.length).toBe(L * V);
    expect(maxAbsDiff(logits, fixtureArray('logits').data)).toBeLessThan(TOL);
  });

  it('gives the same logits at every onnxruntime graph optimisation level', async () => {
    for (const level of ['disabled', 'basic', 'extended', 'all'] as const) {
      const g = await Graphs.open(join(root, 'all'), { ...SESSION_OPTIONS, graphOptimizationLevel: level });
      try {
        const embeds = await g.mergedEmbeds([inputs.input_ids], await g.runVision(fixtureArray('image1_pixel_values').data));
        for (let run = 0; run < 2; run++) {
          const logits = await g.step(g.emptyCache(1), embeds);
          expect(maxAbsDiff(logits, fixtureArray('logits').data), level).toBeLessThan(TOL);
        }
      } finally {
        await g.close();
      }
    }
  });

  it('prefill: last logits, the cache (keys after RoPE), then the cached step 2', async () => {
    const embeds = await graphs.mergedEmbeds([inputs.input_ids], imageFeatures);
    const cache = graphs.emptyCache(1);
    const logits = await graphs.step(cache, embeds);
    expect(logits.length).toBe(V);
    expect(maxAbsDiff(logits, fixtureArray('logits').data.subarray((L - 1) * V))).toBeLessThan(TOL);
    expect(argmax(logits)).toBe(inputs.step2_input_id);

    // reference past_kv [n,2,1,kvH,L,hd]; ours: keys [1,kvH,hd,W], values [1,kvH,W,hd] per layer
    const ref = fixtureArray('past_kv');
    const [n, , , kvH, , hd] = ref.shape as [number, number, number, number, number, number];
    let worst = 0;
    for (let l = 0; l < n; l++) {
      for (let kv = 0; kv < 2; kv++) for (let h = 0; h < kvH; h++) for (let p = 0; p < L; p++) for (let d = 0; d < hd; d++) {
        const r = ref.data[((((l * 2 + kv) * kvH + h) * L + p) * hd) + d]!;
        const o = kv === 0 ? cache.key(l, 0, h, p, d) : cache.value(l, 0, h, p, d);
        worst = Math.max(worst, Math.abs(r - o));
      }
    }
    expect(worst).toBeLessThan(TOL);

    expect(inputs.step2_position_id).toBe(L);
    const step2 = await graphs.step(cache, await graphs.runEmbed([[inputs.step2_input_id]]));
    expect(maxAbsDiff(step2, fixtureArray('step2_logits').data)).toBeLessThan(TOL);
  });

  it('every position\'s logits token by token through the cache', async () => {
    const embeds = await graphs.mergedEmbeds([inputs.input_ids], imageFeatures);
    const ref = fixtureArray('logits').data;
    const cache = graphs.emptyCache(1);
    let worst = 0;
    for (let t = 0; t < L; t++) {
      const logits = await graphs.step(cache, embeds.slice(t * D, (t + 1) * D));
      worst = Math.max(worst, maxAbsDiff(logits, ref.subarray(t * V, (t + 1) * V)));
    }
    expect(cache.length).toBe(L);
    expect(worst).toBeLessThan(TOL);
  });

  it('greedy generation gives generate()\'s 16 tokens and per-step logits', async () => {
    const embeds = await graphs.mergedEmbeds([inputs.input_ids], imageFeatures);
    const cache = graphs.emptyCache(1);
    const stepLogits = fixtureArray('generate_logits').data; // [16,1,V]
    let logits = await graphs.step(cache, embeds);
    const tokens: number[] = [];
    let worst = 0;
    for (let s = 0; s < inputs.generate.max_new_tokens; s++) {
      worst = Math.max(worst, maxAbsDiff(logits, stepLogits.subarray(s * V, (s + 1) * V)));
      const next = argmax(logits);
      tokens.push(next);
      if (next === inputs.generate.eos_token_id) break;
      logits = await graphs.step(cache, await graphs.runEmbed([[next]]));
    }
    expect(tokens).toEqual(inputs.generate.new_tokens);
    expect(worst).toBeLessThan(TOL);
  });

  it("the left-padded batch as rows of their own lengths: each row's valid positions, then batched greedy generation", async () => {
    // transformers pads the shorter prompt on the left; here each row is prefilled alone and the
    // rows then decode together, each with its own length (what the engine's batch does)
    const pixels = [fixtureArray('image1_pixel_values').data, fixtureArray('image2_pixel_values').data];
    const { input_ids: ids, attention_mask: mask } = inputs.batch;
    const Lb = ids[0]!.length;
    const ref = fixtureArray('batch_logits').data;
    const cache = graphs.emptyCache(2);
    const lastLogits = new Float32Array(2 * V);
    for (let b = 0; b < 2; b++) {
      const unpadded = ids[b]!.filter((_, i) => mask[b]![i] === 1);
      const pad = Lb - unpadded.length;
      const features = await all.runVision(pixels[b]!);
      const embeds = await all.mergedEmbeds([unpadded], features);
      const rowLogits = await all.step(all.emptyCache(1), embeds);
      expect(maxAbsDiff(rowLogits, ref.subarray((b * Lb + pad) * V, (b + 1) * Lb * V))).toBeLessThan(TOL);
      lastLogits.set(await graphs.step(cache, embeds, { rows: [b] }), b * V);
    }
    expect(cache.lengths).not.toEqual([cache.lengths[0], cache.lengths[0]]); // really two lengths

    const refSteps = fixtureArray('batch_generate_logits').data; // [16,2,V]
    const generated: number[][] = [[], []];
    let logits: Float32Array = lastLogits;
    let worst = 0;
    for (let s = 0; s < 16; s++) {
      worst = Math.max(worst, maxAbsDiff(logits, refSteps.subarray(s * 2 * V, (s + 1) * 2 * V)));
      const next = [argmax(logits, 0, V), argmax(logits, V, V)];
      next.forEach((tok, b) => generated[b]!.push(tok));
      logits = await graphs.step(cache, await graphs.runEmbed(next.map((tk) => [tk])));
    }
    expect(generated).toEqual(inputs.batch.generate_new_tokens);
    expect(worst).toBeLessThan(TOL);
  });
});
