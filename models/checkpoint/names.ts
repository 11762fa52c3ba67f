// Tensor names. vistyle uses one canonical form, independent of the transformers version that saved
// the checkpoint: `language_model.layers.N…`, `language_model.embed_tokens.weight`,
// `language_model.norm.weight`, `lm_head.weight`, `vision_tower.embeddings…`,
// `vision_tower.encoder.layers.N…`, `multi_modal_projector.linear_1…`.
// Checkpoints come in two layouts:
//   legacy  (transformers <= 4.51): language_model.model.X, language_model.lm_head.weight,
//                                   vision_tower.vision_model.X, multi_modal_projector.X
//   current (transformers >= 4.52): model.language_model.X, lm_head.weight,
//                                   model.vision_tower.vision_model.X, model.multi_modal_projector.X
import type { LlavaConfig } from './config.js';

export type TensorLayout = 'legacy' | 'current';

/** The name a canonical tensor has in a checkpoint of the given layout. */
export function fileTensorName(canonical: string, layout: TensorLayout): string {
  const legacy = layout === 'legacy';
  if (canonical === 'lm_head.weight') return legacy ? 'language_model.lm_head.weight' : 'lm_head.weight';
  if (canonical.startsWith('language_model.')) {
    const rest = canonical.slice('language_model.'.length);
    return legacy ? `language_model.model.${rest}` : `model.language_model.${rest}`;
  }
  if (canonical.startsWith('vision_tower.')) {
    const rest = canonical.slice('vision_tower.'.length);
    return legacy ? `vision_tower.vision_model.${rest}` : `model.vision_tower.vision_model.${rest}`;
  }
  if (canonical.startsWith('multi_modal_projector.')) return legacy ? canonical : `model.${canonical}`;
  throw new Error(`not a canonical tensor name: ${canonical}`);
}

/** The canonical name of a checkpoint tensor in either layout, or undefined if it is none of ours. */
export function canonicalTensorName(name: string): string | undefined {
  const rules: Array<[string, string]> = [
    ['language_model.model.', 'language_model.'],
    ['model.language_model.', 'language_model.'],
    ['language_model.lm_head.', 'lm_head.'],
    ['lm_head.', 'lm_head.'],
    ['vision_tower.vision_model.', 'vision_tower.'],
    ['model.vision_tower.vision_model.', 'vision_tower.'],
    ['multi_modal_projector.', 'multi_modal_projector.'],
    ['model.multi_modal_projector.', 'multi_modal_projector.'],
  ];
  for (const [from, to] of rules) if (name.startsWith(from)) return to + name.slice(from.length);
  return undefined;
}

export function detectLayout(names: Iterable<string>): TensorLayout {
  for (const name of names) {
    if (name.startsWith('model.language_model.') || name.startsWith('model.vision_tower.')) return 'current';
    if (name.startsWith('language_model.model.') || name.startsWith('vision_tower.vision_model.')) return 'legacy';
  }
  return 'legacy';
}

/** Every tensor the model needs, canonical name -> shape. lm_head only when it is not tied. */
export function expectedTensors(config: LlavaConfig, options: { untied: boolean }): Map<string, number[]> {
  const t = config.text;
  const v = config.vision;
  const out = new Map<string, number[]>();
  const D = t.hiddenSize;
  const qDim = t.numHeads * t.headDim;
  const kvDim = t.numKvHeads * t.headDim;
  out.set('language_model.embed_tokens.weight', [t.vocabSize, D]);
  for (let i = 0; i < t.numLayers; i++) {
    const p = `language_model.layers.${i}.`;
    out.set(`${p}input_layernorm.weight`, [D]);
    out.set(`${p}self_attn.q_proj.weight`, [qDim, D]);
    out.set(`${p}self_attn.q_proj.bias`, [qDim]);
    out.set(`${p}self_attn.k_proj.weight`, [kvDim, D]);
    out.set(`${p}self_attn.k_proj.bias`, [kvDim]);
    out.set(`${p}self_attn.v_proj.weight`, [kvDim, D]);
    out.set(`${p}self_attn.v_proj.bias`, [kvDim]);
    out.set(`${p}self_attn.o_proj.weight`, [D, qDim]);
    out.set(`${p}post_attention_layernorm.weight`, [D]);
    out.set(`${p}mlp.gate_proj.weight`, [t.intermediateSize, D]);
    out.set(`${p}mlp.up_proj.weight`, [t.intermediateSize, D]);
    out.set(`${p}mlp.down_proj.weight`, [D, t.intermediateSize]);
  }
  out.set('language_model.norm.weight', [D]);
  if (options.untied) out.set('lm_head.weight', [t.vocabSize, D]);

  const Dv = v.hiddenSize;
  out.set('vision_tower.embeddings.patch_embedding.weight', [Dv, v.numChannels, v.patchSize, v.patchSize]);
  out.set('vision_tower.embeddings.patch_embedding.bias', [Dv]);
  out.set('vision_tower.embeddings.position_embedding.weight', [v.numPatches, Dv]);
  for (let i = 0; i < v.numLayers; i++) {
    const p = `vision_tower.encoder.layers.${i}.`;
    for (const ln of ['layer_norm1', 'layer_norm2']) {
      out.set(`${p}${ln}.weight`, [Dv]);
      out.set(`${p}${ln}.bias`, [Dv]);
    }
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      out.set(`${p}self_attn.${proj}.weight`, [Dv, Dv]);
      out.set(`${p}self_attn.${proj}.bias`, [Dv]);
    }
    out.set(`${p}mlp.fc1.weight`, [v.intermediateSize, Dv]);
    out.set(`${p}mlp.fc1.bias`, [v.intermediateSize]);
    out.set(`${p}mlp.fc2.weight`, [Dv, v.intermediateSize]);
    out.set(`${p}mlp.fc2.bias`, [Dv]);
  }
  out.set('multi_modal_projector.linear_1.weight', [D, Dv]);
  out.set('multi_modal_projector.linear_2.weight', [D, D]);
  if (config.projectorBias) {
    out.set('multi_modal_projector.linear_1.bias', [D]);
    out.set('multi_modal_projector.linear_2.bias', [D]);
  }
  return out;
}
