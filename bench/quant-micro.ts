// Micro-measurement for choosing MatMulNBits settings on this machine: graphs of the decoder's
// linear layers at the real sizes (per layer q/k/v/o 1024x1024, gate/up 2816x1024, down
// 1024x2816; no attention), plus the 152000x1024 lm_head on the last position, built as fp32
// MatMul and as MatMulNBits with several bits / block sizes / accuracy levels. Every candidate
// runs in turn in each round (so load from other processes hits them alike); the medians and the
// ratios to fp32 are printed. Not part of `npm run bench`; run it by hand:
//   npx tsx bench/quant-micro.ts [--layers 4] [--rounds 7] [--tokens 1,800] [--threads 2]
//                                [--candidates fp32,int4-32-4,int4-32-1,int8-32-4,int8-32-1]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { Checkpoint } from '../models/checkpoint/reader.js';
import { Rng } from '../models/checkpoint/rng.js';
import { activation, makeContext, weightMatMul } from '../models/graphs/common.js';
import type { QuantSpec } from '../models/graphs/quantize.js';
import { attr, GraphBuilder } from '../models/onnx/builder.js';
import { DataType } from '../models/onnx/schema.js';

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const D = 1024;
const F = 2816;
const VOCAB = 152000;

/** A stand-in checkpoint: random [out, in] weights by name, generated when read. */
function fakeCheckpoint(shapes: Map<string, [number, number]>): Checkpoint {
  const tensors = {
    shape: (name: string) => shapes.get(name)!,
    read: (name: string) => {
      const [o, i] = shapes.get(name)!;
      return new Rng(3, name).normalArray(o * i, 0.02);
    },
    dtype: () => 'F32',
  };
  return { tensors } as unknown as Checkpoint;
}

function parseCandidate(name: string): QuantSpec | null {
  if (name === 'fp32') return null;
  const m = /^int(4|8)-(\d+)-(\d)$/.exec(name);
  if (!m) throw new Error(`candidate ${name}: expected fp32 or int{4,8}-BLOCK-LEVEL`);
  return { bits: Number(m[1]) as 4 | 8, blockSize: Number(m[2]), accuracyLevel: Number(m[3]) };
}

function buildGraph(path: string, layers: number, quant: QuantSpec | null): void {
  const shapes = new Map<string, [number, number]>();
  const g = new GraphBuilder('linears');
  const ctx = makeContext(g, fakeCheckpoint(shapes), 'fp32', 'decoder', new Set(), quant);
  const w = (name: string, out: number, inF: number): string => (shapes.set(name, [out, inF]), name);
  let x = g.input('x', DataType.FLOAT, [1, 'T', D]);
  for (let l = 0; l < layers; l++) {
    const p = `l${l}.`;
    const q = weightMatMul(ctx, x, w(`${p}q`, D, D));
    const k = weightMatMul(ctx, x, w(`${p}k`, D, D));
    const v = weightMatMul(ctx, x, w(`${p}v`, D, D));
    const o = weightMatMul(ctx, g.node('Add', [g.node('Add', [q, k]), v]), w(`${p}o`, D, D));
    const gate = activation(ctx, weightMatMul(ctx, o, w(`${p}gate`, F, D)), 'silu');
    const up = weightMatMul(ctx, o, w(`${p}up`, F, D));
    x = g.node('Add', [x, weightMatMul(ctx, g.node('Mul', [gate, up]), w(`${p}down`, D, F))]);
  }
  const last = g.node('Slice', [x, g.i64([-1]), g.i64([Number.MAX_SAFE_INTEGER]), g.i64([1])]);
  const logits = weightMatMul(ctx, last, w('lm_head', VOCAB, D));
  g.output(g.node('ReduceMax', [logits], { keepdims: attr.int(0) }), 'y', DataType.FLOAT, []);
  g.save(path);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const layers = Number(arg('layers', '4'));
  const rounds = Number(arg('rounds', '7'));
  const threads = Number(arg('threads', '2'));
  const tokens = arg('tokens', '1,800').split(',').map(Number);
  const names = arg('candidates', 'fp32,int4-32-4,int4-32-1,int4-128-4,int8-32-4,int8-32-1').split(',');
  const dir = mkdtempSync(join(tmpdir(), 'vistyle-quant-micro-'));
  try {
    const sessions: Array<{ name: string; session: ort.InferenceSession; times: Map<number, number[]> }> = [];
    for (const name of names) {
      const path = join(dir, `${name}.onnx`);
      buildGraph(path, layers, parseCandidate(name));
      const session = await ort.InferenceSession.create(path, { intraOpNumThreads: threads, interOpNumThreads: 1, logSeverityLevel: 3 });
      sessions.push({ name, session, times: new Map(tokens.map((t) => [t, []])) });
    }
    const inputs = new Map(tokens.map((T) => [T, new ort.Tensor('float32', new Rng(9, `x${T}`).normalArray(T * D, 1), [1, T, D])]));
    for (let round = 0; round <= rounds; round++) {
      const order = round % 2 === 0 ? sessions : [...sessions].reverse();
      for (const s of order) {
        for (const T of tokens) {
          const reps = T === 1 ? 5 : 1;
          const t0 = performance.now();
          for (let r = 0; r < reps; r++) await s.session.run({ x: inputs.get(T)! });
          if (round > 0) s.times.get(T)!.push((performance.now() - t0) / reps); // round 0 warms up
        }
      }
    }
    const base = sessions[0]!;
    for (const T of tokens) {
      process.stdout.write(`\n${layers} decoder layers' linears + lm_head, ${T} token${T === 1 ? '' : 's'}, ${threads} threads, median of ${rounds} rounds\n`);
      for (const s of sessions) {
        const ms = median(s.times.get(T)!);
        const ratio = ms / median(base.times.get(T)!);
        process.stdout.write(`  ${s.name.padEnd(12)} ${ms.toFixed(2).padStart(9)} ms   x${ratio.toFixed(2)} of ${base.name}\n`);
      }
    }
    for (const s of sessions) await s.session.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
