// Writes random LLaVA checkpoints (SigLIP + projector + Qwen2) in the Hugging Face folder format:
// config.json, model.safetensors (or shards + index), tokenizer.json, tokenizer_config.json,
// chat_template.json, preprocessor_config.json, processor_config.json, generation_config.json.
// Used by the whole test suite (tiny sizes) and by the benchmark (the real model's dimensions).
// Initialisation follows the reference fixtures so that a wrong norm, bias or activation shows.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileTensorName, type TensorLayout } from './names.js';
import { Rng } from './rng.js';
import { elementCount, writeSafetensors, type TensorToWrite } from './safetensors.js';
import { FIXTURE_CHAT_TEMPLATE, HUB_CHAT_TEMPLATE, toyTokenizerConfig, toyTokenizerJson } from './toy-tokenizer.js';

export interface TextDims {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  intermediateSize: number;
  vocabSize: number;
  ropeTheta: number;
  rmsNormEps: number;
  hiddenAct: string;
  maxPositionEmbeddings: number;
  /** Written as text_config.head_dim when set (otherwise hidden / heads). */
  headDim?: number;
}

export interface VisionDims {
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  imageSize: number;
  patchSize: number;
  layerNormEps: number;
  hiddenAct: string;
}

export interface InitScales {
  weightStd: number;
  embedStd: number;
  lmHeadStd: number;
  biasStd: number;
  /** Norm scales are 1 + N(0, normStd²). */
  normStd: number;
}

export interface CheckpointOptions {
  seed?: number;
  text?: Partial<TextDims>;
  vision?: Partial<VisionDims>;
  tieWordEmbeddings?: boolean;
  /** Where tie_word_embeddings is written: text_config, the top level, both (default), or nowhere. */
  tieLocation?: 'text_config' | 'top' | 'both' | 'none';
  featureLayer?: number;
  selectStrategy?: 'default' | 'full';
  projectorAct?: string;
  /** Tensor dtype in the safetensors file. */
  dtype?: 'F32' | 'F16' | 'BF16';
  /** Tensor-name layout: transformers <= 4.51 ('legacy') or >= 4.52 ('current'). */
  layout?: TensorLayout;
  /** 1 writes model.safetensors; more writes shards and model.safetensors.index.json. */
  shards?: number;
  /** The hub's current llava-interleave template, or the fixtures' older one. */
  chatTemplate?: 'hub' | 'fixture';
  /** Where the template is written. */
  templateLocation?: 'chat_template.json' | 'tokenizer_config.json' | 'both';
  /** First special token id (S); default vocab - 12, or 151643 for a real-size vocabulary. */
  specialTokenStart?: number;
  /** eos_token_id in generation_config.json as a list instead of an int. */
  eosAsList?: boolean;
  /** Write generation_config.json (default true). */
  generationConfig?: boolean;
  init?: Partial<InitScales>;
  /** Canonical tensor names to leave out (to test error messages). */
  omitTensors?: string[];
  /** Edits a tensor's float32 values before they are written (e.g. merging a LoRA adapter). */
  transform?: (canonical: string, values: Float32Array) => Float32Array;
}

/** The tiny reference fixture's dimensions (tests/fixtures/tiny-a): the default. */
export const TINY_TEXT: TextDims = {
  hiddenSize: 64,
  numLayers: 2,
  numHeads: 4,
  numKvHeads: 2,
  intermediateSize: 128,
  vocabSize: 512,
  ropeTheta: 1e6,
  rmsNormEps: 1e-6,
  hiddenAct: 'silu',
  maxPositionEmbeddings: 32768,
};

export const TINY_VISION: VisionDims = {
  hiddenSize: 32,
  numLayers: 2,
  numHeads: 2,
  intermediateSize: 64,
  imageSize: 56,
  patchSize: 14,
  layerNormEps: 1e-6,
  hiddenAct: 'gelu_pytorch_tanh',
};

/** llava-hf/llava-interleave-qwen-0.5b-hf's dimensions (random weights: for benchmarks). */
export const REAL_TEXT: TextDims = {
  hiddenSize: 1024,
  numLayers: 24,
  numHeads: 16,
  numKvHeads: 16,
  intermediateSize: 2816,
  vocabSize: 152000,
  ropeTheta: 1e6,
  rmsNormEps: 1e-6,
  hiddenAct: 'silu',
  maxPositionEmbeddings: 32768,
};

export const REAL_VISION: VisionDims = {
  hiddenSize: 1152,
  numLayers: 26,
  numHeads: 16,
  intermediateSize: 4304,
  imageSize: 384,
  patchSize: 14,
  layerNormEps: 1e-6,
  hiddenAct: 'gelu_pytorch_tanh',
};

export const REAL_CHECKPOINT_OPTIONS: CheckpointOptions = {
  text: REAL_TEXT,
  vision: REAL_VISION,
  dtype: 'BF16',
  layout: 'legacy',
  specialTokenStart: 151643,
  // small weights keep activations in a realistic range at this depth
  init: { weightStd: 0.02, embedStd: 0.02, lmHeadStd: 0.02, biasStd: 0.02, normStd: 0.05 },
};

const FIXTURE_INIT: InitScales = { weightStd: 0.15, embedStd: 0.5, lmHeadStd: 0.3, biasStd: 0.1, normStd: 0.2 };

export interface ResolvedCheckpointOptions {
  seed: number;
  text: TextDims;
  vision: VisionDims;
  tied: boolean;
  featureLayer: number;
  selectStrategy: 'default' | 'full';
  projectorAct: string;
  specialStart: number;
  imageTokens: number;
}

export function resolveCheckpointOptions(options: CheckpointOptions = {}): ResolvedCheckpointOptions {
  const text = { ...TINY_TEXT, ...options.text };
  const vision = { ...TINY_VISION, ...options.vision };
  const specialStart = options.specialTokenStart ?? (text.vocabSize >= 151647 ? 151643 : text.vocabSize - 12);
  if (specialStart < 256 || specialStart + 4 > text.vocabSize) {
    throw new Error(`special tokens at ${specialStart}..${specialStart + 3} do not fit a vocabulary of ${text.vocabSize} after the 256 bytes`);
  }
  const grid = Math.floor(vision.imageSize / vision.patchSize);
  const selectStrategy = options.selectStrategy ?? 'full';
  return {
    seed: options.seed ?? 1234,
    text,
    vision,
    tied: options.tieWordEmbeddings ?? true,
    featureLayer: options.featureLayer ?? -1,
    selectStrategy,
    projectorAct: options.projectorAct ?? 'gelu',
    specialStart,
    imageTokens: grid * grid - (selectStrategy === 'default' ? 1 : 0),
  };
}

type Kind = 'weight' | 'bias' | 'norm' | 'embed' | 'lm_head';

function tensorList(r: ResolvedCheckpointOptions): Array<{ name: string; shape: number[]; kind: Kind }> {
  const t = r.text;
  const v = r.vision;
  const hd = t.headDim ?? t.hiddenSize / t.numHeads;
  const q = t.numHeads * hd;
  const kv = t.numKvHeads * hd;
  const D = t.hiddenSize;
  const list: Array<{ name: string; shape: number[]; kind: Kind }> = [];
  const add = (name: string, shape: number[], kind: Kind): void => void list.push({ name, shape, kind });
  add('language_model.embed_tokens.weight', [t.vocabSize, D], 'embed');
  for (let i = 0; i < t.numLayers; i++) {
    const p = `language_model.layers.${i}.`;
    add(`${p}input_layernorm.weight`, [D], 'norm');
    add(`${p}self_attn.q_proj.weight`, [q, D], 'weight');
    add(`${p}self_attn.q_proj.bias`, [q], 'bias');
    add(`${p}self_attn.k_proj.weight`, [kv, D], 'weight');
    add(`${p}self_attn.k_proj.bias`, [kv], 'bias');
    add(`${p}self_attn.v_proj.weight`, [kv, D], 'weight');
    add(`${p}self_attn.v_proj.bias`, [kv], 'bias');
    add(`${p}self_attn.o_proj.weight`, [D, q], 'weight');
    add(`${p}post_attention_layernorm.weight`, [D], 'norm');
    add(`${p}mlp.gate_proj.weight`, [t.intermediateSize, D], 'weight');
    add(`${p}mlp.up_proj.weight`, [t.intermediateSize, D], 'weight');
    add(`${p}mlp.down_proj.weight`, [D, t.intermediateSize], 'weight');
  }
  add('language_model.norm.weight', [D], 'norm');
  if (!r.tied) add('lm_head.weight', [t.vocabSize, D], 'lm_head');
  const Dv = v.hiddenSize;
  const grid = Math.floor(v.imageSize / v.patchSize);
  add('vision_tower.embeddings.patch_embedding.weight', [Dv, 3, v.patchSize, v.patchSize], 'weight');
  add('vision_tower.embeddings.patch_embedding.bias', [Dv], 'bias');
  add('vision_tower.embeddings.position_embedding.weight', [grid * grid, Dv], 'weight');
  for (let i = 0; i < v.numLayers; i++) {
    const p = `vision_tower.encoder.layers.${i}.`;
    add(`${p}layer_norm1.weight`, [Dv], 'norm');
    add(`${p}layer_norm1.bias`, [Dv], 'bias');
    for (const proj of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
      add(`${p}self_attn.${proj}.weight`, [Dv, Dv], 'weight');
      add(`${p}self_attn.${proj}.bias`, [Dv], 'bias');
    }
    add(`${p}layer_norm2.weight`, [Dv], 'norm');
    add(`${p}layer_norm2.bias`, [Dv], 'bias');
    add(`${p}mlp.fc1.weight`, [v.intermediateSize, Dv], 'weight');
    add(`${p}mlp.fc1.bias`, [v.intermediateSize], 'bias');
    add(`${p}mlp.fc2.weight`, [Dv, v.intermediateSize], 'weight');
    add(`${p}mlp.fc2.bias`, [Dv], 'bias');
  }
  // SiglipVisionTransformer always has a post_layernorm; llava never applies it
  add('vision_tower.post_layernorm.weight', [Dv], 'norm');
  add('vision_tower.post_layernorm.bias', [Dv], 'bias');
  add('multi_modal_projector.linear_1.weight', [D, Dv], 'weight');
  add('multi_modal_projector.linear_1.bias', [D], 'bias');
  add('multi_modal_projector.linear_2.weight', [D, D], 'weight');
  add('multi_modal_projector.linear_2.bias', [D], 'bias');
  return list;
}

/** The random values of one canonical tensor (independent of every other option but seed/init). */
export function randomTensor(seed: number, name: string, size: number, kind: Kind, init: InitScales): Float32Array {
  const rng = new Rng(seed, name);
  switch (kind) {
    case 'weight':
      return rng.normalArray(size, init.weightStd);
    case 'bias':
      return rng.normalArray(size, init.biasStd);
    case 'norm':
      return rng.normalArray(size, init.normStd, 1);
    case 'embed':
      return rng.normalArray(size, init.embedStd);
    case 'lm_head':
      return rng.normalArray(size, init.lmHeadStd);
  }
}

function configJson(r: ResolvedCheckpointOptions, options: CheckpointOptions): Record<string, unknown> {
  const t = r.text;
  const v = r.vision;
  const tieLocation = options.tieLocation ?? 'both';
  const text: Record<string, unknown> = {
    model_type: 'qwen2',
    architectures: null,
    hidden_size: t.hiddenSize,
    num_hidden_layers: t.numLayers,
    num_attention_heads: t.numHeads,
    num_key_value_heads: t.numKvHeads,
    intermediate_size: t.intermediateSize,
    vocab_size: t.vocabSize,
    rope_theta: t.ropeTheta,
    rms_norm_eps: t.rmsNormEps,
    hidden_act: t.hiddenAct,
    max_position_embeddings: t.maxPositionEmbeddings,
    rope_scaling: null,
    sliding_window: null,
    use_sliding_window: false,
    bos_token_id: r.specialStart,
    eos_token_id: r.specialStart + 2,
    pad_token_id: null,
    torch_dtype: 'float32',
  };
  if (t.headDim !== undefined) text.head_dim = t.headDim;
  if (tieLocation === 'text_config' || tieLocation === 'both') text.tie_word_embeddings = r.tied;
  const config: Record<string, unknown> = {
    architectures: ['LlavaForConditionalGeneration'],
    model_type: 'llava',
    ignore_index: -100,
    image_token_index: r.specialStart + 3,
    image_seq_length: r.imageTokens,
    projector_hidden_act: r.projectorAct,
    text_config: text,
    vision_config: {
      model_type: 'siglip_vision_model',
      hidden_size: v.hiddenSize,
      num_hidden_layers: v.numLayers,
      num_attention_heads: v.numHeads,
      intermediate_size: v.intermediateSize,
      image_size: v.imageSize,
      patch_size: v.patchSize,
      num_channels: 3,
      layer_norm_eps: v.layerNormEps,
      hidden_act: v.hiddenAct,
      vision_use_head: false,
    },
    vision_feature_layer: r.featureLayer,
    vision_feature_select_strategy: r.selectStrategy,
    torch_dtype: 'float32',
    transformers_version: options.layout === 'current' ? '4.52.0' : '4.45.2',
  };
  if (tieLocation === 'top' || tieLocation === 'both') config.tie_word_embeddings = r.tied;
  return config;
}

function writeJson(path: string, value: unknown): void {
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** Writes a random checkpoint into `dir` (created if needed). Returns the resolved options. */
export function generateCheckpoint(dir: string, options: CheckpointOptions = {}): ResolvedCheckpointOptions {
  const r = resolveCheckpointOptions(options);
  const init = { ...FIXTURE_INIT, ...options.init };
  const layout = options.layout ?? 'legacy';
  const dtype = options.dtype ?? 'F32';
  mkdirSync(dir, { recursive: true });

  writeJson(join(dir, 'config.json'), configJson(r, options));

  const omit = new Set(options.omitTensors ?? []);
  const tensors: TensorToWrite[] = tensorList(r)
    .filter((t) => !omit.has(t.name))
    .map((t) => ({
      name: fileTensorName(t.name, layout),
      dtype,
      shape: t.shape,
      data: () => {
        const values = randomTensor(r.seed, t.name, elementCount(t.shape), t.kind, init);
        return options.transform ? options.transform(t.name, values) : values;
      },
    }));
  const shards = Math.max(1, options.shards ?? 1);
  if (shards === 1) {
    writeSafetensors(join(dir, 'model.safetensors'), tensors);
  } else {
    const bytesPer = dtype === 'F32' ? 4 : 2;
    const total = tensors.reduce((s, t) => s + elementCount(t.shape) * bytesPer, 0);
    const groups: TensorToWrite[][] = Array.from({ length: shards }, () => []);
    let acc = 0;
    for (const t of tensors) {
      const g = Math.min(shards - 1, Math.floor((acc / total) * shards));
      groups[g]!.push(t);
      acc += elementCount(t.shape) * bytesPer;
    }
    const weightMap: Record<string, string> = {};
    const pad = (n: number): string => String(n).padStart(5, '0');
    groups.forEach((group, i) => {
      const file = `model-${pad(i + 1)}-of-${pad(shards)}.safetensors`;
      writeSafetensors(join(dir, file), group);
      for (const t of group) weightMap[t.name] = file;
    });
    writeJson(join(dir, 'model.safetensors.index.json'), { metadata: { total_size: total }, weight_map: weightMap });
  }

  writeJson(join(dir, 'tokenizer.json'), toyTokenizerJson(r.specialStart));
  const template = (options.chatTemplate ?? 'hub') === 'hub' ? HUB_CHAT_TEMPLATE : FIXTURE_CHAT_TEMPLATE;
  const where = options.templateLocation ?? 'both';
  writeJson(join(dir, 'tokenizer_config.json'), toyTokenizerConfig(r.specialStart, where === 'chat_template.json' ? null : template));
  if (where !== 'tokenizer_config.json') writeJson(join(dir, 'chat_template.json'), { chat_template: template });
  writeJson(join(dir, 'preprocessor_config.json'), {
    do_convert_rgb: null,
    do_normalize: true,
    do_rescale: true,
    do_resize: true,
    image_mean: [0.5, 0.5, 0.5],
    image_std: [0.5, 0.5, 0.5],
    image_processor_type: 'SiglipImageProcessor',
    processor_class: 'LlavaProcessor',
    resample: 3,
    rescale_factor: 1 / 255,
    size: { height: r.vision.imageSize, width: r.vision.imageSize },
  });
  // As in the fixtures: LlavaProcessor 4.45 inserts grid² + 1 tokens and removes one for "default",
  // so "default" here gives one token per SigLIP patch. vistyle counts image tokens from config.json.
  writeJson(join(dir, 'processor_config.json'), {
    image_token: '<image>',
    patch_size: r.vision.patchSize,
    processor_class: 'LlavaProcessor',
    vision_feature_select_strategy: 'default',
  });
  if (options.generationConfig ?? true) {
    const eos = r.specialStart + 2;
    writeJson(join(dir, 'generation_config.json'), {
      bos_token_id: r.specialStart,
      eos_token_id: options.eosAsList ? [eos, r.specialStart] : eos,
      pad_token_id: r.specialStart,
    });
  }
  return r;
}
