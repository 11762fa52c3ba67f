// Building blocks shared by the vision and decoder graphs: weights taken lazily from the
// checkpoint (linear weights stored transposed, [in, out], so MatMul needs no runtime transpose),
// linear layers with optional LoRA inputs, norms, activations, dtype casts.
// Precision policy: in fp32 builds everything is float32. In fp16 builds weights and matrix work
// are float16, while the residual stream, norms and softmax stay float32. Quantized builds (int8,
// int4) keep that policy for activations (float32, or float16 with compute fp16) and store the
// linear weights block-quantized for MatMulNBits (quantize.ts); see weightMatMul.
import type { Activation } from '../checkpoint/config.js';
import { float32ToHalf } from '../checkpoint/dtype.js';
import type { Checkpoint } from '../checkpoint/reader.js';
import { attr, type GraphBuilder } from '../onnx/builder.js';
import { DataType, type DataTypeId } from '../onnx/schema.js';
import type { LoraTarget } from '../manifest.js';
import { packCodes, quantizeWeight, scaleData, type QuantizedWeight, type QuantSpec } from './quantize.js';

export type BuildDtype = 'fp32' | 'fp16';

export interface GraphContext {
  g: GraphBuilder;
  checkpoint: Checkpoint;
  dtype: BuildDtype;
  /** FLOAT or FLOAT16: the type of weights and matrix work. */
  compute: DataTypeId;
  /** Canonical module names that get LoRA inputs in this graph. */
  loraModules: ReadonlySet<string>;
  graphKind: 'vision' | 'decoder';
  /** LoRA inputs added to this graph, in order. */
  loraTargets: LoraTarget[];
  /** Weight-only quantization of the linear weights (MatMulNBits), or null for plain MatMul. */
  quant: QuantSpec | null;
}

export function makeContext(
  g: GraphBuilder,
  checkpoint: Checkpoint,
  dtype: BuildDtype,
  graphKind: 'vision' | 'decoder',
  loraModules: ReadonlySet<string>,
  quant: QuantSpec | null = null,
): GraphContext {
  return {
    g,
    checkpoint,
    dtype,
    compute: dtype === 'fp16' ? DataType.FLOAT16 : DataType.FLOAT,
    loraModules,
    graphKind,
    loraTargets: [],
    quant,
  };
}

/** Row-major [rows, cols] -> [cols, rows], blocked for cache locality on large matrices. */
export function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const dst = new Float32Array(src.length);
  const B = 64;
  for (let i0 = 0; i0 < rows; i0 += B) {
    const i1 = Math.min(rows, i0 + B);
    for (let j0 = 0; j0 < cols; j0 += B) {
      const j1 = Math.min(cols, j0 + B);
      for (let i = i0; i < i1; i++) {
        const row = i * cols;
        for (let j = j0; j < j1; j++) dst[j * rows + i] = src[row + j]!;
      }
    }
  }
  return dst;
}

function inDtype(values: Float32Array, type: DataTypeId): Float32Array | Uint16Array {
  return type === DataType.FLOAT16 ? float32ToHalf(values) : values;
}

/** A checkpoint tensor as an initializer of the given type (read when the graph is written). */
export function tensorInit(ctx: GraphContext, canonical: string, type: DataTypeId, dims?: number[]): string {
  const shape = dims ?? ctx.checkpoint.tensors.shape(canonical);
  const name = `${canonical}${type === DataType.FLOAT16 ? '.f16' : ''}`;
  return ctx.g.initializer(name, type, shape, () => inDtype(ctx.checkpoint.tensors.read(canonical), type));
}

/** A [out, in] checkpoint weight stored transposed as [in, out] in the compute type. */
export function transposedWeight(ctx: GraphContext, canonical: string): string {
  const [out, inF] = ctx.checkpoint.tensors.shape(canonical) as [number, number];
  return ctx.g.initializer(`${canonical}.T`, ctx.compute, [inF, out], () =>
    inDtype(transpose2d(ctx.checkpoint.tensors.read(canonical), out, inF), ctx.compute),
  );
}

/**
 * x Wᵀ for a [out, in] checkpoint weight (canonical tensor name), x in the compute type: MatMul
 * on the transposed weight, or, in quantized builds, MatMulNBits on the block-quantized weight
 * (scales in the compute type, as the operator requires). The base-weight path of linear() and
 * the lm_head.
 */
export function weightMatMul(ctx: GraphContext, x: string, weight: string): string {
  if (!ctx.quant) return ctx.g.node('MatMul', [x, transposedWeight(ctx, weight)]);
  const { bits, blockSize, accuracyLevel } = ctx.quant;
  const [N, K] = ctx.checkpoint.tensors.shape(weight) as [number, number];
  const blocks = Math.ceil(K / blockSize);
  const scaleType = ctx.compute === DataType.FLOAT16 ? 'float16' : 'float32';
  // B and scales come from one quantization; the writer asks for B, then scales, in turn
  let pending: QuantizedWeight | null = null;
  const quantized = (): QuantizedWeight =>
    (pending ??= quantizeWeight(ctx.checkpoint.tensors.read(weight), N, K, bits, blockSize, scaleType));
  const B = ctx.g.initializer(`${weight}.q${bits}`, DataType.UINT8, [N, blocks, (blockSize * bits) / 8], () => packCodes(quantized()));
  const scales = ctx.g.initializer(`${weight}.q${bits}.scales`, ctx.compute, [N, blocks], () => {
    const data = scaleData(quantized());
    pending = null;
    return data;
  });
  return ctx.g.node(
    'MatMulNBits',
    [x, B, scales],
    { K: attr.int(K), N: attr.int(N), bits: attr.int(bits), block_size: attr.int(blockSize), accuracy_level: attr.int(accuracyLevel) },
    'com.microsoft',
  );
}

export function cast(ctx: GraphContext, x: string, to: DataTypeId): string {
  return ctx.g.node('Cast', [x], { to: attr.int(to) });
}

/** float32 -> compute type (no-op in fp32 builds). */
export function toCompute(ctx: GraphContext, x: string): string {
  return ctx.compute === DataType.FLOAT ? x : cast(ctx, x, ctx.compute);
}

/** compute type -> float32 (no-op in fp32 builds). */
export function toFloat(ctx: GraphContext, x: string): string {
  return ctx.compute === DataType.FLOAT ? x : cast(ctx, x, DataType.FLOAT);
}

/** A scalar constant in the compute type. */
export function computeScalar(ctx: GraphContext, value: number): string {
  const c = ctx.g.f32(value);
  return ctx.compute === DataType.FLOAT ? c : cast(ctx, c, ctx.compute);
}

function loraInputNames(module: string): { a: string; b: string } {
  return { a: `lora.${module}.A`, b: `lora.${module}.B` };
}

/**
 * y = x Wᵀ (+ b) for a checkpoint module (canonical name without `.weight`), x in the compute
 * type. When the module is a LoRA target the graph also takes the adapter's A and B and adds
 * (x Aᵀ) Bᵀ (the engine folds the scale into B):
 * - decoder: one adapter per batch row, A [B, r, in] and B [B, out, r] (x is [B, T, in]); rows
 *   without an adapter are zero, r is the largest rank in the batch (smaller ones zero-padded);
 * - vision (one picture per run): A [r, in] and B [out, r].
 * "No adapter" is a rank-1 zero, never a zero-size tensor: onnxruntime 1.30 leaves a
 * broadcasting MatMul with inner dimension 0 uninitialised, and WebGPU crashes on zero-size inputs.
 */
export function linear(ctx: GraphContext, x: string, module: string, options: { bias: boolean }): string {
  const g = ctx.g;
  const weight = `${module}.weight`;
  const [outF, inF] = ctx.checkpoint.tensors.shape(weight) as [number, number];
  let y = weightMatMul(ctx, x, weight);
  if (options.bias) y = g.node('Add', [y, tensorInit(ctx, `${module}.bias`, ctx.compute)]);
  if (ctx.loraModules.has(module)) y = loraBranch(ctx, x, y, module, inF, outF);
  return y;
}

/** base + (x Aᵀ) Bᵀ with the module's LoRA inputs (see linear). */
function loraBranch(ctx: GraphContext, x: string, base: string, module: string, inF: number, outF: number): string {
  const g = ctx.g;
  const names = loraInputNames(module);
  const rank = `lora_rank_${ctx.loraTargets.length}`;
  const perRow = ctx.graphKind === 'decoder';
  const A = g.input(names.a, ctx.compute, perRow ? ['batch', rank, inF] : [rank, inF]);
  const B = g.input(names.b, ctx.compute, perRow ? ['batch', outF, rank] : [outF, rank]);
  const perm = perRow ? [0, 2, 1] : [1, 0];
  // node names carry "lora/" so profiles can attribute the adapter path's cost
  const y = g.withScope(`${g.currentScope}lora/`, () => {
    const xa = g.node('MatMul', [x, g.node('Transpose', [A], { perm: attr.ints(perm) })]);
    const delta = g.node('MatMul', [xa, g.node('Transpose', [B], { perm: attr.ints(perm) })]);
    return g.node('Add', [base, delta]);
  });
  ctx.loraTargets.push({ module, graph: ctx.graphKind, inputA: names.a, inputB: names.b, inFeatures: inF, outFeatures: outF });
  return y;
}

/** RMSNorm in float32: x / sqrt(mean(x²) + eps) * w. */
export function rmsNorm(ctx: GraphContext, x: string, weight: string, eps: number): string {
  const g = ctx.g;
  const meanSq = g.node('ReduceMean', [g.node('Mul', [x, x])], { axes: attr.ints([-1]), keepdims: attr.int(1) });
  const inv = g.node('Reciprocal', [g.node('Sqrt', [g.node('Add', [meanSq, g.f32(eps)])])]);
  return g.node('Mul', [g.node('Mul', [x, inv]), tensorInit(ctx, weight, DataType.FLOAT)]);
}

/** LayerNorm over the last axis in float32 (opset 17 LayerNormalization). */
export function layerNorm(ctx: GraphContext, x: string, module: string, eps: number): string {
  return ctx.g.node(
    'LayerNormalization',
    [x, tensorInit(ctx, `${module}.weight`, DataType.FLOAT), tensorInit(ctx, `${module}.bias`, DataType.FLOAT)],
    { axis: attr.int(-1), epsilon: attr.float(eps) },
  );
}

/** An activation in whatever type x has (compute type). */
export function activation(ctx: GraphContext, x: string, act: Activation): string {
  const g = ctx.g;
  const c = (v: number): string => computeScalar(ctx, v);
  switch (act) {
    case 'silu':
      return g.node('Mul', [x, g.node('Sigmoid', [x])]);
    case 'quick_gelu':
      return g.node('Mul', [x, g.node('Sigmoid', [g.node('Mul', [x, c(1.702)])])]);
    case 'relu':
      return g.node('Relu', [x]);
    case 'gelu_erf': {
      // 0.5 x (1 + erf(x / sqrt 2))
      const e = g.node('Erf', [g.node('Mul', [x, c(Math.SQRT1_2)])]);
      return g.node('Mul', [g.node('Mul', [x, c(0.5)]), g.node('Add', [e, c(1)])]);
    }
    case 'gelu_tanh': {
      // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³)))
      const x3 = g.node('Mul', [g.node('Mul', [x, x]), x]);
      const inner = g.node('Mul', [g.node('Add', [x, g.node('Mul', [x3, c(0.044715)])]), c(Math.sqrt(2 / Math.PI))]);
      return g.node('Mul', [g.node('Mul', [x, c(0.5)]), g.node('Add', [g.node('Tanh', [inner]), c(1)])]);
    }
  }
}
