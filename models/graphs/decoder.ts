// decoder.onnx: the Qwen2 decoder over new tokens with a sequence-major KV cache.
//   inputs_embeds float32 [B,T,D], position_ids int64 [B,T], attention_mask int64 [B,P+T],
//   past.<i> [P,2,B,kvH,hd] (keys after RoPE at [:,0], values at [:,1])
//   -> logits float32 [B,V] (last position; [B,T,V] with allPositionLogits),
//      present.<i> [T,2,B,kvH,hd] (the new positions only).
// Per layer: x += o_proj(attn(rms(x))); x += down(act(gate(rms x)) * up(rms x)). q/k/v have
// biases, o_proj none; RoPE rotate-half with theta; query head h reads kv head h // (H/kvH) (the
// grouped heads are folded into the query rows, so K/V are never repeated); key j is visible from
// query i iff j <= i and attention_mask[j] == 1 (position ids come from the caller).
import type { Checkpoint } from '../checkpoint/reader.js';
import { attr, GraphBuilder } from '../onnx/builder.js';
import { DataType } from '../onnx/schema.js';
import {
  activation, computeScalar, linear, makeContext, rmsNorm, toCompute, toFloat, weightMatMul,
  type BuildDtype, type GraphContext,
} from './common.js';
import type { QuantSpec } from './quantize.js';

export interface DecoderGraphOptions {
  dtype: BuildDtype;
  allPositionLogits: boolean;
  loraModules: ReadonlySet<string>;
  /** Weight-only quantization of the linear layers and the lm_head (the embedding stays exact). */
  quant?: QuantSpec | null;
}

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
  const mask = g.input('attention_mask', DataType.INT64, ['batch', 'total_sequence']);
  const past: string[] = [];
  for (let i = 0; i < t.numLayers; i++) {
    past.push(g.input(`past.${i}`, cacheType, ['past_sequence', 2, 'batch', kvH, hd]));
  }

  // --- shared: attention bias [B,1,group*T,S] and RoPE tables [B,T,1,hd/2] ---
  const scalarDim = (x: string, axis: number): string => g.node('Gather', [g.node('Shape', [x]), g.i64(axis)], { axis: attr.int(0) });
  const S = scalarDim(mask, 1);
  const T = scalarDim(embeds, 1);
  const P = g.node('Sub', [S, T]);
  const keyIdx = g.node('Range', [g.i64(0), S, g.i64(1)]); // [S]
  const queryIdx = g.node('Unsqueeze', [g.node('Range', [P, S, g.i64(1)]), g.i64([1])]); // [T,1]
  const causal = g.node('LessOrEqual', [keyIdx, queryIdx]); // [T,S]
  const notPad = g.node('Unsqueeze', [g.node('Cast', [mask], { to: attr.int(DataType.BOOL) }), g.i64([1, 2])]); // [B,1,1,S]
  let visible = g.node('And', [causal, notPad]); // [B,1,T,S]
  if (group > 1) visible = g.node('Tile', [visible, g.i64([1, 1, group, 1])]); // rows ordered (group, T)
  // transformers adds the dtype's minimum to masked scores; a padding row with nothing visible
  // then gets uniform weights (finite, never NaN), and valid rows never see padding.
  const attnBias = g.node('Where', [visible, g.f32(0), g.f32(-3.4028234663852886e38)]);

  const invFreq = Array.from({ length: hd / 2 }, (_, i) => Math.fround(1 / t.ropeTheta ** ((2 * i) / hd)));
  const angles = g.node('Mul', [
    g.node('Unsqueeze', [g.node('Cast', [positions], { to: attr.int(DataType.FLOAT) }), g.i64([2])]),
    g.f32(invFreq),
  ]); // [B,T,hd/2]
  const cos = toCompute(ctx, g.node('Unsqueeze', [g.node('Cos', [angles]), g.i64([2])])); // [B,T,1,hd/2]
  const sin = toCompute(ctx, g.node('Unsqueeze', [g.node('Sin', [angles]), g.i64([2])]));
  const half = g.i64([hd / 2, hd / 2]);
  const rope = (x: string): string => {
    const [x1, x2] = g.nodeMulti('Split', [x, half], 2, { axis: attr.int(-1) }) as [string, string];
    const first = g.node('Sub', [g.node('Mul', [x1, cos]), g.node('Mul', [x2, sin])]);
    const second = g.node('Add', [g.node('Mul', [x2, cos]), g.node('Mul', [x1, sin])]);
    return g.node('Concat', [first, second], { axis: attr.int(-1) });
  };
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

      // present [T,2,B,kvH,hd]; the full cache [S,2,B,kvH,hd] = past ++ present
      const kv = g.node('Concat', [g.node('Unsqueeze', [k, g.i64([2])]), g.node('Unsqueeze', [v, g.i64([2])])], { axis: attr.int(2) });
      const present = g.node('Transpose', [kv], { perm: attr.ints([1, 2, 0, 3, 4]) });
      g.output(present, `present.${l}`, cacheType, ['sequence', 2, 'batch', kvH, hd]);
      const all = g.node('Concat', [past[l]!, present], { axis: attr.int(0) });
      const keysT = g.node('Transpose', [g.node('Gather', [all, g.i64(0)], { axis: attr.int(1) })], { perm: attr.ints([1, 2, 3, 0]) }); // [B,kvH,hd,S]
      const values = g.node('Transpose', [g.node('Gather', [all, g.i64(1)], { axis: attr.int(1) })], { perm: attr.ints([1, 2, 0, 3]) }); // [B,kvH,S,hd]

      // queries [B,kvH,group*T,hd]: the query heads sharing a kv head stacked along the rows
      const queries = group === 1
        ? g.node('Transpose', [q], { perm: attr.ints([0, 2, 1, 3]) })
        : g.node('Reshape', [
          g.node('Transpose', [g.node('Reshape', [q, g.i64([0, 0, kvH, group, hd])])], { perm: attr.ints([0, 2, 3, 1, 4]) }),
          g.i64([0, kvH, -1, hd]),
        ]);
      const scores = g.node('Add', [toFloat(ctx, g.node('MatMul', [queries, keysT])), attnBias]);
      const probs = toCompute(ctx, g.node('Softmax', [scores], { axis: attr.int(-1) }));
      const context = g.node('MatMul', [probs, values]); // [B,kvH,group*T,hd]
      const perToken = group === 1
        ? g.node('Transpose', [context], { perm: attr.ints([0, 2, 1, 3]) })
        : g.node('Transpose', [g.node('Reshape', [context, g.i64([0, 0, group, -1, hd])])], { perm: attr.ints([0, 3, 1, 2, 4]) });
      const merged = g.node('Reshape', [perToken, g.i64([0, 0, H * hd])]);
      const attnOut = toFloat(ctx, linear(ctx, merged, `${p}self_attn.o_proj`, { bias: false }));
      const x1 = g.node('Add', [x, attnOut]);

      const h2 = toCompute(ctx, rmsNorm(ctx, x1, `${p}post_attention_layernorm.weight`, t.rmsNormEps));
      const gate = activation(ctx, linear(ctx, h2, `${p}mlp.gate_proj`, { bias: false }), t.hiddenAct);
      const up = linear(ctx, h2, `${p}mlp.up_proj`, { bias: false });
      const down = toFloat(ctx, linear(ctx, g.node('Mul', [gate, up]), `${p}mlp.down_proj`, { bias: false }));
      return g.node('Add', [x1, down]);
    });
  }

  const last = options.allPositionLogits
    ? x
    : g.node('Slice', [x, g.i64([-1]), g.i64([Number.MAX_SAFE_INTEGER]), g.i64([1])]); // [B,1,D]
  const normed = toCompute(ctx, rmsNorm(ctx, last, 'language_model.norm.weight', t.rmsNormEps));
  const lmHead = checkpoint.tiedEmbeddings ? 'language_model.embed_tokens.weight' : 'lm_head.weight';
  let logits = toFloat(ctx, weightMatMul(ctx, normed, lmHead));
  if (!options.allPositionLogits) logits = g.node('Squeeze', [logits, g.i64([1])]);
  g.output(logits, 'logits', DataType.FLOAT, options.allPositionLogits ? ['batch', 'sequence', t.vocabSize] : ['batch', t.vocabSize]);
  return ctx;
}
