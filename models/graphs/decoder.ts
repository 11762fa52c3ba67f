// decoder.onnx: the Qwen2 decoder over new tokens, reading a windowed KV cache in place.
//   inputs_embeds float32 [B,T,D], position_ids int64 [B,T],
//   past_mask int64 [B,W] (1 = row b sees cached position j), past_key.<i> [B,kvH,hd,W] (keys after
//   RoPE, transposed), past_value.<i> [B,kvH,W,hd]
//   -> logits float32 [B,V] (last position; [B,T,V] with allPositionLogits),
//      key.<i> [B,kvH,hd,T], value.<i> [B,kvH,T,hd]: the new positions only, in the cache's layout.
// W (the window) is the stride of the engine's cache buffers, at least every row's cached length;
// the positions a row does not have are masked. The past is read where it lies: the MatMuls take
// the cache views as they are (keys stored transposed, so Q·Kᵀ needs no Transpose), and
// attention is split into a past part and a new part joined only at the softmax, so the past is
// never concatenated, gathered or transposed per step (docs/engine.md, "Decoder layout").
// Per layer: x += o_proj(attn(rms(x))); x += down(act(gate(rms x)) * up(rms x)). q/k/v have
// biases, o_proj none; RoPE rotate-half with theta; query head h reads kv head h // (H/kvH) (the
// grouped heads are folded into the query rows, so K/V are never repeated); new token i sees the
// cached positions its row's past_mask allows and new tokens j <= i (position ids come from the
// caller). A masked score gets float32's lowest value, so its softmax weight is exactly 0.
import type { Checkpoint } from '../checkpoint/reader.js';
import { attr, GraphBuilder } from '../onnx/builder.js';
import { DataType } from '../onnx/schema.js';
import { computeScalar, linear, makeContext, rmsNorm, toCompute, toFloat, type BuildDtype, type GraphContext } from './common.js';
import { groupQueries, logitsOutput, mergeGroupedHeads, mlpResidual, ropeRotation } from './qwen2-blocks.js';
import type { QuantSpec } from './quantize.js';

export interface DecoderGraphOptions {
  dtype: BuildDtype;
  allPositionLogits: boolean;
  loraModules: ReadonlySet<string>;
  /** Weight-only quantization of the linear layers and the lm_head (the embedding stays exact). */
  quant?: QuantSpec | null;
}

/** Graph input/output names of the decoder's cache for layer `i`. */
export const decoderCacheNames = (i: number): { pastKey: string; pastValue: string; key: string; value: string } => ({
  pastKey: `past_key.${i}`,
  pastValue: `past_value.${i}`,
  key: `key.${i}`,
  value: `value.${i}`,
});

export function buildDecoderGraph(checkpoint: Checkpoint, options: DecoderGraphOptions): GraphContext {
  const g = new GraphBuilder('vistyle_decoder');
  const ctx = makeContext(g, checkpoint, options.dtype, 'decoder', options.loraModules, options.quant ?? null);
  const t = checkpoint.config.text;
  const D = t.hiddenSize;
  const H = t.numHeads;
  const kvH = t.numKvHeads;
  const hd = t.headDim;
  const group = H / kvH;
  const cacheType = ctx.compute;

  const embeds = g.input('inputs_embeds', DataType.FLOAT, ['batch', 'sequence', D]);
  const positions = g.input('position_ids', DataType.INT64, ['batch', 'sequence']);
  const pastMask = g.input('past_mask', DataType.INT64, ['batch', 'window']);
  const pastKeys: string[] = [];
  const pastValues: string[] = [];
  for (let i = 0; i < t.numLayers; i++) {
    const n = decoderCacheNames(i);
    pastKeys.push(g.input(n.pastKey, cacheType, ['batch', kvH, hd, 'window']));
    pastValues.push(g.input(n.pastValue, cacheType, ['batch', kvH, 'window', hd]));
  }

  // --- shared: attention biases and RoPE tables [B,T,1,hd/2] ---
  // transformers adds the dtype's minimum to masked scores; softmax then gives them weight 0.
  const lowest = g.f32(-3.4028234663852886e38);
  const pastVisible = g.node('Unsqueeze', [g.node('Cast', [pastMask], { to: attr.int(DataType.BOOL) }), g.i64([1, 2])]); // [B,1,1,W]
  const pastBias = g.node('Where', [pastVisible, g.f32(0), lowest]);
  const T = g.node('Gather', [g.node('Shape', [embeds]), g.i64(1)], { axis: attr.int(0) });
  const newIdx = g.node('Range', [g.i64(0), T, g.i64(1)]); // [T]
  let causal = g.node('LessOrEqual', [newIdx, g.node('Unsqueeze', [newIdx, g.i64([1])])]); // [T,T]: key j <= query i
  if (group > 1) causal = g.node('Tile', [causal, g.i64([group, 1])]); // rows ordered (group, T)
  const newBias = g.node('Where', [causal, g.f32(0), lowest]); // [group*T, T]
  const W = g.node('Unsqueeze', [g.node('Gather', [g.node('Shape', [pastMask]), g.i64(1)], { axis: attr.int(0) }), g.i64([0])]);
  const pastAndNew = g.node('Concat', [W, g.node('Unsqueeze', [T, g.i64([0])])], { axis: attr.int(0) }); // [W, T]

  const rope = ropeRotation(ctx, positions);
  const scale = computeScalar(ctx, 1 / Math.sqrt(hd));

  let x = embeds;
  for (let l = 0; l < t.numLayers; l++) {
    x = g.withScope(`layers.${l}/`, () => {
      const p = `language_model.layers.${l}.`;
      const h = toCompute(ctx, rmsNorm(ctx, x, `${p}input_layernorm.weight`, t.rmsNormEps));
      const split = (y: string, heads: number): string => g.node('Reshape', [y, g.i64([0, 0, heads, hd])]);
      const q = g.node('Mul', [rope(split(linear(ctx, h, `${p}self_attn.q_proj`, { bias: true }), H)), scale]); // [B,T,H,hd]
      const k = rope(split(linear(ctx, h, `${p}self_attn.k_proj`, { bias: true }), kvH)); // [B,T,kvH,hd]
      const v = split(linear(ctx, h, `${p}self_attn.v_proj`, { bias: true }), kvH);

      // the new positions in the cache's layout: keys [B,kvH,hd,T], values [B,kvH,T,hd]
      const keysNew = g.node('Transpose', [k], { perm: attr.ints([0, 2, 3, 1]) });
      const valuesNew = g.node('Transpose', [v], { perm: attr.ints([0, 2, 1, 3]) });
      const n = decoderCacheNames(l);
      g.output(keysNew, n.key, cacheType, ['batch', kvH, hd, 'sequence']);
      g.output(valuesNew, n.value, cacheType, ['batch', kvH, 'sequence', hd]);

      const queries = groupQueries(ctx, q); // [B,kvH,group*T,hd]
      // scores over the cached window and over the new tokens, one softmax over both
      const pastScores = g.node('Add', [toFloat(ctx, g.node('MatMul', [queries, pastKeys[l]!])), pastBias]); // [B,kvH,gT,W]
      const newScores = g.node('Add', [toFloat(ctx, g.node('MatMul', [queries, keysNew])), newBias]); // [B,kvH,gT,T]
      const probs = toCompute(ctx, g.node('Softmax', [g.node('Concat', [pastScores, newScores], { axis: attr.int(-1) })], { axis: attr.int(-1) }));
      const [pastProbs, newProbs] = g.nodeMulti('Split', [probs, pastAndNew], 2, { axis: attr.int(-1) }) as [string, string];
      const context = g.node('Add', [g.node('MatMul', [pastProbs, pastValues[l]!]), g.node('MatMul', [newProbs, valuesNew])]); // [B,kvH,gT,hd]
      const merged = mergeGroupedHeads(ctx, context);
      const attnOut = toFloat(ctx, linear(ctx, merged, `${p}self_attn.o_proj`, { bias: false }));
      const x1 = g.node('Add', [x, attnOut]);

      return mlpResidual(ctx, x1, l);
    });
  }

  logitsOutput(ctx, checkpoint, x, options.allPositionLogits);
  return ctx;
}
