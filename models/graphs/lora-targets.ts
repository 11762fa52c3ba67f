// Which projections get LoRA inputs. Entries follow PEFT's target_modules matching: an entry
// matches a module when it equals the module's name or is a dot-separated suffix of it, so the
// short name `q_proj` matches the decoder's and the vision tower's q_proj. Full or partial paths
// may be written in either checkpoint layout (or with PEFT's `base_model.model.` prefix).
// Only attention projections can be targets: the projector and the MLPs are refused.
import type { LlavaConfig } from '../checkpoint/config.js';
import { canonicalTensorName } from '../checkpoint/names.js';
import { VistyleError } from '../../src/errors.js';

/** The seed's adapters: q/k/v/o of the decoder, q/k/v/out of the vision tower. */
export const DEFAULT_LORA_TARGETS = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'out_proj'];

const DECODER_PROJ = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];
const VISION_PROJ = ['q_proj', 'k_proj', 'v_proj', 'out_proj'];
const REFUSED = /(^|\.)(multi_modal_projector|mlp|gate_proj|up_proj|down_proj|fc1|fc2|linear_1|linear_2|lm_head|embed_tokens|patch_embedding|position_embedding)(\.|$)/;

/** Every module that can carry LoRA inputs, canonical names, in graph order. */
export function loraCandidates(config: LlavaConfig): { vision: string[]; decoder: string[] } {
  const vision: string[] = [];
  // only the vision layers the graph computes (up to vision_feature_layer)
  for (let l = 0; l < config.featureLayerIndex; l++) {
    for (const p of VISION_PROJ) vision.push(`vision_tower.encoder.layers.${l}.self_attn.${p}`);
  }
  const decoder: string[] = [];
  for (let l = 0; l < config.text.numLayers; l++) {
    for (const p of DECODER_PROJ) decoder.push(`language_model.layers.${l}.self_attn.${p}`);
  }
  return { vision, decoder };
}

function normaliseEntry(entry: string): string {
  let e = entry.trim();
  if (e.startsWith('base_model.model.')) e = e.slice('base_model.model.'.length);
  if (e.endsWith('.weight')) e = e.slice(0, -'.weight'.length);
  return canonicalTensorName(e) ?? e;
}

/** Resolves target entries to the set of canonical module names; errors name the bad entry. */
export function resolveLoraTargets(config: LlavaConfig, entries: string[]): Set<string> {
  const { vision, decoder } = loraCandidates(config);
  const all = [...vision, ...decoder];
  const chosen = new Set<string>();
  for (const raw of entries) {
    if (raw.trim() === '') continue;
    const entry = normaliseEntry(raw);
    if (REFUSED.test(entry)) {
      throw new VistyleError('CONFIG_INVALID',
        `LoRA target "${raw}" is not supported: only attention projections (q_proj, k_proj, v_proj, o_proj, out_proj) can carry adapters, not the projector or MLPs`);
    }
    const matches = all.filter((m) => m === entry || m.endsWith(`.${entry}`));
    if (matches.length === 0) {
      // a vision layer past vision_feature_layer is a real module that never affects the output
      const unused = /^vision_tower\.encoder\.layers\.(\d+)\./.exec(entry);
      if (unused && Number(unused[1]) >= config.featureLayerIndex && Number(unused[1]) < config.vision.numLayers) continue;
      throw new VistyleError('CONFIG_INVALID',
        `LoRA target "${raw}" matches no attention projection (e.g. q_proj, language_model.layers.0.self_attn.v_proj, vision_tower.encoder.layers.0.self_attn.out_proj)`);
    }
    for (const m of matches) chosen.add(m);
  }
  return chosen;
}
