// vision.onnx: pixel_values float32 [B,C,S,S] -> image_features float32 [B,N,D].
// SigLIP: stride-p patch conv with valid padding (trailing pixels dropped), + position embedding,
// pre-LN encoder layers (bidirectional attention, MLP with the config's activation), the hidden
// state that vision_feature_layer selects (only the layers up to it are built; post_layernorm is
// never applied), strategy "default" drops the first patch, then the projector
// linear_1 -> projector_hidden_act -> linear_2.
import type { Checkpoint } from '../checkpoint/reader.js';
import { attr, GraphBuilder } from '../onnx/builder.js';
import { DataType } from '../onnx/schema.js';
import type { QuantSpec } from './quantize.js';
import {
  activation, computeScalar, layerNorm, linear, makeContext, tensorInit, toCompute, toFloat,
  type BuildDtype, type GraphContext,
} from './common.js';

/** `quant`: weight-only quantization of the encoder's and the projector's linear layers. */
export function buildVisionGraph(
  checkpoint: Checkpoint,
  dtype: BuildDtype,
  loraModules: ReadonlySet<string>,
  quant: QuantSpec | null = null,
): GraphContext {
  const g = new GraphBuilder('vistyle_vision');
  const ctx = makeContext(g, checkpoint, dtype, 'vision', loraModules, quant);
  const cfg = checkpoint.config;
  const v = cfg.vision;
  const Dv = v.hiddenSize;
  const H = v.numHeads;
  const hd = v.headDim;

  const pixels = g.input('pixel_values', DataType.FLOAT, ['batch', v.numChannels, v.imageSize, v.imageSize]);
  // The patch conv stays float32 (small weights; it sees raw pixel values).
  const conv = g.node(
    'Conv',
    [
      pixels,
      tensorInit(ctx, 'vision_tower.embeddings.patch_embedding.weight', DataType.FLOAT),
      tensorInit(ctx, 'vision_tower.embeddings.patch_embedding.bias', DataType.FLOAT),
    ],
    { kernel_shape: attr.ints([v.patchSize, v.patchSize]), strides: attr.ints([v.patchSize, v.patchSize]) },
  );
  // [B, Dv, g, g] -> [B, P, Dv] (row-major patch order)
  const patches = g.node('Transpose', [g.node('Reshape', [conv, g.i64([0, Dv, -1])])], { perm: attr.ints([0, 2, 1]) });
  let x = g.node('Add', [patches, tensorInit(ctx, 'vision_tower.embeddings.position_embedding.weight', DataType.FLOAT)]);

  const scale = computeScalar(ctx, 1 / Math.sqrt(hd));
  for (let l = 0; l < cfg.featureLayerIndex; l++) {
    x = g.withScope(`vision.layers.${l}/`, () => {
      const p = `vision_tower.encoder.layers.${l}.`;
      const h = toCompute(ctx, layerNorm(ctx, x, `${p}layer_norm1`, v.layerNormEps));
      const heads = (t: string, perm: number[]): string =>
        g.node('Transpose', [g.node('Reshape', [t, g.i64([0, 0, H, hd])])], { perm: attr.ints(perm) });
      const q = heads(g.node('Mul', [linear(ctx, h, `${p}self_attn.q_proj`, { bias: true }), scale]), [0, 2, 1, 3]); // [B,H,P,hd]
      const kT = heads(linear(ctx, h, `${p}self_attn.k_proj`, { bias: true }), [0, 2, 3, 1]); // [B,H,hd,P]
      const val = heads(linear(ctx, h, `${p}self_attn.v_proj`, { bias: true }), [0, 2, 1, 3]); // [B,H,P,hd]
      const scores = toFloat(ctx, g.node('MatMul', [q, kT]));
      const probs = toCompute(ctx, g.node('Softmax', [scores], { axis: attr.int(-1) }));
      const attn = g.node('Transpose', [g.node('MatMul', [probs, val])], { perm: attr.ints([0, 2, 1, 3]) });
      const merged = g.node('Reshape', [attn, g.i64([0, 0, Dv])]);
      const out = toFloat(ctx, linear(ctx, merged, `${p}self_attn.out_proj`, { bias: true }));
      const x1 = g.node('Add', [x, out]);
      const h2 = toCompute(ctx, layerNorm(ctx, x1, `${p}layer_norm2`, v.layerNormEps));
      const f1 = activation(ctx, linear(ctx, h2, `${p}mlp.fc1`, { bias: true }), v.hiddenAct);
      const f2 = toFloat(ctx, linear(ctx, f1, `${p}mlp.fc2`, { bias: true }));
      return g.node('Add', [x1, f2]);
    });
  }

  let selected = x;
  if (cfg.selectStrategy === 'default') {
    selected = g.node('Slice', [x, g.i64([1]), g.i64([Number.MAX_SAFE_INTEGER]), g.i64([1])]);
  }
  const bias = cfg.projectorBias;
  const p1 = linear(ctx, toCompute(ctx, selected), 'multi_modal_projector.linear_1', { bias });
  const p2 = linear(ctx, activation(ctx, p1, cfg.projectorAct), 'multi_modal_projector.linear_2', { bias });
  g.output(toFloat(ctx, p2), 'image_features', DataType.FLOAT, ['batch', cfg.imageTokens, cfg.text.hiddenSize]);
  return ctx;
}
