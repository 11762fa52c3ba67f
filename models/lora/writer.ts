// Writes a LoRA adapter in the Hugging Face PEFT format, exactly as PEFT's save_pretrained does for
// a LlavaForConditionalGeneration: adapter_config.json (LORA, r, lora_alpha, target_modules, ...)
// and adapter_model.safetensors with `base_model.model.<module>.lora_A.weight` [r, in] and
// `.lora_B.weight` [out, r]. The Python trainer (models/training) writes the same names; the tests
// use this writer to make adapters for tiny checkpoints.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors, type TensorToWrite } from '../checkpoint/safetensors.js';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, layoutModuleName, peftWeightKey, type TensorLayout } from './names.js';

export interface LoraModuleWeights {
  /** Canonical module name (models/manifest.ts), e.g. language_model.layers.0.self_attn.q_proj. */
  module: string;
  inFeatures: number;
  outFeatures: number;
  rank: number;
  /** [rank, inFeatures], row-major. */
  A: Float32Array;
  /** [outFeatures, rank], row-major (not scaled). */
  B: Float32Array;
}

export interface WritePeftAdapterOptions {
  modules: LoraModuleWeights[];
  /** The config's r (modules of another rank go into rank_pattern). */
  rank: number;
  alpha: number;
  /** Per-module alpha, keyed by the module name as written (PEFT's alpha_pattern). */
  alphaPattern?: Record<string, number>;
  useRslora?: boolean;
  /** transformers layout of the module names (default legacy, as transformers <= 4.51 saves). */
  layout?: TensorLayout;
  dtype?: 'F32' | 'F16' | 'BF16';
  /** Default: the short names of the modules written (q_proj, ..., out_proj). */
  targetModules?: string[] | string;
  baseModel?: string;
  /** Extra config fields (to test how the loader treats them). */
  extraConfig?: Record<string, unknown>;
}

/** The adapter_config.json PEFT writes for these options. */
export function peftConfigJson(options: WritePeftAdapterOptions): Record<string, unknown> {
  const layout = options.layout ?? 'legacy';
  const rankPattern: Record<string, number> = {};
  for (const module of options.modules) {
    if (module.rank !== options.rank) rankPattern[layoutModuleName(module.module, layout)] = module.rank;
  }
  const shortNames = [...new Set(options.modules.map((module) => module.module.split('.').at(-1)!))];
  return {
    alpha_pattern: options.alphaPattern ?? {},
    auto_mapping: null,
    base_model_name_or_path: options.baseModel ?? 'llava-hf/llava-interleave-qwen-0.5b-hf',
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layers_pattern: null,
    layers_to_transform: null,
    lora_alpha: options.alpha,
    lora_dropout: 0.05,
    modules_to_save: null,
    peft_type: 'LORA',
    r: options.rank,
    rank_pattern: rankPattern,
    revision: null,
    target_modules: options.targetModules ?? shortNames,
    task_type: null,
    use_dora: false,
    use_rslora: options.useRslora ?? false,
    ...options.extraConfig,
  };
}

export function writePeftAdapter(dir: string, options: WritePeftAdapterOptions): void {
  const layout = options.layout ?? 'legacy';
  const dtype = options.dtype ?? 'F32';
  mkdirSync(dir, { recursive: true });
  const tensors: TensorToWrite[] = [];
  for (const module of options.modules) {
    if (module.A.length !== module.rank * module.inFeatures || module.B.length !== module.outFeatures * module.rank) {
      throw new Error(`LoRA weights of ${module.module} do not match rank ${module.rank}, ${module.inFeatures} -> ${module.outFeatures}`);
    }
    const name = layoutModuleName(module.module, layout);
    tensors.push(
      { name: peftWeightKey(name, 'A'), dtype, shape: [module.rank, module.inFeatures], data: () => module.A },
      { name: peftWeightKey(name, 'B'), dtype, shape: [module.outFeatures, module.rank], data: () => module.B },
    );
  }
  tensors.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0)); // safetensors' own order
  writeSafetensors(join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: 'pt' });
  writeFileSync(join(dir, ADAPTER_CONFIG_FILE), `${JSON.stringify(peftConfigJson(options), null, 2)}\n`);
}
