// decoder-device.onnx: the Qwen2 decoder for a device-resident KV cache (WebGPU), with
// onnxruntime's com.microsoft GroupQueryAttention over a fixed-capacity buffer per layer.
//   inputs_embeds float32 [B,T,D], position_ids int64 [B,T],
//   seqlens_k int32 [B] (row b's cached positions + T - 1: the index of its last key),
//   total_sequence_length int32 [] (max over rows of cached positions + T),
//   past_key.<i>, past_value.<i> cache [B,kvH,C,hd] (keys after RoPE; C = the buffer's capacity)
//   -> logits float32 [B,V] (last position; [B,T,V] with allPositionLogits),
//      present_key.<i>, present_value.<i> [B,kvH,C,hd]: the same buffers with the T new positions
//      written at each row's own offset (seqlens_k - T + 1 .. seqlens_k).
//
// Why this shape (docs/engine.md, "Device cache"): onnxruntime-node cannot read a gpu-buffer back
// or bind an output to an existing buffer, so the cache lives as the decoder's own outputs fed
// back as the next step's inputs. GroupQueryAttention keeps them at a constant size (the
// capacity), so every step reuses the same-sized device buffers, per-row lengths replace the
// growing attention mask (host inputs per step do not depend on the context length), rows of
// different lengths decode together without padding, and the WebGPU provider runs the attention
// itself (flash-attention kernels) instead of MatMul/Softmax over transposed copies of the cache.
// Everything else (RoPE from position_ids, norms, MLP, LoRA inputs, dtype policy) is the same as
// decoder.ts (quantized builds included: MatMulNBits), so both graphs give the same logits.
import type { Checkpoint } from '../checkpoint/reader.js';
import { attr, GraphBuilder } from '../onnx/builder.js';
import { DataType } from '../onnx/schema.js';
import { linear, makeContext, rmsNorm, toCompute, toFloat, type BuildDtype, type GraphContext } from './common.js';
import { logitsOutput, mlpResidual, ropeRotation } from './qwen2-blocks.js';
import type { QuantSpec } from './quantize.js';

export interface DeviceDecoderGraphOptions {
  dtype: BuildDtype;
  allPositionLogits: boolean;
  loraModules: ReadonlySet<string>;
  /** Weight-only quantization (MatMulNBits, which WebGPU runs), as in decoder.ts. */
  quant?: QuantSpec | null;
}

/** Graph input/output names of the device decoder for layer `i`. */
export const deviceCacheNames = (i: number): { pastKey: string; pastValue: string; presentKey: string; presentValue: string } => ({
  pastKey: `past_key.${i}`,
  pastValue: `past_value.${i}`,
  presentKey: `present_key.${i}`,
  presentValue: `present_value.${i}`,
});

export function buildDeviceDecoderGraph(checkpoint: Checkpoint, options: DeviceDecoderGraphOptions): GraphContext {
  const g = new GraphBuilder('vistyle_decoder_device');
  const ctx = makeContext(g, checkpoint, options.dtype, 'decoder', options.loraModules, options.quant ?? null);
  const t = checkpoint.config.text;
  const D = t.hiddenSize;
  const H = t.numHeads;
  const kvH = t.numKvHeads;
  const hd = t.headDim;
  const cacheType = ctx.compute;

  const embeds = g.input('inputs_embeds', DataType.FLOAT, ['batch', 'sequence', D]);
  const positions = g.input('position_ids', DataType.INT64, ['batch', 'sequence']);
  const seqlensK = g.input('seqlens_k', DataType.INT32, ['batch']);
  const totalLength = g.input('total_sequence_length', DataType.INT32, []);
  const pastKeys: string[] = [];
  const pastValues: string[] = [];
  for (let i = 0; i < t.numLayers; i++) {
    const n = deviceCacheNames(i);
    pastKeys.push(g.input(n.pastKey, cacheType, ['batch', kvH, 'capacity', hd]));
    pastValues.push(g.input(n.pastValue, cacheType, ['batch', kvH, 'capacity', hd]));
  }

  const rope = ropeRotation(ctx, positions);
  // [B,T,heads*hd] -> RoPE per head -> [B,T,heads*hd], the packed layout GroupQueryAttention reads
  const ropePacked = (y: string, heads: number): string =>
    g.node('Reshape', [rope(g.node('Reshape', [y, g.i64([0, 0, heads, hd])])), g.i64([0, 0, heads * hd])]);

  let x = embeds;
  for (let l = 0; l < t.numLayers; l++) {
    x = g.withScope(`layers.${l}/`, () => {
      const p = `language_model.layers.${l}.`;
      const n = deviceCacheNames(l);
      const h = toCompute(ctx, rmsNorm(ctx, x, `${p}input_layernorm.weight`, t.rmsNormEps));
      const q = ropePacked(linear(ctx, h, `${p}self_attn.q_proj`, { bias: true }), H);
      const k = ropePacked(linear(ctx, h, `${p}self_attn.k_proj`, { bias: true }), kvH);
      const v = linear(ctx, h, `${p}self_attn.v_proj`, { bias: true });
      const [context, presentKey, presentValue] = g.nodeMulti(
        'GroupQueryAttention',
        [q, k, v, pastKeys[l]!, pastValues[l]!, seqlensK, totalLength],
        3,
        { num_heads: attr.int(H), kv_num_heads: attr.int(kvH), scale: attr.float(1 / Math.sqrt(hd)) },
        'com.microsoft',
      ) as [string, string, string];
      g.output(presentKey, n.presentKey, cacheType, ['batch', kvH, 'capacity', hd]);
      g.output(presentValue, n.presentValue, cacheType, ['batch', kvH, 'capacity', hd]);
      const attnOut = toFloat(ctx, linear(ctx, context, `${p}self_attn.o_proj`, { bias: false }));
      const x1 = g.node('Add', [x, attnOut]);

      return mlpResidual(ctx, x1, l);
    });
  }

  logitsOutput(ctx, checkpoint, x, options.allPositionLogits);
  return ctx;
}
