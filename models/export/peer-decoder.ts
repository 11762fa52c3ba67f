// decoder_model_merged.onnx for the benchmark's peer (@huggingface/transformers, see
// transformers-js.ts): the same Qwen2 decoder as models/graphs/decoder.ts, built from the same
// checkpoint with the same blocks (linear / MatMulNBits, RMSNorm, RoPE, masked softmax), in the
// I/O layout that transformers.js's LlavaForConditionalGeneration feeds:
//   inputs_embeds float32 [batch_size, sequence_length, D], attention_mask int64
//   [batch_size, total_sequence_length], position_ids int64 [batch_size, sequence_length],
//   past_key_values.<i>.key / .value float32 [batch_size, kvH, past_sequence_length, hd],
//   num_logits_to_keep int64 scalar (0 = every position, n = the last n)
//   -> logits float32 [batch_size, logits_length, V],
//      present.<i>.key / .value [batch_size, kvH, total_sequence_length, hd] (past ++ new: the
//      whole cache comes back every step, as Optimum's exports do).
// Only for measuring; the engine never loads it.
import type { Checkpoint } from '../checkpoint/reader.js';
import { attr, GraphBuilder } from '../onnx/builder.js';
import { DataType } from '../onnx/schema.js';
import { computeScalar, linear, makeContext, rmsNorm, type GraphContext } from '../graphs/common.js';
import { groupQueries, lmHeadLogits, mergeGroupedHeads, mlpResidual, ropeRotation } from '../graphs/qwen2-blocks.js';
import type { QuantSpec } from '../graphs/quantize.js';

export function buildPeerDecoderGraph(checkpoint: Checkpoint, quant: QuantSpec | null): GraphContext {
  const g = new GraphBuilder('peer_decoder_model_merged');
  const ctx = makeContext(g, checkpoint, 'fp32', 'decoder', new Set(), quant);
  const t = checkpoint.config.text;
  const D = t.hiddenSize;
  const H = t.numHeads;
  const kvH = t.numKvHeads;
  const hd = t.headDim;
  const group = H / kvH;

  const embeds = g.input('inputs_embeds', DataType.FLOAT, ['batch_size', 'sequence_length', D]);
  const mask = g.input('attention_mask', DataType.INT64, ['batch_size', 'total_sequence_length']);
  const positions = g.input('position_ids', DataType.INT64, ['batch_size', 'sequence_length']);
  const pastK: string[] = [];
  const pastV: string[] = [];
  for (let i = 0; i < t.numLayers; i++) {
    pastK.push(g.input(`past_key_values.${i}.key`, DataType.FLOAT, ['batch_size', kvH, 'past_sequence_length', hd]));
    pastV.push(g.input(`past_key_values.${i}.value`, DataType.FLOAT, ['batch_size', kvH, 'past_sequence_length', hd]));
  }
  const keep = g.input('num_logits_to_keep', DataType.INT64, []);

  // attention bias [B,1,group*T,S] and RoPE tables, as in the engine's decoder
  const scalarDim = (x: string, axis: number): string => g.node('Gather', [g.node('Shape', [x]), g.i64(axis)], { axis: attr.int(0) });
  const S = scalarDim(mask, 1);
  const T = scalarDim(embeds, 1);
  const P = g.node('Sub', [S, T]);
  const keyIdx = g.node('Range', [g.i64(0), S, g.i64(1)]);
  const queryIdx = g.node('Unsqueeze', [g.node('Range', [P, S, g.i64(1)]), g.i64([1])]);
  const causal = g.node('LessOrEqual', [keyIdx, queryIdx]);
  const notPad = g.node('Unsqueeze', [g.node('Cast', [mask], { to: attr.int(DataType.BOOL) }), g.i64([1, 2])]);
  let visible = g.node('And', [causal, notPad]);
  if (group > 1) visible = g.node('Tile', [visible, g.i64([1, 1, group, 1])]);
  const attnBias = g.node('Where', [visible, g.f32(0), g.f32(-3.4028234663852886e38)]);

  const rope = ropeRotation(ctx, positions);
  const scale = computeScalar(ctx, 1 / Math.sqrt(hd));

  let x = embeds;
  for (let l = 0; l < t.numLayers; l++) {
    x = g.withScope(`layers.${l}/`, () => {
      const p = `language_model.layers.${l}.`;
      const h = rmsNorm(ctx, x, `${p}input_layernorm.weight`, t.rmsNormEps);
      const split = (y: string, heads: number): string => g.node('Reshape', [y, g.i64([0, 0, heads, hd])]);
      const q = g.node('Mul', [rope(split(linear(ctx, h, `${p}self_attn.q_proj`, { bias: true }), H)), scale]); // [B,T,H,hd]
      const k = rope(split(linear(ctx, h, `${p}self_attn.k_proj`, { bias: true }), kvH)); // [B,T,kvH,hd]
      const v = split(linear(ctx, h, `${p}self_attn.v_proj`, { bias: true }), kvH);
      const headsFirst = (y: string): string => g.node('Transpose', [y], { perm: attr.ints([0, 2, 1, 3]) }); // [B,kvH,T,hd]
      const keys = g.node('Concat', [pastK[l]!, headsFirst(k)], { axis: attr.int(2) }); // [B,kvH,S,hd]
      const values = g.node('Concat', [pastV[l]!, headsFirst(v)], { axis: attr.int(2) });
      g.output(keys, `present.${l}.key`, DataType.FLOAT, ['batch_size', kvH, 'total_sequence_length', hd]);
      g.output(values, `present.${l}.value`, DataType.FLOAT, ['batch_size', kvH, 'total_sequence_length', hd]);
      const keysT = g.node('Transpose', [keys], { perm: attr.ints([0, 1, 3, 2]) }); // [B,kvH,hd,S]
      const queries = groupQueries(ctx, q);
      const scores = g.node('Add', [g.node('MatMul', [queries, keysT]), attnBias]);
      const probs = g.node('Softmax', [scores], { axis: attr.int(-1) });
      const context = g.node('MatMul', [probs, values]);
      const merged = mergeGroupedHeads(ctx, context);
      const x1 = g.node('Add', [x, linear(ctx, merged, `${p}self_attn.o_proj`, { bias: false })]);
      return mlpResidual(ctx, x1, l);
    });
  }

  // the last num_logits_to_keep positions; Slice from -0 = 0 keeps them all
  const start = g.node('Unsqueeze', [g.node('Neg', [keep]), g.i64([0])]);
  const last = g.node('Slice', [x, start, g.i64([Number.MAX_SAFE_INTEGER]), g.i64([1])]);
  g.output(lmHeadLogits(ctx, checkpoint, last), 'logits', DataType.FLOAT, ['batch_size', 'logits_length', t.vocabSize]);
  return ctx;
}
