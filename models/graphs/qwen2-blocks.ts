// The pieces of the Qwen2 decoder that every decoder graph builds the same way: the engine's CPU
// decoder (decoder.ts), its device decoder (decoder-device.ts) and the bench's peer export
// (models/export/peer-decoder.ts) differ only in how attention reads and returns the cache.
import type { Checkpoint } from '../checkpoint/reader.js';
import { attr } from '../onnx/builder.js';
import { DataType } from '../onnx/schema.js';
import { activation, linear, rmsNorm, toCompute, toFloat, weightMatMul, type GraphContext } from './common.js';

/**
 * Rotary position embedding for `positions` [B,T] (int64): returns a function that rotates
 * [B,T,heads,hd] queries or keys (rotate_half convention, as transformers' Qwen2). The cos/sin
 * tables [B,T,1,hd/2] are computed once in float32 and shared by every layer.
 */
export function ropeRotation(ctx: GraphContext, positions: string): (x: string) => string {
  const g = ctx.g;
  const { headDim: hd, ropeTheta } = ctx.checkpoint.config.text;
  const invFreq = Array.from({ length: hd / 2 }, (_, i) => Math.fround(1 / ropeTheta ** ((2 * i) / hd)));
  const angles = g.node('Mul', [
    g.node('Unsqueeze', [g.node('Cast', [positions], { to: attr.int(DataType.FLOAT) }), g.i64([2])]),
    g.f32(invFreq),
  ]); // [B,T,hd/2]
  const cos = toCompute(ctx, g.node('Unsqueeze', [g.node('Cos', [angles]), g.i64([2])])); // [B,T,1,hd/2]
  const sin = toCompute(ctx, g.node('Unsqueeze', [g.node('Sin', [angles]), g.i64([2])]));
  const half = g.i64([hd / 2, hd / 2]);
  return (x: string): string => {
    const [x1, x2] = g.nodeMulti('Split', [x, half], 2, { axis: attr.int(-1) }) as [string, string];
    const first = g.node('Sub', [g.node('Mul', [x1, cos]), g.node('Mul', [x2, sin])]);
    const second = g.node('Add', [g.node('Mul', [x2, cos]), g.node('Mul', [x1, sin])]);
    return g.node('Concat', [first, second], { axis: attr.int(-1) });
  };
}

/**
 * Queries [B,T,H,hd] -> [B,kvH,group*T,hd]: the query heads that share a kv head stacked along
 * the rows, so one MatMul per kv head serves the whole group (grouped-query attention).
 */
export function groupQueries(ctx: GraphContext, q: string): string {
  const g = ctx.g;
  const { numHeads: H, numKvHeads: kvH, headDim: hd } = ctx.checkpoint.config.text;
  if (H === kvH) return g.node('Transpose', [q], { perm: attr.ints([0, 2, 1, 3]) });
  return g.node('Reshape', [
    g.node('Transpose', [g.node('Reshape', [q, g.i64([0, 0, kvH, H / kvH, hd])])], { perm: attr.ints([0, 2, 3, 1, 4]) }),
    g.i64([0, kvH, -1, hd]),
  ]);
}

/** The inverse of groupQueries for the attention's context: [B,kvH,group*T,hd] -> [B,T,H*hd]. */
export function mergeGroupedHeads(ctx: GraphContext, context: string): string {
  const g = ctx.g;
  const { numHeads: H, numKvHeads: kvH, headDim: hd } = ctx.checkpoint.config.text;
  const perToken = H === kvH
    ? g.node('Transpose', [context], { perm: attr.ints([0, 2, 1, 3]) })
    : g.node('Transpose', [g.node('Reshape', [context, g.i64([0, 0, H / kvH, -1, hd])])], { perm: attr.ints([0, 3, 1, 2, 4]) });
  return g.node('Reshape', [perToken, g.i64([0, 0, H * hd])]);
}

/**
 * The second half of decoder layer `layer`: x1 + down(act(gate(norm(x1))) * up(norm(x1))), with
 * x1 the residual stream after attention (float32) and the MLP in the compute type.
 */
export function mlpResidual(ctx: GraphContext, x1: string, layer: number): string {
  const g = ctx.g;
  const t = ctx.checkpoint.config.text;
  const p = `language_model.layers.${layer}.`;
  const h2 = toCompute(ctx, rmsNorm(ctx, x1, `${p}post_attention_layernorm.weight`, t.rmsNormEps));
  const gate = activation(ctx, linear(ctx, h2, `${p}mlp.gate_proj`, { bias: false }), t.hiddenAct);
  const up = linear(ctx, h2, `${p}mlp.up_proj`, { bias: false });
  const down = toFloat(ctx, linear(ctx, g.node('Mul', [gate, up]), `${p}mlp.down_proj`, { bias: false }));
  return g.node('Add', [x1, down]);
}

/** Final norm and lm_head (the tied embedding when the checkpoint ties them): float32 logits. */
export function lmHeadLogits(ctx: GraphContext, checkpoint: Checkpoint, hidden: string): string {
  const t = checkpoint.config.text;
  const normed = toCompute(ctx, rmsNorm(ctx, hidden, 'language_model.norm.weight', t.rmsNormEps));
  const lmHead = checkpoint.tiedEmbeddings ? 'language_model.embed_tokens.weight' : 'lm_head.weight';
  return toFloat(ctx, weightMatMul(ctx, normed, lmHead));
}

/**
 * The logits output shared by the engine's decoders: every position's [B,T,V] when
 * `allPositionLogits`, else only the last position's [B,V].
 */
export function logitsOutput(ctx: GraphContext, checkpoint: Checkpoint, hidden: string, allPositionLogits: boolean): void {
  const g = ctx.g;
  const last = allPositionLogits
    ? hidden
    : g.node('Slice', [hidden, g.i64([-1]), g.i64([Number.MAX_SAFE_INTEGER]), g.i64([1])]); // [B,1,D]
  let logits = lmHeadLogits(ctx, checkpoint, last);
  if (!allPositionLogits) logits = g.node('Squeeze', [logits, g.i64([1])]);
  const V = checkpoint.config.text.vocabSize;
  g.output(logits, 'logits', DataType.FLOAT, allPositionLogits ? ['batch', 'sequence', V] : ['batch', V]);
}
