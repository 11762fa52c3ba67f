// How PEFT names LoRA weights, and how those names map onto vistyle's canonical module names.
// A PEFT file stores `base_model.model.<module>.lora_A.weight` [r, in] and `.lora_B.weight`
// [out, r], where <module> is the module's path in the transformers model it was trained on:
//   transformers <= 4.51: language_model.model.layers.N.self_attn.q_proj
//                         vision_tower.vision_model.encoder.layers.N.self_attn.out_proj
//   transformers >= 4.52: model.language_model.layers.N.self_attn.q_proj
//                         model.vision_tower.vision_model.encoder.layers.N.self_attn.out_proj
// Canonical (models/manifest.ts): language_model.layers.N.self_attn.q_proj,
//                                 vision_tower.encoder.layers.N.self_attn.out_proj
import { canonicalTensorName, fileTensorName, type TensorLayout } from '../checkpoint/names.js';

export type { TensorLayout };

export const PEFT_PREFIX = 'base_model.model.';
export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

/** The key of a module's LoRA A or B weight in adapter_model.safetensors. */
export function peftWeightKey(module: string, which: 'A' | 'B'): string {
  return `${PEFT_PREFIX}${module}.lora_${which}.weight`;
}

// Saved adapters drop the adapter name (`lora_A.weight`); some tools keep it (`lora_A.default.weight`).
const LORA_KEY = /^base_model\.model\.(.+)\.lora_(A|B)(?:\.[A-Za-z0-9_-]+)?\.weight$/;

/** The module and the half (A or B) a safetensors key holds, or null for any other tensor. */
export function parsePeftWeightKey(key: string): { module: string; which: 'A' | 'B' } | null {
  const match = LORA_KEY.exec(key);
  return match ? { module: match[1]!, which: match[2] as 'A' | 'B' } : null;
}

/** Canonical module name of a module named in either transformers layout, or undefined. */
export function canonicalModuleName(module: string): string | undefined {
  return canonicalTensorName(module);
}

/** A canonical module's name in the given transformers layout. */
export function layoutModuleName(canonical: string, layout: TensorLayout): string {
  return fileTensorName(canonical, layout);
}

/** The layout of an adapter's module names (null when none says). */
export function detectModuleLayout(modules: Iterable<string>): TensorLayout | null {
  for (const module of modules) {
    if (module.startsWith('model.language_model.') || module.startsWith('model.vision_tower.')) return 'current';
    if (module.startsWith('model.multi_modal_projector.')) return 'current';
    if (module.startsWith('language_model.model.') || module.startsWith('vision_tower.vision_model.')) return 'legacy';
  }
  return null;
}

/** Why a (canonical) module can never carry LoRA in vistyle, or null if it is an attention projection. */
export function nonTargetReason(canonical: string): string | null {
  if (canonical.startsWith('multi_modal_projector.')) return 'the projector is not a LoRA target';
  if (/\.mlp\./.test(canonical)) return 'MLP layers are not LoRA targets';
  if (!/\.self_attn\.(q_proj|k_proj|v_proj|o_proj|out_proj)$/.test(canonical)) return 'only attention projections are LoRA targets';
  return null;
}
