// What this machine can do, measured through onnxruntime itself with the bench's thread count:
// memory read bandwidth (ReduceSum over a buffer far larger than any cache, fed zero-copy) and
// float32 matrix-multiply throughput (prefill- and vision-sized MatMuls, prepacked weights). The
// first bounds decoding (every weight and the whole KV cache are read once per step), the second
// the vision tower and the prefill of a float32 build (quantized builds multiply in int8 and can
// beat it). Printed as one JSON line (MachineFigures).
//   node dist/bench/bandwidth.js [--threads N] [--mib 1024]
// Host figures (CPU provider): on a GPU the device's own bandwidth is not measured here.
import * as ort from 'onnxruntime-node';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphBuilder, attr } from '../models/onnx/builder.js';
import { DataType } from '../models/onnx/schema.js';
import { arg, cpuSessionOptions } from './args.js';

export interface MachineFigures {
  /** Best read bandwidth over the repeats, bytes per second. */
  readBytesPerSecond: number;
  readBufferBytes: number;
  /** Best float32 MatMul rate, floating-point operations per second (2·M·K·N per product). */
  matmulFlops: number;
  matmulShape: [number, number, number];
  threads: number;
}

function graph(path: string, build: (g: GraphBuilder) => void): void {
  const g = new GraphBuilder('machine');
  build(g);
  g.save(path);
}

async function best(run: () => Promise<unknown>, repeats: number): Promise<number> {
  let fastest = Infinity;
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    await run();
    fastest = Math.min(fastest, performance.now() - t);
  }
  return fastest / 1000;
}

export async function measureMachine(threads: number, mib: number): Promise<MachineFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'vistyle-machine-'));
  try {
    const options = cpuSessionOptions(threads);
    const sumPath = join(dir, 'sum.onnx');
    graph(sumPath, (g) => {
      const x = g.input('x', DataType.FLOAT, ['n']);
      g.output(g.node('ReduceSum', [x], { keepdims: attr.int(0) }), 'y', DataType.FLOAT, []);
    });
    const n = Math.floor((mib * 2 ** 20) / 4);
    const buffer = new Float32Array(n).fill(1);
    const sum = await ort.InferenceSession.create(sumPath, options);
    const x = new ort.Tensor('float32', buffer, [n]);
    await sum.run({ x });
    const readSeconds = await best(() => sum.run({ x }), 7);
    await sum.release();

    // The weight is an initializer, as in the model's graphs, so onnxruntime prepacks it once; an
    // input weight would be repacked on every run and understate the rate. Two shapes: the
    // decoder's prefill MLP and the vision tower's; the faster one is the rate.
    let mmFlops = 0;
    let mmShape: [number, number, number] = [0, 0, 0];
    for (const [M, K, N] of [[800, 1024, 2816], [729, 1152, 4304]] as Array<[number, number, number]>) {
      const mmPath = join(dir, `mm-${M}.onnx`);
      graph(mmPath, (g) => {
        const a = g.input('a', DataType.FLOAT, [M, K]);
        const w = g.initializer('w', DataType.FLOAT, [K, N], () => Float32Array.from({ length: K * N }, (_, i) => ((i * 7919) % 1000) / 1000 - 0.5));
        g.output(g.node('MatMul', [a, w]), 'c', DataType.FLOAT, [M, N]);
      });
      const mm = await ort.InferenceSession.create(mmPath, options);
      const feeds = { a: new ort.Tensor('float32', Float32Array.from({ length: M * K }, (_, i) => ((i * 104729) % 1000) / 1000 - 0.5), [M, K]) };
      await mm.run(feeds);
      const flops = (2 * M * K * N) / (await best(() => mm.run(feeds), 7));
      await mm.release();
      if (flops > mmFlops) {
        mmFlops = flops;
        mmShape = [M, K, N];
      }
    }
    return {
      readBytesPerSecond: buffer.byteLength / readSeconds,
      readBufferBytes: buffer.byteLength,
      matmulFlops: mmFlops,
      matmulShape: mmShape,
      threads,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && /bandwidth\.(ts|js)$/.test(process.argv[1])) {
  const figures = await measureMachine(Number(arg('threads', '2')), Number(arg('mib', '1024')));
  process.stdout.write(`${JSON.stringify(figures)}\n`);
}
