// The TS-owned KV cache against a real onnxruntime session: a hand-made graph that echoes its new
// rows as `present.<i>` and sums everything it was given as `past.<i>` plus the new rows. If the
// past views were wrong (stale, copied from the wrong offset, not the filled prefix) the sums
// would not match the values appended so far.
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { HostKvCache, kvCacheBytes } from '../../src/engine/kv-cache.js';
import { isVistyleError } from '../../src/errors.js';
import { DataType, ModelProto } from '../../models/onnx/schema.js';

const KV_HEADS = 2;
const HEAD_DIM = 3;
const ROW = 2 * 1 * KV_HEADS * HEAD_DIM;

function valueInfo(name: string, dims: Array<number | string>, elemType: number) {
  return {
    name,
    type: { tensor_type: { elem_type: elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) } } },
  };
}

/** past.<i> [P,2,1,kvH,hd], new.<i> [T,2,1,kvH,hd] -> present.<i> = new.<i>, total.<i> = sum(past ++ new) (float32). */
async function echoDecoder(layers: number, elemType: number): Promise<ort.InferenceSession> {
  const node: unknown[] = [];
  const input: unknown[] = [];
  const output: unknown[] = [];
  for (let i = 0; i < layers; i++) {
    input.push(valueInfo(`past.${i}`, ['P', 2, 1, KV_HEADS, HEAD_DIM], elemType), valueInfo(`new.${i}`, ['T', 2, 1, KV_HEADS, HEAD_DIM], elemType));
    node.push(
      { op_type: 'Identity', input: [`new.${i}`], output: [`present.${i}`] },
      { op_type: 'Concat', input: [`past.${i}`, `new.${i}`], output: [`all.${i}`], attribute: [{ name: 'axis', type: 2, i: 0 }] },
      { op_type: 'Cast', input: [`all.${i}`], output: [`all32.${i}`], attribute: [{ name: 'to', type: 2, i: DataType.FLOAT }] },
      { op_type: 'ReduceSum', input: [`all32.${i}`], output: [`total.${i}`], attribute: [{ name: 'keepdims', type: 2, i: 0 }] },
    );
    output.push(valueInfo(`present.${i}`, ['T', 2, 1, KV_HEADS, HEAD_DIM], elemType), valueInfo(`total.${i}`, [], DataType.FLOAT));
  }
  const model = { ir_version: 8, opset_import: [{ domain: '', version: 17 }], producer_name: 'kv-cache-test', graph: { name: 'echo', node, input, output } };
  const bytes = ModelProto.encode(ModelProto.fromObject(model)).finish();
  return ort.InferenceSession.create(bytes, { intraOpNumThreads: 1, interOpNumThreads: 1 });
}

function rows(count: number, start: number): Float32Array {
  return Float32Array.from({ length: count * ROW }, (_, k) => start + k);
}

describe('HostKvCache', () => {
  it('feeds the filled prefix as a zero-copy view and appends only the new rows', async () => {
    const layers = 2;
    const session = await echoDecoder(layers, DataType.FLOAT);
    const cache = new HostKvCache({ numLayers: layers, batch: 1, numKvHeads: KV_HEADS, headDim: HEAD_DIM, capacity: 32, dtype: 'float32' });
    expect(kvCacheBytes(cache.shape)).toBe(layers * 32 * ROW * 4);

    const expectedSum = [0, 0];
    let next = 1;
    let firstBuffer: ArrayBufferLike | undefined;
    // A prefill of 5 rows, then single-row steps.
    for (const newRows of [5, 1, 1, 1, 3, 1]) {
      const feeds: Record<string, ort.Tensor> = cache.pastFeeds();
      for (let i = 0; i < layers; i++) {
        const past = feeds[`past.${i}`]!;
        expect(past.dims).toEqual([cache.length, 2, 1, KV_HEADS, HEAD_DIM]);
        const view = past.data as Float32Array;
        // The whole preallocated buffer stays behind the view: nothing was copied out of it.
        expect(view.buffer.byteLength).toBe(32 * ROW * 4);
        expect(view.byteOffset).toBe(0);
        expect(view.length).toBe(cache.length * ROW);
        if (i === 0) {
          firstBuffer ??= view.buffer;
          expect(view.buffer).toBe(firstBuffer);
        }
        const fresh = rows(newRows, next * (i + 1));
        feeds[`new.${i}`] = new ort.Tensor('float32', fresh, [newRows, 2, 1, KV_HEADS, HEAD_DIM]);
        expectedSum[i]! += fresh.reduce((a, b) => a + b, 0);
      }
      const out = await session.run(feeds);
      for (let i = 0; i < layers; i++) expect((out[`total.${i}`]!.data as Float32Array)[0]).toBeCloseTo(expectedSum[i]!, 0);
      const before = cache.length;
      cache.append(out);
      expect(cache.length).toBe(before + newRows);
      next += 1000;
    }
    expect(cache.length).toBe(12);
    expect(cache.remaining).toBe(20);
    cache.reset();
    expect(cache.length).toBe(0);
    expect(cache.pastFeeds()['past.0']!.dims[0]).toBe(0);
    await session.release();
  });

  it('refuses to grow past its capacity with PROMPT_TOO_LONG', () => {
    const cache = new HostKvCache({ numLayers: 1, batch: 1, numKvHeads: KV_HEADS, headDim: HEAD_DIM, capacity: 4, dtype: 'float32' });
    const present = (t: number) => ({ 'present.0': new ort.Tensor('float32', rows(t, 0), [t, 2, 1, KV_HEADS, HEAD_DIM]) });
    cache.append(present(3));
    let error: unknown;
    try {
      cache.append(present(2));
    } catch (e) {
      error = e;
    }
    expect(isVistyleError(error, 'PROMPT_TOO_LONG')).toBe(true);
    expect(cache.length).toBe(3);
  });

  it('rejects a present tensor of the wrong shape or dtype', () => {
    const cache = new HostKvCache({ numLayers: 1, batch: 1, numKvHeads: KV_HEADS, headDim: HEAD_DIM, capacity: 4, dtype: 'float32' });
    expect(() => cache.append({ 'present.0': new ort.Tensor('float32', new Float32Array(5), [1, 5]) })).toThrow(/shape/);
    expect(() => cache.append({ 'present.0': new ort.Tensor('float16', new Uint16Array(ROW), [1, 2, 1, KV_HEADS, HEAD_DIM]) })).toThrow(/float16/);
    expect(() => cache.append({})).toThrow(/present\.0/);
  });

  it('keeps a float16 cache as Uint16Array and round-trips it through onnxruntime', async () => {
    const session = await echoDecoder(1, DataType.FLOAT16);
    const cache = new HostKvCache({ numLayers: 1, batch: 1, numKvHeads: KV_HEADS, headDim: HEAD_DIM, capacity: 8, dtype: 'float16' });
    // float16 bit patterns of 1.0 (0x3c00) and 2.0 (0x4000).
    const one = new Uint16Array(ROW).fill(0x3c00);
    const two = new Uint16Array(2 * ROW).fill(0x4000);
    let out = await session.run({ ...cache.pastFeeds(), 'new.0': new ort.Tensor('float16', one, [1, 2, 1, KV_HEADS, HEAD_DIM]) });
    cache.append(out);
    out = await session.run({ ...cache.pastFeeds(), 'new.0': new ort.Tensor('float16', two, [2, 2, 1, KV_HEADS, HEAD_DIM]) });
    expect((out['total.0']!.data as Float32Array)[0]).toBe(ROW * 1 + 2 * ROW * 2);
    cache.append(out);
    const past = cache.pastFeeds()['past.0']!;
    expect(past.type).toBe('float16');
    expect(past.data).toBeInstanceOf(Uint16Array);
    expect(Array.from((past.data as Uint16Array).subarray(0, ROW + 1))).toEqual([...Array(ROW).fill(0x3c00), 0x4000]);
    await session.release();
  });

  it('lets onnxruntime write present rows straight into the cache through pre-allocated fetches', async () => {
    const session = await echoDecoder(1, DataType.FLOAT);
    const cache = new HostKvCache({ numLayers: 1, batch: 1, numKvHeads: KV_HEADS, headDim: HEAD_DIM, capacity: 8, dtype: 'float32' });
    let expected = 0;
    for (const t of [3, 1, 2]) {
      const fresh = rows(t, 100 * (cache.length + 1));
      expected += fresh.reduce((a, b) => a + b, 0);
      const fetches = { ...cache.presentFetches(t), 'total.0': null };
      const out = await session.run({ ...cache.pastFeeds(), 'new.0': new ort.Tensor('float32', fresh, [t, 2, 1, KV_HEADS, HEAD_DIM]) }, fetches);
      expect((out['total.0']!.data as Float32Array)[0]).toBeCloseTo(expected, 0);
      cache.commit(t);
      const past = cache.pastFeeds()['past.0']!.data as Float32Array;
      expect(Array.from(past.subarray(past.length - t * ROW))).toEqual(Array.from(fresh));
    }
    expect(cache.length).toBe(6);
    expect(() => cache.presentFetches(3)).toThrow(/positions/);
    await session.release();
  });

  it('cannot be used after free()', () => {
    const cache = new HostKvCache({ numLayers: 1, batch: 1, numKvHeads: KV_HEADS, headDim: HEAD_DIM, capacity: 4, dtype: 'float32' });
    cache.free();
    expect(cache.length).toBe(0);
    expect(() => cache.pastFeeds()).toThrow(/free/);
  });
});
