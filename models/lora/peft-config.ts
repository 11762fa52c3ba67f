// adapter_config.json of a Hugging Face PEFT LoRA adapter: the fields vistyle reads, validated, and
// the PEFT rules for which modules an adapter targets and with which rank and alpha.
// Fields vistyle cannot honour at run time (DoRA, trained biases, fully saved modules, transposed
// weights) are refused rather than silently ignored: the adapter would not do what it was trained to.
import { z } from 'zod';

export const PeftConfigSchema = z
  .object({
    peft_type: z.string().optional(),
    r: z.number().int().positive(),
    lora_alpha: z.number().positive(),
    target_modules: z.union([z.array(z.string()), z.string(), z.null()]).optional(),
    rank_pattern: z.record(z.string(), z.number().int().positive()).nullish(),
    alpha_pattern: z.record(z.string(), z.number().positive()).nullish(),
    use_rslora: z.boolean().nullish(),
    use_dora: z.boolean().nullish(),
    fan_in_fan_out: z.boolean().nullish(),
    bias: z.string().nullish(),
    modules_to_save: z.array(z.string()).nullish(),
    layers_to_transform: z.union([z.number().int(), z.array(z.number().int()), z.null()]).optional(),
    layers_pattern: z.union([z.string(), z.array(z.string()), z.null()]).optional(),
    exclude_modules: z.union([z.array(z.string()), z.string(), z.null()]).optional(),
    base_model_name_or_path: z.string().nullish(),
  })
  .loose();
export type PeftConfig = z.infer<typeof PeftConfigSchema>;

/** Why this config cannot be applied at run time, or null when it can. */
export function unsupportedFeature(config: PeftConfig): string | null {
  if (config.peft_type !== undefined && config.peft_type.toUpperCase() !== 'LORA') {
    return `peft_type is ${config.peft_type}; only LORA adapters are supported`;
  }
  if (config.use_dora) return 'use_dora is true; DoRA adapters are not supported';
  if (config.fan_in_fan_out) return 'fan_in_fan_out is true; only nn.Linear-style LoRA weights are supported';
  if (config.bias && config.bias !== 'none') return `bias is "${config.bias}"; adapters that train biases are not supported`;
  if (config.modules_to_save && config.modules_to_save.length > 0) {
    return `modules_to_save (${config.modules_to_save.join(', ')}) would replace whole modules; not supported`;
  }
  return null;
}

/** PEFT's rule for rank_pattern / alpha_pattern keys: the module name itself, or a regex on its tail. */
function patternKeyFor(patterns: Record<string, number>, module: string): string | undefined {
  for (const key of Object.keys(patterns)) {
    if (key === module) return key;
  }
  for (const key of Object.keys(patterns)) {
    if (safeRegex(`^(?:.*\\.)?(?:${key})$`)?.test(module)) return key;
  }
  return undefined;
}

/** Rank and alpha of one module (named as in the adapter file, without `base_model.model.`). */
export function rankAndAlpha(config: PeftConfig, module: string): { rank: number; alpha: number } {
  const rankKey = config.rank_pattern ? patternKeyFor(config.rank_pattern, module) : undefined;
  const alphaKey = config.alpha_pattern ? patternKeyFor(config.alpha_pattern, module) : undefined;
  return {
    rank: rankKey !== undefined ? config.rank_pattern![rankKey]! : config.r,
    alpha: alphaKey !== undefined ? config.alpha_pattern![alphaKey]! : config.lora_alpha,
  };
}

/** The factor PEFT multiplies B·A by: alpha / r, or alpha / sqrt(r) with rsLoRA. */
export function loraScale(config: PeftConfig, rank: number, alpha: number): number {
  return config.use_rslora ? alpha / Math.sqrt(rank) : alpha / rank;
}

const LAYER_INDEX = /\.(?:layers|h|blocks|layer)\.(\d+)\./;

/**
 * Whether PEFT would have put LoRA on this module (named as in the model the adapter was trained
 * on): target_modules as a regex matched against the whole name, or a list of exact names / name
 * suffixes; then exclude_modules and layers_to_transform.
 */
export function isTargetedBy(config: PeftConfig, module: string): boolean {
  const targets = config.target_modules;
  if (targets === undefined || targets === null) return false;
  let hit: boolean;
  if (typeof targets === 'string') {
    hit = targets === 'all-linear' ? true : (safeRegex(`^(?:${targets})$`)?.test(module) ?? false);
  } else {
    hit = targets.some((t) => module === t || module.endsWith(`.${t}`));
  }
  if (!hit) return false;
  const exclude = config.exclude_modules;
  if (typeof exclude === 'string' && safeRegex(`^(?:${exclude})$`)?.test(module)) return false;
  if (Array.isArray(exclude) && exclude.some((t) => module === t || module.endsWith(`.${t}`))) return false;
  const layers = config.layers_to_transform;
  if (layers !== undefined && layers !== null) {
    const wanted = Array.isArray(layers) ? layers : [layers];
    const match = LAYER_INDEX.exec(module);
    if (!match || !wanted.includes(Number(match[1]))) return false;
  }
  return true;
}

function safeRegex(source: string): RegExp | undefined {
  try {
    return new RegExp(source);
  } catch {
    return undefined;
  }
}
