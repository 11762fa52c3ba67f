// A manual micro-benchmark (not a test; docs/engine.md, "Decoder layout"): ONE Qwen2 decoder layer
// at the real model's dims (hidden 1024, 16 q/kv heads of 64, MLP 2816), random fp32 weights, one
// decode step (T=1) over P cached positions for B rows, with the attention over the past laid
// out five ways, alternated in one run (the machine is shared: compare the ratios):
//   A concat        the model-format-1 graph: past [P,2,B,kvH,hd], Concat + Gather + Transpose per step
//   B window        keys [B,kvH,hd,W] and values [B,kvH,W,hd] read in place, past and new attention
//                   parts joined at the softmax (the chosen layout, models/graphs/decoder.ts)
//   C gqa           com.microsoft GroupQueryAttention, past [B,kvH,P,hd] (it copies past into present)
//   D window fusedT like B with keys [B,kvH,W,hd] and com.microsoft FusedMatMul(transB)
//   E weights only  the layer's projections and MLP without attention over the past (the floor)
//   P=800 B=4 THREADS=2 REPS=21 npx tsx tests/engine/support/attention-layout-bench.ts
import * as ort from 'onnxruntime-node';
import { GraphBuilder, attr } from '../../../models/onnx/builder.js';
import { DataType } from '../../../models/onnx/schema.js';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

const D = 1024, H = 16, kvH = 16, hd = 64, F = 2816;
const F32 = DataType.FLOAT;
const rnd = (n: number, s = 0.02) => { const a = new Float32Array(n); let x = 1; for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) >>> 0; a[i] = ((x / 4294967296) - 0.5) * s; } return a; };
const dir = mkdtempSync(join(tmpdir(), 'lb-'));

function common(g: GraphBuilder) {
  const w = (name: string, i: number, o: number) => g.initializer(name, F32, [i, o], () => rnd(i * o));
  const b = (name: string, o: number) => g.initializer(name, F32, [o], () => rnd(o));
  const lin = (x: string, name: string, i: number, o: number, bias: boolean) => { let y = g.node('MatMul', [x, w(name, i, o)]); if (bias) y = g.node('Add', [y, b(name + '.b', o)]); return y; };
  return { lin };
}
function mlp(g: GraphBuilder, lin: (x: string, name: string, i: number, o: number, bias: boolean) => string, x: string): string {
  const gate = lin(x, 'gate', D, F, false); const up = lin(x, 'up', D, F, false);
  const act = g.node('Mul', [gate, g.node('Sigmoid', [gate])]);
  return g.node('Add', [x, lin(g.node('Mul', [act, up]), 'down', F, D, false)]);
}

// A: current layout past [P,2,B,kvH,hd] -> Concat/Gather/Transpose
function buildA(): string {
  const g = new GraphBuilder('A'); const { lin } = common(g);
  const x = g.input('x', F32, ['B', 'T', D]);
  const past = g.input('past', F32, ['P', 2, 'B', kvH, hd]);
  const bias = g.input('bias', F32, ['B', 1, 'T', 'S']);
  const q = g.node('Reshape', [lin(x, 'q', D, H * hd, true), g.i64([0, 0, H, hd])]);
  const k = g.node('Reshape', [lin(x, 'k', D, kvH * hd, true), g.i64([0, 0, kvH, hd])]);
  const v = g.node('Reshape', [lin(x, 'v', D, kvH * hd, true), g.i64([0, 0, kvH, hd])]);
  const kv = g.node('Concat', [g.node('Unsqueeze', [k, g.i64([2])]), g.node('Unsqueeze', [v, g.i64([2])])], { axis: attr.int(2) });
  const present = g.node('Transpose', [kv], { perm: attr.ints([1, 2, 0, 3, 4]) });
  g.output(present, 'present', F32, ['T', 2, 'B', kvH, hd]);
  const all = g.node('Concat', [past, present], { axis: attr.int(0) });
  const keysT = g.node('Transpose', [g.node('Gather', [all, g.i64(0)], { axis: attr.int(1) })], { perm: attr.ints([1, 2, 3, 0]) });
  const values = g.node('Transpose', [g.node('Gather', [all, g.i64(1)], { axis: attr.int(1) })], { perm: attr.ints([1, 2, 0, 3]) });
  const qs = g.node('Transpose', [q], { perm: attr.ints([0, 2, 1, 3]) });
  const scores = g.node('Add', [g.node('MatMul', [qs, keysT]), bias]);
  const probs = g.node('Softmax', [scores], { axis: attr.int(-1) });
  const ctx = g.node('Reshape', [g.node('Transpose', [g.node('MatMul', [probs, values])], { perm: attr.ints([0, 2, 1, 3]) }), g.i64([0, 0, H * hd])]);
  const x1 = g.node('Add', [x, lin(ctx, 'o', H * hd, D, false)]);
  g.output(mlp(g, lin, x1), 'y', F32, ['B', 'T', D]);
  const p = join(dir, 'A.onnx'); g.save(p); return p;
}

// B: windowed split attention: pastKT [B,kvH,hd,W], pastV [B,kvH,W,hd], pastBias [B,1,1,W] (T=1)
function buildB(): string {
  const g = new GraphBuilder('B'); const { lin } = common(g);
  const x = g.input('x', F32, ['B', 'T', D]);
  const kT = g.input('past_kt', F32, ['B', kvH, hd, 'W']);
  const vv = g.input('past_v', F32, ['B', kvH, 'W', hd]);
  const pbias = g.input('pbias', F32, ['B', 1, 1, 'W']);
  const nbias = g.input('nbias', F32, ['B', 1, 'T', 'T']);
  const q = g.node('Transpose', [g.node('Reshape', [lin(x, 'q', D, H * hd, true), g.i64([0, 0, H, hd])])], { perm: attr.ints([0, 2, 1, 3]) }); // B,H,T,hd
  const k = g.node('Reshape', [lin(x, 'k', D, kvH * hd, true), g.i64([0, 0, kvH, hd])]); // B,T,kvH,hd
  const v = g.node('Reshape', [lin(x, 'v', D, kvH * hd, true), g.i64([0, 0, kvH, hd])]);
  g.output(k, 'new_k', F32, ['B', 'T', kvH, hd]); g.output(v, 'new_v', F32, ['B', 'T', kvH, hd]);
  const kNewT = g.node('Transpose', [k], { perm: attr.ints([0, 2, 3, 1]) }); // B,kvH,hd,T
  const vNew = g.node('Transpose', [v], { perm: attr.ints([0, 2, 1, 3]) }); // B,kvH,T,hd
  const sPast = g.node('Add', [g.node('MatMul', [q, kT]), pbias]);
  const sNew = g.node('Add', [g.node('MatMul', [q, kNewT]), nbias]);
  const scores = g.node('Concat', [sPast, sNew], { axis: attr.int(-1) });
  const probs = g.node('Softmax', [scores], { axis: attr.int(-1) });
  const W = g.node('Gather', [g.node('Shape', [kT]), g.i64(3)], { axis: attr.int(0) });
  const T = g.node('Gather', [g.node('Shape', [x]), g.i64(1)], { axis: attr.int(0) });
  const [pp, pn] = g.nodeMulti('Split', [probs, g.node('Concat', [g.node('Unsqueeze', [W, g.i64([0])]), g.node('Unsqueeze', [T, g.i64([0])])], { axis: attr.int(0) })], 2, { axis: attr.int(-1) }) as [string, string];
  const ctxh = g.node('Add', [g.node('MatMul', [pp, vv]), g.node('MatMul', [pn, vNew])]);
  const ctx = g.node('Reshape', [g.node('Transpose', [ctxh], { perm: attr.ints([0, 2, 1, 3]) }), g.i64([0, 0, H * hd])]);
  const x1 = g.node('Add', [x, lin(ctx, 'o', H * hd, D, false)]);
  g.output(mlp(g, lin, x1), 'y', F32, ['B', 'T', D]);
  const p = join(dir, 'B.onnx'); g.save(p); return p;
}

function buildD(): string {
  const g = new GraphBuilder('D'); const { lin } = common(g);
  const x = g.input('x', F32, ['B', 'T', D]);
  const kk = g.input('past_k', F32, ['B', kvH, 'W', hd]);
  const vv = g.input('past_v', F32, ['B', kvH, 'W', hd]);
  const pbias = g.input('pbias', F32, ['B', 1, 1, 'W']);
  const nbias = g.input('nbias', F32, ['B', 1, 'T', 'T']);
  const q = g.node('Transpose', [g.node('Reshape', [lin(x, 'q', D, H * hd, true), g.i64([0, 0, H, hd])])], { perm: attr.ints([0, 2, 1, 3]) });
  const k = g.node('Reshape', [lin(x, 'k', D, kvH * hd, true), g.i64([0, 0, kvH, hd])]);
  const v = g.node('Reshape', [lin(x, 'v', D, kvH * hd, true), g.i64([0, 0, kvH, hd])]);
  g.output(k, 'new_k', F32, ['B', 'T', kvH, hd]); g.output(v, 'new_v', F32, ['B', 'T', kvH, hd]);
  const kNew = g.node('Transpose', [k], { perm: attr.ints([0, 2, 1, 3]) });
  const vNew = g.node('Transpose', [v], { perm: attr.ints([0, 2, 1, 3]) });
  const sPast = g.node('Add', [g.node('FusedMatMul', [q, kk], { transB: attr.int(1) }, 'com.microsoft'), pbias]);
  const sNew = g.node('Add', [g.node('FusedMatMul', [q, kNew], { transB: attr.int(1) }, 'com.microsoft'), nbias]);
  const scores = g.node('Concat', [sPast, sNew], { axis: attr.int(-1) });
  const probs = g.node('Softmax', [scores], { axis: attr.int(-1) });
  const W = g.node('Gather', [g.node('Shape', [kk]), g.i64(2)], { axis: attr.int(0) });
  const T = g.node('Gather', [g.node('Shape', [x]), g.i64(1)], { axis: attr.int(0) });
  const [pp, pn] = g.nodeMulti('Split', [probs, g.node('Concat', [g.node('Unsqueeze', [W, g.i64([0])]), g.node('Unsqueeze', [T, g.i64([0])])], { axis: attr.int(0) })], 2, { axis: attr.int(-1) }) as [string, string];
  const ctxh = g.node('Add', [g.node('MatMul', [pp, vv]), g.node('MatMul', [pn, vNew])]);
  const ctx = g.node('Reshape', [g.node('Transpose', [ctxh], { perm: attr.ints([0, 2, 1, 3]) }), g.i64([0, 0, H * hd])]);
  const x1 = g.node('Add', [x, lin(ctx, 'o', H * hd, D, false)]);
  g.output(mlp(g, lin, x1), 'y', F32, ['B', 'T', D]);
  const p = join(dir, 'D.onnx'); g.save(p); return p;
}
function buildE(): string { // weights only: no attention over the past
  const g = new GraphBuilder('E'); const { lin } = common(g);
  const x = g.input('x', F32, ['B', 'T', D]);
  const q = lin(x, 'q', D, H * hd, true), k = lin(x, 'k', D, kvH * hd, true), v = lin(x, 'v', D, kvH * hd, true);
  g.output(k, 'new_k', F32, ['B', 'T', kvH * hd]); g.output(q, 'qq', F32, ['B', 'T', kvH * hd]);
  const x1 = g.node('Add', [x, lin(v, 'o', H * hd, D, false)]);
  g.output(mlp(g, lin, x1), 'y', F32, ['B', 'T', D]);
  const p = join(dir, 'E.onnx'); g.save(p); return p;
}

// C: GQA non-shared; past [B,kvH,P,hd]; fetch only y and new k/v
function buildC(): string {
  const g = new GraphBuilder('C'); const { lin } = common(g);
  const x = g.input('x', F32, ['B', 'T', D]);
  const pk = g.input('past_key', F32, ['B', kvH, 'P', hd]);
  const pv = g.input('past_value', F32, ['B', kvH, 'P', hd]);
  const sl = g.input('seqlens_k', DataType.INT32, ['B']);
  const tl = g.input('total', DataType.INT32, []);
  const q = lin(x, 'q', D, H * hd, true), k = lin(x, 'k', D, kvH * hd, true), v = lin(x, 'v', D, kvH * hd, true);
  g.output(k, 'new_k', F32, ['B', 'T', kvH * hd]); g.output(v, 'new_v', F32, ['B', 'T', kvH * hd]);
  const [o] = g.nodeMulti('GroupQueryAttention', [q, k, v, pk, pv, sl, tl], 3, { num_heads: attr.int(H), kv_num_heads: attr.int(kvH) }, 'com.microsoft');
  const x1 = g.node('Add', [x, lin(o!, 'o', H * hd, D, false)]);
  g.output(mlp(g, lin, x1), 'y', F32, ['B', 'T', D]);
  const p = join(dir, 'C.onnx'); g.save(p); return p;
}

const opts: ort.InferenceSession.SessionOptions = { intraOpNumThreads: Number(process.env.THREADS ?? 2), interOpNumThreads: 1, graphOptimizationLevel: 'all', executionMode: 'sequential' };
const [sA, sB, sC, sD, sE] = (await Promise.all([buildA(), buildB(), buildC(), buildD(), buildE()].map((p) => ort.InferenceSession.create(p, opts)))) as [
  ort.InferenceSession, ort.InferenceSession, ort.InferenceSession, ort.InferenceSession, ort.InferenceSession,
];
const P = Number(process.env.P ?? 800);
const BB = Number(process.env.B ?? 1);
const W = Math.ceil((P + 1) / 64) * 64;
const t = (d: number[], v?: Float32Array) => new ort.Tensor('float32', v ?? rnd(d.reduce((a, b) => a * b, 1), 1), d);
const x = t([BB, 1, D]);
const feedsA = { x, past: t([P, 2, BB, kvH, hd]), bias: new ort.Tensor('float32', new Float32Array(BB * (P + 1)), [BB, 1, 1, P + 1]) };
const pb = new Float32Array(BB * W); for (let b = 0; b < BB; b++) for (let i = P; i < W; i++) pb[b * W + i] = -3.4e38;
const feedsB = { x, past_kt: t([BB, kvH, hd, W]), past_v: t([BB, kvH, W, hd]), pbias: new ort.Tensor('float32', pb, [BB, 1, 1, W]), nbias: new ort.Tensor('float32', new Float32Array(BB), [BB, 1, 1, 1]) };
const feedsC = { x, past_key: t([BB, kvH, P, hd]), past_value: t([BB, kvH, P, hd]), seqlens_k: new ort.Tensor('int32', new Int32Array(BB).fill(P), [BB]), total: new ort.Tensor('int32', Int32Array.from([P + 1]), []) };
const cands: Array<[string, () => Promise<unknown>]> = [
  ['A concat', () => sA.run(feedsA)],
  ['B window', () => sB.run(feedsB)],
  ['C gqa', () => sC.run(feedsC)],
  ['D window fusedT', () => sD.run({ x, past_k: feedsB.past_v, past_v: feedsB.past_v, pbias: feedsB.pbias, nbias: feedsB.nbias })],
  ['E weights only', () => sE.run({ x })],
];
const times: Record<string, number[]> = {};
for (const [n, f] of cands) { await f(); await f(); times[n] = []; }
for (let rep = 0; rep < Number(process.env.REPS ?? 15); rep++) {
  for (const [n, f] of cands) { const t0 = performance.now(); await f(); times[n]!.push(performance.now() - t0); }
}
const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
const base = med(times['A concat']!);
for (const [n] of cands) console.log(`P=${P} B=${BB} ${n}: median ${med(times[n]!).toFixed(2)} ms  ratio ${(med(times[n]!) / base).toFixed(2)}`);
