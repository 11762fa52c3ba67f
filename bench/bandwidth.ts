// What this machine can do, measured through onnxruntime itself with the bench's thread count:
// memory read bandwidth (ReduceSum over a buffer far larger than any cache, fed zero-copy) and
// float32 matrix-multiply throughput (one prefill-sized MatMul). The first bounds decoding
// (every weight and the whole KV cache are read once per step), the second bounds the vision
// tower and the prefill. Printed as one JSON line (MachineFigures).
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

    const [M, K, N] = [800, 1024, 2816];
    const mmPath = join(dir, 'mm.onnx');
    graph(mmPath, (g) => {
      const a = g.input('a', DataType.FLOAT, [M, K]);
      const b = g.input('b', DataType.FLOAT, [K, N]);
      g.output(g.node('MatMul', [a, b]), 'c', DataType.FLOAT, [M, N]);
    });
    const mm = await ort.InferenceSession.create(mmPath, options);
    const feeds = {
      a: new ort.Tensor('float32', new Float32Array(M * K).fill(0.5), [M, K]),
      b: new ort.Tensor('float32', new Float32Array(K * N).fill(0.25), [K, N]),
    };
    await mm.run(feeds);
    const mmSeconds = await best(() => mm.run(feeds), 5);
    await mm.release();
    return {
      readBytesPerSecond: buffer.byteLength / readSeconds,
      readBufferBytes: buffer.byteLength,
      matmulFlops: (2 * M * K * N) / mmSeconds,
      matmulShape: [M, K, N],
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
