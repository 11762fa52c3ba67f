// config.json of a LLaVA checkpoint (SigLIP vision tower + projector + Qwen2 decoder), validated and
// normalised. Every dimension comes from here; fields HF gives defaults get the same defaults
// (LlavaConfig, Qwen2Config, SiglipVisionConfig). The fields that fix tensor shapes are required:
// HF's defaults for them belong to other models (Llama-7B, SigLIP-base) and would only fail later.
import { z } from 'zod';
import { checkpointError, parseWith } from './validate.js';

const FILE = 'config.json';

const posInt = z.number().int().positive();
const tokenId = z.number().int().nonnegative();
const tokenIds = z.union([tokenId, z.array(tokenId)]);

const TextConfigSchema = z.object({
  model_type: z.string(),
  hidden_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  num_key_value_heads: posInt.nullish(),
  head_dim: posInt.nullish(),
  intermediate_size: posInt,
  vocab_size: posInt,
  rms_norm_eps: z.number().positive().nullish(),
  rope_theta: z.number().positive().nullish(),
  rope_scaling: z.record(z.string(), z.unknown()).nullish(),
  hidden_act: z.string().nullish(),
  max_position_embeddings: posInt.nullish(),
  use_sliding_window: z.boolean().nullish(),
  tie_word_embeddings: z.boolean().nullish(),
  bos_token_id: tokenId.nullish(),
  eos_token_id: tokenIds.nullish(),
  pad_token_id: tokenId.nullish(),
});

const VisionConfigSchema = z.object({
  model_type: z.string().nullish(),
  hidden_size: posInt,
  num_hidden_layers: posInt,
  num_attention_heads: posInt,
  intermediate_size: posInt,
  image_size: posInt,
  patch_size: posInt,
  num_channels: posInt.nullish(),
  layer_norm_eps: z.number().positive().nullish(),
  hidden_act: z.string().nullish(),
});

const LlavaConfigSchema = z.object({
  model_type: z.string(),
  text_config: TextConfigSchema,
  vision_config: VisionConfigSchema,
  image_token_index: tokenId.nullish(),
  image_token_id: tokenId.nullish(),
  image_seq_length: posInt.nullish(),
  vision_feature_layer: z.union([z.number().int(), z.array(z.number().int())]).nullish(),
  vision_feature_select_strategy: z.enum(['default', 'full']).nullish(),
  projector_hidden_act: z.string().nullish(),
  multimodal_projector_bias: z.boolean().nullish(),
  tie_word_embeddings: z.boolean().nullish(),
  eos_token_id: tokenIds.nullish(),
  pad_token_id: tokenId.nullish(),
});

/** Activations the graphs implement, by the names transformers uses (ACT2FN). */
export type Activation = 'silu' | 'gelu_erf' | 'gelu_tanh' | 'quick_gelu' | 'relu';

const ACTIVATIONS: Record<string, Activation> = {
  silu: 'silu',
  swish: 'silu',
  gelu: 'gelu_erf',
  gelu_python: 'gelu_erf',
  gelu_pytorch_tanh: 'gelu_tanh',
  gelu_new: 'gelu_tanh',
  gelu_fast: 'gelu_tanh',
  quick_gelu: 'quick_gelu',
  relu: 'relu',
};

function activation(name: string, field: string): Activation {
  const act = ACTIVATIONS[name];
  if (!act) {
    throw checkpointError(`${FILE}: ${field} "${name}" is not supported (supported: ${Object.keys(ACTIVATIONS).join(', ')})`);
  }
  return act;
}

export interface TextConfig {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  hiddenAct: Activation;
  maxPositionEmbeddings: number;
  /** From config.json: text_config's value (what Qwen2ForCausalLM.tie_weights reads), else the top
   *  level's; undefined when neither sets it (the reader then ties when lm_head.weight is absent). */
  tieWordEmbeddings: boolean | undefined;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
}

export interface VisionConfig {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  headDim: number;
  intermediateSize: number;
  imageSize: number;
  patchSize: number;
  numChannels: number;
  layerNormEps: number;
  hiddenAct: Activation;
  /** Patches per side: floor(imageSize / patchSize) (the conv drops trailing pixels). */
  gridSize: number;
  numPatches: number;
}

export interface LlavaConfig {
  text: TextConfig;
  vision: VisionConfig;
  imageTokenId: number;
  imageSeqLength: number | null;
  /** vision_feature_layer as written. */
  featureLayer: number;
  /** Index into hidden_states (0 = embeddings, i = output of layer i): the vision layers to run. */
  featureLayerIndex: number;
  selectStrategy: 'default' | 'full';
  projectorAct: Activation;
  projectorBias: boolean;
  /** Image feature rows per image = image tokens in the prompt. */
  imageTokens: number;
}

function asList(v: number | number[] | null | undefined): number[] {
  if (v === null || v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

export function parseLlavaConfig(raw: unknown): LlavaConfig {
  const c = parseWith(LlavaConfigSchema, raw, FILE);
  if (c.model_type !== 'llava') {
    throw checkpointError(`${FILE}: model_type is "${c.model_type}", expected "llava" (LlavaForConditionalGeneration)`);
  }
  const t = c.text_config;
  if (t.model_type !== 'qwen2') {
    throw checkpointError(`${FILE}: text_config.model_type is "${t.model_type}", only "qwen2" is supported`);
  }
  const v = c.vision_config;
  if (v.model_type !== undefined && v.model_type !== null && v.model_type !== 'siglip_vision_model') {
    throw checkpointError(`${FILE}: vision_config.model_type is "${v.model_type}", only "siglip_vision_model" is supported`);
  }
  if (t.rope_scaling) {
    const kind = t.rope_scaling.rope_type ?? t.rope_scaling.type;
    if (kind !== 'default') {
      throw checkpointError(`${FILE}: text_config.rope_scaling (${JSON.stringify(kind)}) is not supported`);
    }
  }
  if (t.use_sliding_window) {
    throw checkpointError(`${FILE}: text_config.use_sliding_window is true, sliding-window attention is not supported`);
  }

  const numHeads = t.num_attention_heads;
  const numKvHeads = t.num_key_value_heads ?? numHeads;
  if (numHeads % numKvHeads !== 0) {
    throw checkpointError(`${FILE}: text_config.num_attention_heads (${numHeads}) is not a multiple of num_key_value_heads (${numKvHeads})`);
  }
  if (t.head_dim === undefined || t.head_dim === null) {
    if (t.hidden_size % numHeads !== 0) {
      throw checkpointError(`${FILE}: text_config.hidden_size (${t.hidden_size}) is not divisible by num_attention_heads (${numHeads})`);
    }
  }
  const headDim = t.head_dim ?? t.hidden_size / numHeads;
  if (headDim % 2 !== 0) throw checkpointError(`${FILE}: text_config head_dim ${headDim} must be even for RoPE`);
  if (v.hidden_size % v.num_attention_heads !== 0) {
    throw checkpointError(`${FILE}: vision_config.hidden_size (${v.hidden_size}) is not divisible by num_attention_heads (${v.num_attention_heads})`);
  }

  const imageTokenId = c.image_token_index ?? c.image_token_id;
  if (imageTokenId === undefined || imageTokenId === null) throw checkpointError(`${FILE}: image_token_index is missing`);

  const rawLayer = c.vision_feature_layer ?? -2; // LlavaConfig's default
  if (Array.isArray(rawLayer)) {
    throw checkpointError(`${FILE}: vision_feature_layer is a list (${JSON.stringify(rawLayer)}); only a single layer is supported`);
  }
  const nv = v.num_hidden_layers;
  const featureLayerIndex = rawLayer < 0 ? nv + 1 + rawLayer : rawLayer;
  if (featureLayerIndex < 0 || featureLayerIndex > nv) {
    throw checkpointError(`${FILE}: vision_feature_layer ${rawLayer} is out of range for ${nv} vision layers`);
  }

  const gridSize = Math.floor(v.image_size / v.patch_size);
  if (gridSize < 1) throw checkpointError(`${FILE}: vision_config.image_size ${v.image_size} is smaller than patch_size ${v.patch_size}`);
  const numPatches = gridSize * gridSize;
  const selectStrategy = c.vision_feature_select_strategy ?? 'default';
  const imageTokens = selectStrategy === 'default' ? numPatches - 1 : numPatches;
  if (imageTokens < 1) throw checkpointError(`${FILE}: the "default" strategy leaves no image features for a 1-patch image`);

  const eos = asList(t.eos_token_id);
  return {
    text: {
      hiddenSize: t.hidden_size,
      numLayers: t.num_hidden_layers,
      numHeads,
      numKvHeads,
      headDim,
      intermediateSize: t.intermediate_size,
      vocabSize: t.vocab_size,
      rmsNormEps: t.rms_norm_eps ?? 1e-6,
      ropeTheta: t.rope_theta ?? 10000,
      hiddenAct: activation(t.hidden_act ?? 'silu', 'text_config.hidden_act'),
      maxPositionEmbeddings: t.max_position_embeddings ?? 32768,
      tieWordEmbeddings: t.tie_word_embeddings ?? c.tie_word_embeddings ?? undefined,
      bosTokenId: t.bos_token_id ?? null,
      eosTokenIds: eos.length > 0 ? eos : asList(c.eos_token_id),
      padTokenId: t.pad_token_id ?? c.pad_token_id ?? null,
    },
    vision: {
      hiddenSize: v.hidden_size,
      numLayers: nv,
      numHeads: v.num_attention_heads,
      headDim: v.hidden_size / v.num_attention_heads,
      intermediateSize: v.intermediate_size,
      imageSize: v.image_size,
      patchSize: v.patch_size,
      numChannels: v.num_channels ?? 3,
      layerNormEps: v.layer_norm_eps ?? 1e-6,
      hiddenAct: activation(v.hidden_act ?? 'gelu_pytorch_tanh', 'vision_config.hidden_act'),
      gridSize,
      numPatches,
    },
    imageTokenId,
    imageSeqLength: c.image_seq_length ?? null,
    featureLayer: rawLayer,
    featureLayerIndex,
    selectStrategy,
    projectorAct: activation(c.projector_hidden_act ?? 'gelu', 'projector_hidden_act'),
    projectorBias: c.multimodal_projector_bias ?? true,
    imageTokens,
  };
}
