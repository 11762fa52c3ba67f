// The device decoder (GroupQueryAttention over a device-resident cache) against what transformers
// computed for tests/fixtures/tiny-a, fp32, 1e-4: every position's logits, the cached step 2, the
// 16 greedy tokens, the batch of two prompts decoding together, a row leaving the batch, a prefix
// snapshot restored. The graph itself is checked on the CPU provider everywhere; the device cache
// on WebGPU (lavapipe in CI).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildModel } from '../../models/build/build.js';
import { MANIFEST_FILE, ModelManifestSchema } from '../../models/manifest.js';
import { checkDeviceAttention } from '../../src/engine/device-attention-check.js';
import { DeviceGraphs } from '../../src/engine/device-graphs.js';
import { DeviceKvCache } from '../../src/engine/device-kv-cache.js';
import { deviceDecoderOutputLocations } from '../../src/engine/device-runtime.js';
import { fixtureArray, fixtureInputs, maxAbsDiff, TINY_A_DIR } from '../models/fixture.js';
import { argmax, Graphs } from '../models/ort-helpers.js';
import { CacheDriver } from './cache-driver.js';
import { webgpuSuite } from './support.js';

const TOL = 1e-4;
const V = 512;
const D = 64;
const inputs = fixtureInputs();
const L = inputs.input_ids.length;
const root = mkdtempSync(join(tmpdir(), 'vistyle-device-decoder-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function deviceFeedsForPrompt(embeds: Float32Array, tokens: number, capacity: number): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {
    inputs_embeds: new ort.Tensor('float32', embeds, [1, tokens, D]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: tokens }, (_, i) => BigInt(i)), [1, tokens]),
    seqlens_k: new ort.Tensor('int32', Int32Array.from([tokens - 1]), [1]),
    total_sequence_length: new ort.Tensor('int32', Int32Array.from([tokens]), []),
  };
  for (let i = 0; i < 2; i++) {
    feeds[`past_key.${i}`] = new ort.Tensor('float32', new Float32Array(2 * capacity * 16), [1, 2, capacity, 16]);
    feeds[`past_value.${i}`] = new ort.Tensor('float32', new Float32Array(2 * capacity * 16), [1, 2, capacity, 16]);
  }
  return feeds;
}

describe('the device decoder graph on the CPU provider', () => {
  it('gives every position\'s logits of transformers in one prefill', async () => {
    const dir = join(root, 'all');
    await buildModel({ checkpointDir: TINY_A_DIR, outDir: dir, noLora: true, deviceDecoder: true, allPositionLogits: true });
    const graphs = await Graphs.open(dir);
    const decoder = await ort.InferenceSession.create(join(dir, 'decoder-device.onnx'), { executionProviders: ['cpu'], logSeverityLevel: 3 });
    try {
      expect(graphs.manifest.deviceDecoder).toEqual({ graph: 'decoder-device.onnx', attention: 'GroupQueryAttention', layout: 'bnsh-capacity' });
      const embeds = await graphs.mergedEmbeds([inputs.input_ids], await graphs.runVision(fixtureArray('image1_pixel_values').data));
      const out = await decoder.run(deviceFeedsForPrompt(embeds, L, 64));
      expect(maxAbsDiff(out.logits!.data as Float32Array, fixtureArray('logits').data)).toBeLessThan(TOL);
      expect(out['present_key.0']!.dims).toEqual([1, 2, 64, 16]);
    } finally {
      await decoder.release();
      await graphs.close();
    }
  });
});

const describeGpu = await webgpuSuite();

describeGpu('the device KV cache on WebGPU', () => {
  const dir = join(root, 'last');
  let graphs: Graphs; // vision + embed on the CPU: only the decoder is under test here
  let session: ort.InferenceSession;
  let deviceGraphs: DeviceGraphs;
  let maxChunk: number;
  let promptEmbeds: Float32Array;
  const CAPACITY = 96;

  const newDecoder = (): CacheDriver & { cache: DeviceKvCache } =>
    new CacheDriver(
      session,
      new DeviceKvCache(deviceGraphs, { numLayers: 2, numKvHeads: 2, headDim: 16, capacity: CAPACITY, rows: 4, dtype: 'float32' }, { maxPrefillTokens: maxChunk }),
      D,
    ) as CacheDriver & { cache: DeviceKvCache };

  beforeAll(async () => {
    await buildModel({ checkpointDir: TINY_A_DIR, outDir: dir, noLora: true, deviceDecoder: true });
    graphs = await Graphs.open(dir);
    session = await ort.InferenceSession.create(join(dir, 'decoder-device.onnx'), {
      executionProviders: [{ name: 'webgpu' }, 'cpu'],
      preferredOutputLocation: deviceDecoderOutputLocations(2),
      logSeverityLevel: 3,
    });
    deviceGraphs = new DeviceGraphs();
    const check = await checkDeviceAttention({ numHeads: 4, numKvHeads: 2, headDim: 16 }, (path) =>
      ort.InferenceSession.create(path, { executionProviders: ['webgpu'], logSeverityLevel: 3 }));
    maxChunk = check.maxChunk;
    expect(maxChunk).toBeGreaterThanOrEqual(1);
    promptEmbeds = await graphs.mergedEmbeds([inputs.input_ids], await graphs.runVision(fixtureArray('image1_pixel_values').data));
  });
  afterAll(async () => {
    await deviceGraphs?.release();
    await session?.release();
    await graphs?.close();
  });

  it('the vision graph on WebGPU: the reference pixel values give the reference image features', async () => {
    const lora = join(root, 'vision-lora');
    await buildModel({ checkpointDir: TINY_A_DIR, outDir: lora });
    const vision = await ort.InferenceSession.create(join(lora, 'vision.onnx'), { executionProviders: [{ name: 'webgpu' }, 'cpu'], logSeverityLevel: 3 });
    try {
      const feeds: Record<string, ort.Tensor> = { pixel_values: new ort.Tensor('float32', fixtureArray('image1_pixel_values').data, [1, 3, 56, 56]) };
      // "no adapter" as rank-1 zeros: rank 0 (zero-size inputs) crashes the WebGPU provider
      const manifest = ModelManifestSchema.parse(JSON.parse(readFileSync(join(lora, MANIFEST_FILE), 'utf8')));
      for (const t of manifest.lora.targets.filter((target) => target.graph === 'vision')) {
        feeds[t.inputA] = new ort.Tensor('float32', new Float32Array(t.inFeatures), [1, t.inFeatures]);
        feeds[t.inputB] = new ort.Tensor('float32', new Float32Array(t.outFeatures), [t.outFeatures, 1]);
      }
      expect(Object.keys(feeds).length).toBeGreaterThan(1);
      const out = await vision.run(feeds);
      expect(maxAbsDiff(out.image_features!.data as Float32Array, fixtureArray('image_features').data)).toBeLessThan(TOL);
    } finally {
      await vision.release();
    }
  });

  it('every position\'s logits token by token, the cache fed back from the device', async () => {
    const decoder = newDecoder();
    const ref = fixtureArray('logits').data;
    try {
      const id = await decoder.cache.open();
      let worst = 0;
      for (let t = 0; t < L; t++) {
        const logits = await decoder.prefill(id, promptEmbeds.slice(t * D, (t + 1) * D), 1);
        worst = Math.max(worst, maxAbsDiff(logits, ref.subarray(t * V, (t + 1) * V)));
      }
      expect(decoder.cache.length(id)).toBe(L);
      expect(worst).toBeLessThan(TOL);
    } finally {
      decoder.cache.free();
    }
  });

  it('chunked prefill, the cached step 2, then the 16 greedy tokens with constant host traffic', async () => {
    const decoder = newDecoder();
    try {
      const id = await decoder.cache.open();
      let logits = await decoder.prefill(id, promptEmbeds, L);
      expect(maxAbsDiff(logits, fixtureArray('logits').data.subarray((L - 1) * V))).toBeLessThan(TOL);
      const stepRef = fixtureArray('generate_logits').data;
      const tokens: number[] = [];
      const traffic: Array<{ in: number; out: number }> = [];
      let worst = 0;
      for (let s = 0; s < inputs.generate.max_new_tokens; s++) {
        worst = Math.max(worst, maxAbsDiff(logits, stepRef.subarray(s * V, (s + 1) * V)));
        const next = argmax(logits);
        tokens.push(next);
        if (next === inputs.generate.eos_token_id) break;
        logits = (await decoder.decode([id], new Map([[id, await graphs.runEmbed([[next]])]]))).get(id)!;
        if (s === 0) expect(maxAbsDiff(logits, fixtureArray('step2_logits').data)).toBeLessThan(TOL);
        traffic.push(decoder.cache.lastTraffic);
      }
      expect(tokens).toEqual(inputs.generate.new_tokens);
      expect(worst).toBeLessThan(TOL);
      // per step: embedding + position id + lengths in, logits out; the same at every length
      expect(traffic[0]).toEqual({ in: D * 4 + 8 + 4 + 4, out: V * 4 });
      expect(new Set(traffic.map((t) => `${t.in}/${t.out}`)).size).toBe(1);
    } finally {
      decoder.cache.free();
    }
  });

  it('two prompts decode together as in transformers\' batch; a row left out is a filler; one leaves', async () => {
    const decoder = newDecoder();
    try {
      const pixels = new Float32Array(2 * 3 * 56 * 56);
      pixels.set(fixtureArray('image1_pixel_values').data, 0);
      pixels.set(fixtureArray('image2_pixel_values').data, 3 * 56 * 56);
      const features = await graphs.runVision(pixels, 2);
      const { input_ids: ids, attention_mask: mask } = inputs.batch;
      const Lb = ids[0]!.length;
      const padded = await graphs.mergedEmbeds(ids, features);
      const refSteps = fixtureArray('batch_generate_logits').data; // [16,2,V]
      // each prompt alone (its real tokens: the fixture pads on the left), then together
      const rows: number[] = [];
      const logits = new Map<number, Float32Array>();
      for (let b = 0; b < 2; b++) {
        const start = mask[b]!.indexOf(1);
        const id = await decoder.cache.open();
        logits.set(id, await decoder.prefill(id, padded.slice((b * Lb + start) * D, (b + 1) * Lb * D), Lb - start));
        rows.push(id);
      }
      const generated: number[][] = [[], []];
      let worst = 0;
      let current = logits;
      for (let s = 0; s < 16; s++) {
        const next: number[] = [];
        rows.forEach((id, b) => {
          worst = Math.max(worst, maxAbsDiff(current.get(id)!, refSteps.subarray((s * 2 + b) * V, (s * 2 + b + 1) * V)));
          next.push(argmax(current.get(id)!));
          generated[b]!.push(next[b]!);
        });
        const embeds = new Map(await Promise.all(rows.map(async (id, b) => [id, await graphs.runEmbed([[next[b]!]])] as const)));
        current = await decoder.decode(rows, embeds);
      }
      expect(decoder.cache.batchRows).toEqual(rows);
      expect(generated).toEqual(inputs.batch.generate_new_tokens);
      expect(worst).toBeLessThan(TOL);

      // the second row decodes alone while the first stays in the batch as a filler...
      const [first, second] = rows as [number, number];
      const firstLength = decoder.cache.length(first);
      const token = argmax(current.get(second)!);
      const step = await decoder.decode([second], new Map([[second, await graphs.runEmbed([[token]])]]));
      expect(decoder.cache.length(first)).toBe(firstLength);
      // ...giving what the same step gives from a snapshot of the second row alone
      const snap = await decoder.cache.snapshot(second, decoder.cache.length(second) - 1);
      const restored = await decoder.cache.open({ snapshot: snap });
      const fromSnapshot = await decoder.prefill(restored, await graphs.runEmbed([[token]]), 1);
      expect(maxAbsDiff(step.get(second)!, fromSnapshot)).toBeLessThan(TOL);
      await decoder.cache.close([restored]);

      // the first row, left out a step, goes on exactly where it was
      const firstNext = argmax(current.get(first)!);
      const firstStep = await decoder.decode([first, second], new Map([
        [first, await graphs.runEmbed([[firstNext]])],
        [second, await graphs.runEmbed([[argmax(step.get(second)!)]])],
      ]));
      await decoder.cache.close([second]);
      expect(decoder.cache.batchRows).toEqual([first]);
      const snapFirst = await decoder.cache.snapshot(first, firstLength);
      const again = await decoder.cache.open({ snapshot: snapFirst });
      const check = await decoder.prefill(again, await graphs.runEmbed([[firstNext]]), 1);
      expect(maxAbsDiff(firstStep.get(first)!, check)).toBeLessThan(TOL);
      decoder.cache.releaseSnapshot(snap);
      decoder.cache.releaseSnapshot(snapFirst);
    } finally {
      decoder.cache.free();
    }
  });

  it('a prefix snapshot restored into a new sequence continues like a full prefill', async () => {
    const decoder = newDecoder();
    try {
      const prefix = inputs.image_token_positions.at(-1)! + 1; // everything up to the picture
      const a = await decoder.cache.open();
      await decoder.prefill(a, promptEmbeds, L);
      const snap = await decoder.cache.snapshot(a);
      expect(snap.length).toBe(L);
      expect(snap.bytes).toBe(2 * 2 * 2 * L * 16 * 4); // sized to what it holds, not the capacity
      await decoder.cache.close([a]);
      // restore only the prefix, prefill the rest again
      const b = await decoder.cache.open({ snapshot: snap, length: prefix });
      expect(decoder.cache.length(b)).toBe(prefix);
      const logits = await decoder.prefill(b, promptEmbeds.slice(prefix * D), L - prefix);
      expect(maxAbsDiff(logits, fixtureArray('logits').data.subarray((L - 1) * V))).toBeLessThan(TOL);
      decoder.cache.releaseSnapshot(snap);
      expect(decoder.cache.freeRows).toBe(3);
    } finally {
      decoder.cache.free();
    }
  });
  it('a full row left out of a step moves out of the batch; prefilling a batch row moves it back; stale bindings are refused', async () => {
    const capacity = 8;
    const cache = new DeviceKvCache(deviceGraphs, { numLayers: 2, numKvHeads: 2, headDim: 16, capacity, rows: 4, dtype: 'float32' }, { maxPrefillTokens: maxChunk });
    const driver = new CacheDriver(session, cache, D);
    try {
      const row = (t: number): Float32Array => promptEmbeds.slice(t * D, (t + 1) * D);
      const full = await cache.open();
      const other = await cache.open();
      await driver.prefill(full, promptEmbeds.slice(0, 7 * D), 7);
      await driver.prefill(other, promptEmbeds.slice(0, 3 * D), 3);
      await driver.decode([full, other], new Map([[full, row(7)], [other, row(3)]]));
      expect(cache.length(full)).toBe(capacity);
      // `full` has no room for a filler's throw-away write: it leaves the batch, its data intact
      const step = await driver.decode([other], new Map([[other, row(4)]]));
      expect(cache.batchRows).toEqual([other]);
      expect(step.get(other)!.length).toBe(V);
      await expect(cache.bindDecode([full])).rejects.toMatchObject({ code: 'PROMPT_TOO_LONG' });
      const snap = await cache.snapshot(full);
      const again = await cache.open({ snapshot: snap, length: 7 });
      const reference = await driver.prefill(again, row(7), 1);
      // the sequence that left still holds its positions: the same step from its own buffers
      const back = await cache.open({ snapshot: await cache.snapshot(full, 7) });
      expect(maxAbsDiff(await driver.prefill(back, row(7), 1), reference)).toBeLessThan(TOL);
      // a sequence in the batch prefilled again goes back to its own buffers first
      const more = await driver.prefill(other, promptEmbeds.slice(5 * D, 6 * D), 1);
      expect(more.length).toBe(V);
      expect(cache.batchRows).toEqual([]);
      // a binding made before the cache moved on cannot be committed
      const stale = await cache.bindPrefill(other, 1);
      await cache.bindPrefill(other, 1);
      expect(() => cache.commit(stale, stale.feeds, {})).toThrow(/not the last one bound/);
      cache.releaseSnapshot(snap);
    } finally {
      cache.free();
    }
  });
});
