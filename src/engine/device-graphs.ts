// Small ONNX graphs that move KV-cache tensors around on the WebGPU device, built at engine start.
//
// onnxruntime-node gives JavaScript no way to touch a `gpu-buffer` tensor: `getData()` aborts the
// process (the binding's download is "not implemented" and throws through C++), there is no
// copy, slice or reshape, and a pre-allocated gpu-buffer output is not written in place. What
// does work (measured on lavapipe with 1.30): any session on the same device accepts a
// gpu-buffer tensor that another session produced, and `preferredOutputLocation` keeps its
// outputs on the device. So every device-side operation the cache needs is a graph:
//   upload    host tensor -> device (Identity; LoRA weights, once per adapter)
//   download  device tensor -> host (Identity with a CPU output; tests and diagnostics only)
//   zeros     an empty cache buffer of any shape (Expand of a zero scalar), nothing uploaded
//   concatRows  a prefilled row joins the decode batch (Concat along the batch axis)
//   gatherRows  the rows that stay, in order, when some leave (Gather along the batch axis)
//   takeRow   row r of a batch, first n positions (Slice): a prefix snapshot, sized to n
//   widen     a snapshot padded back to the capacity (Concat with zeros): restored into a row
// Each graph handles all 2 x layers cache tensors in one run. Graphs are created lazily per
// (operation, dtype, count) and live as long as the DeviceGraphs object.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../models/onnx/builder.js';
import { DataType, type DataTypeId } from '../../models/onnx/schema.js';
import { VistyleError } from '../errors.js';

export type DeviceDtype = 'float32' | 'float16';

const ONNX_TYPE: Record<DeviceDtype, DataTypeId> = { float32: DataType.FLOAT, float16: DataType.FLOAT16 };

/** The device's session options: WebGPU with the CPU provider for shape arithmetic. */
export interface DeviceSessionFactory {
  create(path: string, outputLocation: 'cpu' | 'gpu-buffer'): Promise<ort.InferenceSession>;
}

export function webgpuSessionFactory(): DeviceSessionFactory {
  return {
    create: (path, outputLocation) =>
      ort.InferenceSession.create(path, {
        executionProviders: [{ name: 'webgpu' }, 'cpu'],
        graphOptimizationLevel: 'all',
        preferredOutputLocation: outputLocation,
        logSeverityLevel: 3,
      }),
  };
}

export function isDeviceTensor(tensor: ort.Tensor): boolean {
  return tensor.location === 'gpu-buffer';
}

export class DeviceGraphs {
  private readonly dir = mkdtempSync(join(tmpdir(), 'vistyle-device-graphs-'));
  private readonly sessions = new Map<string, Promise<ort.InferenceSession>>();
  private counter = 0;
  private released = false;

  constructor(private readonly factory: DeviceSessionFactory = webgpuSessionFactory()) {}

  private session(key: string, outputLocation: 'cpu' | 'gpu-buffer', build: (g: GraphBuilder) => void): Promise<ort.InferenceSession> {
    if (this.released) return Promise.reject(new VistyleError('INTERNAL', 'device graphs used after release()'));
    let session = this.sessions.get(key);
    if (!session) {
      const g = new GraphBuilder(`vistyle_device_${key.replace(/\W+/g, '_')}`);
      build(g);
      const path = join(this.dir, `g${this.counter++}.onnx`);
      g.save(path);
      session = this.factory.create(path, outputLocation).finally(() => rmSync(path, { force: true }));
      this.sessions.set(key, session);
      session.catch(() => this.sessions.delete(key));
    }
    return session;
  }

  /** Copies host tensors to the device (one run for all of them). */
  async upload(tensors: readonly ort.Tensor[]): Promise<ort.Tensor[]> {
    return this.identity(tensors, 'gpu-buffer');
  }

  /** Copies device tensors to host memory. Never call getData() on a gpu-buffer tensor instead. */
  async download(tensors: readonly ort.Tensor[]): Promise<ort.Tensor[]> {
    return this.identity(tensors, 'cpu');
  }

  private async identity(tensors: readonly ort.Tensor[], to: 'cpu' | 'gpu-buffer'): Promise<ort.Tensor[]> {
    if (tensors.length === 0) return [];
    const types = tensors.map((t) => dtypeOf(t));
    const key = `identity:${to}:${types.join(',')}:${tensors.map((t) => t.dims.length).join(',')}`;
    const session = await this.session(key, to, (g) => {
      tensors.forEach((t, i) => {
        const dims = t.dims.map((_, d) => `d${i}_${d}`);
        const x = g.input(`x.${i}`, ONNX_TYPE[types[i]!], dims);
        g.output(g.node('Identity', [x]), `y.${i}`, ONNX_TYPE[types[i]!], dims);
      });
    });
    const feeds: Record<string, ort.Tensor> = {};
    tensors.forEach((t, i) => (feeds[`x.${i}`] = t));
    const out = await session.run(feeds);
    return tensors.map((_, i) => out[`y.${i}`]!);
  }

  /** `count` zero-filled device tensors of these dims, made on the device (nothing uploaded). */
  async zeros(dtype: DeviceDtype, dims: readonly number[], count: number): Promise<ort.Tensor[]> {
    const key = `zeros:${dtype}:${dims.length}:${count}`;
    const session = await this.session(key, 'gpu-buffer', (g) => {
      const shape = g.input('shape', DataType.INT64, [dims.length]);
      const zero = dtype === 'float16' ? g.node('Cast', [g.f32(0)], { to: { kind: 'int', value: DataType.FLOAT16 } }) : g.f32(0);
      for (let i = 0; i < count; i++) {
        // one Expand per output: each output must be its own buffer
        g.output(g.node('Expand', [zero, shape]), `y.${i}`, ONNX_TYPE[dtype], dims.map((_, d) => `d${d}`));
      }
    });
    const out = await session.run({ shape: new ort.Tensor('int64', BigInt64Array.from(dims, (d) => BigInt(d)), [dims.length]) });
    return Array.from({ length: count }, (_, i) => out[`y.${i}`]!);
  }

  /** For each j: batch[j] [S,...] with rows[j] [R,...] appended along axis 0 ([S+R,...]). */
  async concatRows(batch: readonly ort.Tensor[], rows: readonly ort.Tensor[]): Promise<ort.Tensor[]> {
    if (batch.length !== rows.length) throw new VistyleError('INTERNAL', 'concatRows: one row tensor per batch tensor');
    if (batch.length === 0) return [];
    const dtype = dtypeOf(batch[0]!);
    const rank = batch[0]!.dims.length;
    const key = `concatRows:${dtype}:${rank}:${batch.length}`;
    const session = await this.session(key, 'gpu-buffer', (g) => {
      const tail = Array.from({ length: rank - 1 }, (_, d) => `d${d}`);
      for (let j = 0; j < batch.length; j++) {
        const b = g.input(`batch.${j}`, ONNX_TYPE[dtype], ['slots', ...tail]);
        const r = g.input(`row.${j}`, ONNX_TYPE[dtype], ['rows', ...tail]);
        g.output(g.node('Concat', [b, r], { axis: { kind: 'int', value: 0 } }), `y.${j}`, ONNX_TYPE[dtype], ['total', ...tail]);
      }
    });
    const feeds: Record<string, ort.Tensor> = {};
    batch.forEach((t, j) => {
      feeds[`batch.${j}`] = t;
      feeds[`row.${j}`] = rows[j]!;
    });
    const out = await session.run(feeds);
    return batch.map((_, j) => out[`y.${j}`]!);
  }

  /** For each j: the rows `indices` of batch[j] (axis 0), in that order. `indices` is not empty. */
  async gatherRows(batch: readonly ort.Tensor[], indices: readonly number[]): Promise<ort.Tensor[]> {
    if (indices.length === 0) throw new VistyleError('INTERNAL', 'gatherRows: no rows (a zero-size tensor would crash the WebGPU provider)');
    if (batch.length === 0) return [];
    const dtype = dtypeOf(batch[0]!);
    const rank = batch[0]!.dims.length;
    const key = `gatherRows:${dtype}:${rank}:${batch.length}`;
    const session = await this.session(key, 'gpu-buffer', (g) => {
      const idx = g.input('indices', DataType.INT64, ['rows']);
      const tail = Array.from({ length: rank - 1 }, (_, d) => `d${d}`);
      for (let j = 0; j < batch.length; j++) {
        const b = g.input(`batch.${j}`, ONNX_TYPE[dtype], ['slots', ...tail]);
        g.output(g.node('Gather', [b, idx], { axis: { kind: 'int', value: 0 } }), `y.${j}`, ONNX_TYPE[dtype], ['rows', ...tail]);
      }
    });
    const feeds: Record<string, ort.Tensor> = { indices: new ort.Tensor('int64', BigInt64Array.from(indices, (i) => BigInt(i)), [indices.length]) };
    batch.forEach((t, j) => (feeds[`batch.${j}`] = t));
    const out = await session.run(feeds);
    return batch.map((_, j) => out[`y.${j}`]!);
  }

  /** Row `index`, positions [0, length) along axis 2, of each [S,kvH,C,hd] tensor: [1,kvH,length,hd]. */
  async takeRow(batch: readonly ort.Tensor[], index: number, length: number): Promise<ort.Tensor[]> {
    if (batch.length === 0) return [];
    const dtype = dtypeOf(batch[0]!);
    const key = `takeRow:${dtype}:${batch.length}`;
    const session = await this.session(key, 'gpu-buffer', (g) => {
      const starts = g.input('starts', DataType.INT64, [2]);
      const ends = g.input('ends', DataType.INT64, [2]);
      for (let j = 0; j < batch.length; j++) {
        const b = g.input(`batch.${j}`, ONNX_TYPE[dtype], ['slots', 'heads', 'capacity', 'hd']);
        g.output(g.node('Slice', [b, starts, ends, g.i64([0, 2])]), `y.${j}`, ONNX_TYPE[dtype], [1, 'heads', 'length', 'hd']);
      }
    });
    const feeds: Record<string, ort.Tensor> = {
      starts: new ort.Tensor('int64', BigInt64Array.from([BigInt(index), 0n]), [2]),
      ends: new ort.Tensor('int64', BigInt64Array.from([BigInt(index + 1), BigInt(length)]), [2]),
    };
    batch.forEach((t, j) => (feeds[`batch.${j}`] = t));
    const out = await session.run(feeds);
    return batch.map((_, j) => out[`y.${j}`]!);
  }

  /**
   * The first `length` positions (axis 2) of each [1,kvH,n,hd] tensor, padded with zeros to
   * [1,kvH,capacity,hd]: a snapshot restored into a sequence's own buffers.
   */
  async widen(snapshot: readonly ort.Tensor[], capacity: number, length = snapshot[0]?.dims[2] ?? 0): Promise<ort.Tensor[]> {
    if (snapshot.length === 0) return [];
    const dtype = dtypeOf(snapshot[0]!);
    const [one, heads, n, hd] = snapshot[0]!.dims as [number, number, number, number];
    if (length < 1 || length > n || n > capacity) throw new VistyleError('INTERNAL', `widen: ${length} of ${n} positions into ${capacity}`);
    if (length === capacity) return this.identity(snapshot, 'gpu-buffer');
    const key = `widen:${dtype}:${snapshot.length}`;
    const session = await this.session(key, 'gpu-buffer', (g) => {
      const end = g.input('length', DataType.INT64, [1]);
      const padShape = g.input('pad_shape', DataType.INT64, [4]);
      const zero = dtype === 'float16' ? g.node('Cast', [g.f32(0)], { to: { kind: 'int', value: DataType.FLOAT16 } }) : g.f32(0);
      const pad = g.node('Expand', [zero, padShape]);
      for (let j = 0; j < snapshot.length; j++) {
        const s = g.input(`snap.${j}`, ONNX_TYPE[dtype], [1, 'heads', 'n', 'hd']);
        const kept = g.node('Slice', [s, g.i64([0]), end, g.i64([2])]);
        g.output(g.node('Concat', [kept, pad], { axis: { kind: 'int', value: 2 } }), `y.${j}`, ONNX_TYPE[dtype], [1, 'heads', 'capacity', 'hd']);
      }
    });
    const feeds: Record<string, ort.Tensor> = {
      length: new ort.Tensor('int64', BigInt64Array.from([BigInt(length)]), [1]),
      pad_shape: new ort.Tensor('int64', BigInt64Array.from([one, heads, capacity - length, hd], (d) => BigInt(d)), [4]),
    };
    snapshot.forEach((t, j) => (feeds[`snap.${j}`] = t));
    const out = await session.run(feeds);
    return snapshot.map((_, j) => out[`y.${j}`]!);
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of sessions) {
      try {
        await (await s).release();
      } catch {
        // a session that failed to load has nothing to release
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function dtypeOf(tensor: ort.Tensor): DeviceDtype {
  if (tensor.type === 'float32' || tensor.type === 'float16') return tensor.type;
  throw new VistyleError('INTERNAL', `device graphs move float tensors, got ${tensor.type}`);
}

/** Frees device tensors now instead of whenever the garbage collector runs. */
export function disposeAll(tensors: Iterable<ort.Tensor | undefined>): void {
  for (const t of tensors) if (t && isDeviceTensor(t)) t.dispose();
}
