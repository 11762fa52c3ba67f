// Shared bits of the LoRA tests: the attention-projection targets of a tiny checkpoint, and
// random LoRA weights for them.
import type { LoraTarget } from '../../models/manifest.js';
import type { LoraModuleWeights } from '../../models/lora/writer.js';

export interface TinyDims {
  textHidden: number;
  textLayers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  visionHidden: number;
  visionLayers: number;
}

/** tests/fixtures/tiny-a's dimensions. */
export const TINY_A: TinyDims = { textHidden: 64, textLayers: 2, heads: 4, kvHeads: 2, headDim: 16, visionHidden: 32, visionLayers: 2 };

/** Every attention projection of both towers, with made-up input names. */
export function attentionTargets(dims: TinyDims = TINY_A): LoraTarget[] {
  const targets: LoraTarget[] = [];
  const add = (module: string, graph: 'vision' | 'decoder', inFeatures: number, outFeatures: number): void => {
    targets.push({ module, graph, inputA: `lora_A.${module}`, inputB: `lora_B.${module}`, inFeatures, outFeatures });
  };
  for (let i = 0; i < dims.visionLayers; i++) {
    for (const p of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      add(`vision_tower.encoder.layers.${i}.self_attn.${p}`, 'vision', dims.visionHidden, dims.visionHidden);
    }
  }
  const q = dims.heads * dims.headDim;
  const kv = dims.kvHeads * dims.headDim;
  for (let i = 0; i < dims.textLayers; i++) {
    const p = `language_model.layers.${i}.self_attn.`;
    add(`${p}q_proj`, 'decoder', dims.textHidden, q);
    add(`${p}k_proj`, 'decoder', dims.textHidden, kv);
    add(`${p}v_proj`, 'decoder', dims.textHidden, kv);
    add(`${p}o_proj`, 'decoder', q, dims.textHidden);
  }
  return targets;
}

/** Deterministic pseudo-random numbers (mulberry32), roughly uniform in [-amp, amp). */
export function randomValues(seed: number, count: number, amp: number): Float32Array {
  let state = seed >>> 0;
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const u = ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    out[i] = (u * 2 - 1) * amp;
  }
  return out;
}

/** Random (non-zero) LoRA weights for each target. */
export function randomLoraWeights(targets: readonly LoraTarget[], rank: number | ((t: LoraTarget) => number), seed = 7, amp = 0.2): LoraModuleWeights[] {
  return targets.map((target, index) => {
    const r = typeof rank === 'number' ? rank : rank(target);
    return {
      module: target.module,
      inFeatures: target.inFeatures,
      outFeatures: target.outFeatures,
      rank: r,
      A: randomValues(seed * 1000 + index * 2, r * target.inFeatures, amp),
      B: randomValues(seed * 1000 + index * 2 + 1, target.outFeatures * r, amp),
    };
  });
}
