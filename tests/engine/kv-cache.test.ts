// The host KV cache (src/engine/kv-host.ts) against a real onnxruntime session: a hand-made graph
// that takes the cache's feeds exactly as the decoder does (past_key/past_value views, past_mask),
// returns the "new" rows it is given as key.0/value.0, and sums what each batch row sees of the
// past. If the views were wrong (stale after a window move, another row's block, the unfilled
// part unmasked, a copy instead of the cache's own memory) the sums would not match the values
// committed so far.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attr, GraphBuilder } from '../../models/onnx/builder.js';
import { DataType } from '../../models/onnx/schema.js';
import { bytesPerPosition, kvCacheBytes, type KvCacheSpec, type StepBinding } from '../../src/engine/kv-cache.js';
import { HostKvCache } from '../../src/engine/kv-host.js';
import { isVistyleError } from '../../src/errors.js';

const KV_HEADS = 2;
const HEAD_DIM = 3;
const SPEC: KvCacheSpec = { numLayers: 1, numKvHeads: KV_HEADS, headDim: HEAD_DIM, capacity: 20, rows: 3, dtype: 'float32' };

/** past (masked) sums per batch row, and the new rows echoed as key.0 / value.0 */
async function probeSession(dir: string): Promise<ort.InferenceSession> {
  const g = new GraphBuilder('probe');
  const mask = g.input('past_mask', DataType.INT64, ['B', 'W']);
  const pk = g.input('past_key.0', DataType.FLOAT, ['B', KV_HEADS, HEAD_DIM, 'W']);
  const pv = g.input('past_value.0', DataType.FLOAT, ['B', KV_HEADS, 'W', HEAD_DIM]);
  const nk = g.input('new_key', DataType.FLOAT, ['B', KV_HEADS, HEAD_DIM, 'T']);
  const nv = g.input('new_value', DataType.FLOAT, ['B', KV_HEADS, 'T', HEAD_DIM]);
  g.input('position_ids', DataType.INT64, ['B', 'T']);
  const m = g.node('Cast', [mask], { to: attr.int(DataType.FLOAT) });
  const keySum = g.node('ReduceSum', [g.node('Mul', [pk, g.node('Unsqueeze', [m, g.i64([1, 2])])]), g.i64([1, 2, 3])], { keepdims: attr.int(0) });
  const valueSum = g.node('ReduceSum', [g.node('Mul', [pv, g.node('Unsqueeze', [m, g.i64([1, 3])])]), g.i64([1, 2, 3])], { keepdims: attr.int(0) });
  g.output(keySum, 'key_sum', DataType.FLOAT, ['B']);
  g.output(valueSum, 'value_sum', DataType.FLOAT, ['B']);
  g.output(nk, 'key.0', DataType.FLOAT, ['B', KV_HEADS, HEAD_DIM, 'T']);
  g.output(nv, 'value.0', DataType.FLOAT, ['B', KV_HEADS, 'T', HEAD_DIM]);
  const path = join(dir, 'probe.onnx');
  g.save(path, { opsetVersion: 18 });
  return ort.InferenceSession.create(path, { intraOpNumThreads: 1, interOpNumThreads: 1 });
}

describe('HostKvCache', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vistyle-kv-'));
  let session: ort.InferenceSession;
  beforeAll(async () => {
    session = await probeSession(dir);
  });
  afterAll(async () => {
    await session?.release();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Runs a bound step whose new keys/values are all `value`; returns what each batch row saw. */
  async function run(cache: HostKvCache, binding: StepBinding, value: (batchRow: number) => number): Promise<{ keys: number[]; values: number[] }> {
    const B = binding.batch.length;
    const T = binding.newTokens;
    const per = KV_HEADS * HEAD_DIM * T;
    const fill = (): Float32Array => {
      const a = new Float32Array(B * per);
      for (let b = 0; b < B; b++) a.fill(value(b), b * per, (b + 1) * per);
      return a;
    };
    const feeds = {
      ...binding.feeds,
      new_key: new ort.Tensor('float32', fill(), [B, KV_HEADS, HEAD_DIM, T]),
      new_value: new ort.Tensor('float32', fill(), [B, KV_HEADS, T, HEAD_DIM]),
    };
    const out = await session.run(feeds);
    cache.commit(binding, feeds, out as Record<string, ort.Tensor>);
    return { keys: Array.from(out.key_sum!.data as Float32Array), values: Array.from(out.value_sum!.data as Float32Array) };
  }

  const perPosition = KV_HEADS * HEAD_DIM;

  it('feeds each row what it committed, through window moves, fillers, snapshots and closes', async () => {
    const cache = new HostKvCache({ spec: SPEC, block: 4 });
    expect(kvCacheBytes(SPEC)).toBe(3 * 20 * bytesPerPosition(SPEC));
    const a = await cache.open();
    const b = await cache.open();
    const c = await cache.open();
    expect(cache.freeRows).toBe(0);
    await expect(cache.open()).rejects.toMatchObject({ code: 'INTERNAL' });
    // what each sequence has committed: sum of its values over positions
    const sums = new Map<number, number>([[a, 0], [b, 0], [c, 0]]);
    const seen = async (binding: StepBinding, value: (seq: number) => number): Promise<void> => {
      const got = await run(cache, binding, (i) => (binding.batch[i] === null ? 1000 : value(binding.batch[i]!)));
      binding.batch.forEach((seq, i) => {
        const expected = seq === null ? 0 : sums.get(seq)! * perPosition;
        expect(got.keys[i], `keys of batch row ${i}`).toBe(expected);
        expect(got.values[i], `values of batch row ${i}`).toBe(expected);
      });
      binding.batch.forEach((seq) => {
        if (seq !== null) sums.set(seq, sums.get(seq)! + value(seq) * binding.newTokens);
      });
    };

    await seen(await cache.bindPrefill(a, 3), () => 1); // a: 3 positions of 1
    expect(cache.currentWindow).toBe(4);
    const first = await cache.bindPrefill(b, 6); // b needs 6: the window grows to 8
    expect(cache.currentWindow).toBe(8);
    // a first chunk has nothing cached: one masked position, not a window of them
    expect(first.feeds['past_key.0']!.dims).toEqual([1, KV_HEADS, HEAD_DIM, 1]);
    expect(first.feeds['past_mask']!.data).toEqual(new BigInt64Array([0n]));
    await seen(first, () => 2);
    expect(cache.length(a)).toBe(3);
    expect(cache.length(b)).toBe(6);

    // decode a and c: b (row 1) sits between them as a filler; nothing of it is seen or written
    const step = await cache.bindDecode([a, c]);
    expect(step.batch).toEqual([a, null, c]);
    await seen(step, (seq) => (seq === a ? 5 : 7));
    expect([cache.length(a), cache.length(b), cache.length(c)]).toEqual([4, 6, 1]);
    for (let i = 0; i < 3; i++) await seen(await cache.bindDecode([a, b, c]), (seq) => seq);
    expect([cache.length(a), cache.length(b), cache.length(c)]).toEqual([7, 9, 4]); // b moved the window on: 12
    expect(cache.currentWindow).toBe(12);

    // the views are the cache's own memory, and only the new rows count as host traffic
    const decode = await cache.bindDecode([a, b, c]);
    const pastBytes = decode.feeds['past_key.0']!.dims.reduce((x, y) => x * y, 1) * 4;
    expect((decode.feeds['past_key.0']!.data as Float32Array).buffer.byteLength).toBeGreaterThanOrEqual(3 * perPosition * 20 * 4);
    await seen(decode, () => 3);
    expect(cache.lastTraffic.in).toBeLessThan(pastBytes);
    expect(cache.lastTraffic.out).toBe(2 * 3 * 4 + 2 * 3 * perPosition * 4); // the sums, then key.0 and value.0

    // a snapshot survives its sequence; a restored prefix sees exactly its positions
    const snapshot = await cache.snapshot(b, 5);
    expect(snapshot.bytes).toBe(5 * bytesPerPosition(SPEC));
    const bSum = sums.get(b)!;
    await cache.close([b]);
    expect(cache.freeRows).toBe(1);
    const d = await cache.open({ snapshot, length: 5 });
    expect(cache.length(d)).toBe(5);
    sums.set(d, 2 * 5); // b's first five positions were its prefill of 2s
    // a later chunk reads exactly the cached positions (a compact copy, counted as traffic)
    const next = await cache.bindPrefill(d, 2);
    expect(next.feeds['past_key.0']!.dims).toEqual([1, KV_HEADS, HEAD_DIM, 5]);
    await seen(next, () => 4);
    expect(cache.lastTraffic.in).toBeGreaterThanOrEqual(2 * 5 * perPosition * 4);
    expect(bSum).toBeGreaterThan(sums.get(d)! - 8);

    // the longest leaves: within a block of slack the window stays (no moving back and forth)...
    await cache.close([d]);
    expect(cache.currentWindow).toBe(12);
    await seen(await cache.bindDecode([a, c]), () => 1);
    // ...beyond it, the window narrows and the rows still read right
    await cache.close([a]);
    const e = await cache.open();
    sums.set(e, 0);
    await seen(await cache.bindPrefill(e, 1), () => 6);
    await cache.close([e]);
    expect(cache.length(c)).toBe(6);
    expect(cache.currentWindow).toBe(12); // c still needs 8: within a block of slack
    await seen(await cache.bindDecode([c]), () => 1);
    await cache.close([c]);
    expect(cache.currentWindow).toBe(4);
    const f = await cache.open();
    sums.set(f, 0);
    await seen(await cache.bindPrefill(f, 2), () => 9);
    await seen(await cache.bindDecode([f]), () => 1);
    cache.releaseSnapshot(snapshot);
    await expect(cache.open({ snapshot })).rejects.toMatchObject({ code: 'INTERNAL' });
  });

  it('refuses positions past the capacity with PROMPT_TOO_LONG', async () => {
    const cache = new HostKvCache({ spec: SPEC, block: 4 });
    const a = await cache.open();
    const error = await cache.bindPrefill(a, 21).catch((e: unknown) => e);
    expect(isVistyleError(error, 'PROMPT_TOO_LONG')).toBe(true);
    await run(cache, await cache.bindPrefill(a, 20), () => 1);
    await expect(cache.bindDecode([a])).rejects.toMatchObject({ code: 'PROMPT_TOO_LONG' });
  });

  it('moves float16 rows to another window bit for bit', async () => {
    const spec: KvCacheSpec = { ...SPEC, dtype: 'float16' };
    const cache = new HostKvCache({ spec, block: 2 });
    const a = await cache.open();
    const b = await cache.open();
    const write = async (seq: number, T: number, bits: (p: number) => number): Promise<void> => {
      const binding = await cache.bindPrefill(seq, T);
      const at = cache.length(seq);
      const k = new Uint16Array(perPosition * T);
      const v = new Uint16Array(perPosition * T);
      for (let h = 0; h < KV_HEADS; h++) {
        for (let d = 0; d < HEAD_DIM; d++) for (let t = 0; t < T; t++) k[(h * HEAD_DIM + d) * T + t] = bits(at + t) + h * 16 + d;
        for (let t = 0; t < T; t++) for (let d = 0; d < HEAD_DIM; d++) v[(h * T + t) * HEAD_DIM + d] = bits(at + t) + 0x100 + h * 16 + d;
      }
      cache.commit(binding, binding.feeds, {
        'key.0': new ort.Tensor('float16', k, [1, KV_HEADS, HEAD_DIM, T]),
        'value.0': new ort.Tensor('float16', v, [1, KV_HEADS, T, HEAD_DIM]),
      });
    };
    await write(a, 3, (p) => 0x3c00 + p * 0x40);
    await write(b, 1, (p) => 0x4000 + p * 0x40);
    await write(b, 7, (p) => 0x4000 + p * 0x40); // grows the window 4 -> 8 with a's data in it
    const check = async (seq: number, base: number, n: number): Promise<void> => {
      const snap = (await cache.snapshot(seq)) as unknown as { keys: Uint16Array[]; values: Uint16Array[] };
      for (let h = 0; h < KV_HEADS; h++) {
        for (let p = 0; p < n; p++) {
          for (let d = 0; d < HEAD_DIM; d++) {
            expect(snap.keys[0]![(h * HEAD_DIM + d) * n + p]).toBe(base + p * 0x40 + h * 16 + d);
            expect(snap.values[0]![(h * n + p) * HEAD_DIM + d]).toBe(base + p * 0x40 + 0x100 + h * 16 + d);
          }
        }
      }
    };
    await check(a, 0x3c00, 3);
    await check(b, 0x4000, 8);
    await cache.close([b]);
    await check(a, 0x3c00, 3);
  });
});
