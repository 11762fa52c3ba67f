// The float64 reference forward (tests/support/reference-forward.ts) is what graphs built from
// generated checkpoints are checked against; here it is itself checked against the numbers
// transformers computed for tests/fixtures/tiny-a.
import { afterAll, describe, expect, it } from 'vitest';
import { erf, ReferenceModel } from '../support/reference-forward.js';
import { fixtureArray, fixtureInputs, maxAbsDiff, TINY_A_DIR } from './fixture.js';

const TOL = 1e-4;

describe('float64 reference forward vs transformers (tiny-a)', () => {
  const ref = new ReferenceModel(TINY_A_DIR);
  afterAll(() => ref.close());
  const inputs = fixtureInputs();
  const pixels = fixtureArray('image1_pixel_values').data;
  const vision = ref.vision(pixels);

  it('erf is accurate', () => {
    expect(erf(0.5)).toBeCloseTo(0.5204998778130465, 14);
    expect(erf(-1.7)).toBeCloseTo(-0.9837904585907746, 14);
    expect(erf(3.5)).toBeCloseTo(0.9999992569016276, 14);
  });

  it('vision hidden states and image features', () => {
    const hs = fixtureArray('vision_hidden_states');
    const per = hs.shape[2]! * hs.shape[3]!;
    expect(vision.hiddenStates.length).toBe(hs.shape[0]);
    vision.hiddenStates.forEach((h, i) => {
      expect(maxAbsDiff(h, hs.data.subarray(i * per, (i + 1) * per))).toBeLessThan(TOL);
    });
    expect(maxAbsDiff(vision.imageFeatures, fixtureArray('image_features').data)).toBeLessThan(TOL);
  });

  const embeds = ref.mergeEmbeds(inputs.input_ids, vision.imageFeatures);
  const out = ref.decoder(embeds, inputs.position_ids);

  it('inputs_embeds, hidden states, every position\'s logits', () => {
    expect(maxAbsDiff(embeds, fixtureArray('inputs_embeds').data)).toBeLessThan(TOL);
    const ths = fixtureArray('text_hidden_states');
    const per = ths.shape[2]! * ths.shape[3]!;
    out.hiddenStates.forEach((h, i) => expect(maxAbsDiff(h, ths.data.subarray(i * per, (i + 1) * per))).toBeLessThan(TOL));
    expect(maxAbsDiff(out.logits, fixtureArray('logits').data)).toBeLessThan(TOL);
  });

  it('KV cache after prefill (keys after RoPE)', () => {
    const kv = fixtureArray('past_kv'); // [n,2,1,kvH,L,hd]
    const per = kv.shape[3]! * kv.shape[4]! * kv.shape[5]!;
    for (let l = 0; l < kv.shape[0]!; l++) {
      expect(maxAbsDiff(out.keys[l]!, kv.data.subarray((2 * l) * per, (2 * l + 1) * per))).toBeLessThan(TOL);
      expect(maxAbsDiff(out.values[l]!, kv.data.subarray((2 * l + 1) * per, (2 * l + 2) * per))).toBeLessThan(TOL);
    }
  });

  it('step 2 and the left-padded batch', () => {
    const ids = [...inputs.input_ids, inputs.step2_input_id];
    const e2 = ref.mergeEmbeds(ids, vision.imageFeatures);
    const o2 = ref.decoder(e2, ids.map((_, i) => i));
    const V = ref.config.text.vocabSize;
    expect(maxAbsDiff(o2.logits.subarray(-V), fixtureArray('step2_logits').data)).toBeLessThan(TOL);

    const batch = fixtureArray('batch_logits'); // [2, Lb, V]
    const Lb = batch.shape[1]!;
    const vision2 = ref.vision(fixtureArray('image2_pixel_values').data);
    const row = 1;
    const ids1 = inputs.batch.input_ids[row]!;
    const mask = inputs.batch.attention_mask[row]!;
    const e = ref.mergeEmbeds(ids1, vision2.imageFeatures);
    const o = ref.decoder(e, inputs.batch.position_ids[row]!, mask);
    const expected = batch.data.subarray(row * Lb * V, (row + 1) * Lb * V);
    expect(maxAbsDiff(o.logits, expected, (i) => mask[Math.floor(i / V)] === 1)).toBeLessThan(TOL);
  });
});
