// The contract between `vistyle model build` (models/) and the engine (src/engine): a built model
// folder holds vistyle-model.json (this schema), the three ONNX graphs, and copies of the
// checkpoint's tokenizer, chat template, preprocessor and generation configs.
//
// Graph inputs and outputs (B batch, T new tokens, W cache window, D text hidden, S image size,
// N image tokens per image, V vocab rows, kvH key/value heads, hd head dim):
//   vision.onnx   pixel_values  float32 [B,3,S,S]   -> image_features float32 [B,N,D]
//   embed.onnx    input_ids     int64   [B,T]       -> inputs_embeds  float32 [B,T,D]
//   decoder.onnx  inputs_embeds float32 [B,T,D]
//                 position_ids  int64   [B,T]
//                 past_mask     int64   [B,W]        (1 = row b sees cached position j)
//                 past_key.<i>  cache   [B,kvH,hd,W]  per layer i: keys after RoPE, transposed
//                 past_value.<i> cache  [B,kvH,W,hd]
//                 -> logits     float32 [B,V]        (last position only; [B,T,V] when allPositionLogits)
//                 -> key.<i>    cache   [B,kvH,hd,T]  the new positions only, in the cache's layout
//                 -> value.<i>  cache   [B,kvH,T,hd]
// The engine's host cache keeps one buffer per layer for keys and one for values, rows at a
// common stride W (the window), and feeds them as zero-copy views; the decoder reads them in
// place (models/graphs/decoder.ts) and the engine writes key.<i>/value.<i> after each row's
// cached positions.
// LoRA inputs (when built with LoRA): for each target, decoder `<inputA>` [B,r,in] and `<inputB>`
// [B,out,r] (one adapter per batch row), vision [r,in] and [out,r]; r dynamic, at least 1
// ("no adapter" is a zero row); the engine folds the adapter's scale into B.
// Version 2 (the windowed cache and per-row LoRA); a version-1 build must be rebuilt.
// dtype int8/int4: the linear weights of the vision graph and the decoder (lm_head included) are
// block-quantized for com.microsoft MatMulNBits (`quantization` says how); the graph I/O, the
// cache and the LoRA inputs are those of the compute type (`quantization.compute`): the LoRA path
// stays a separate floating-point branch beside the quantized base weight.
import { z } from 'zod';

export const MANIFEST_FILE = 'vistyle-model.json';
export const MANIFEST_FORMAT = 'vistyle-model';
export const MANIFEST_VERSION = 2;

export const LoraTargetSchema = z.object({
  /** Canonical module path, e.g. `language_model.layers.3.self_attn.q_proj` or
   *  `vision_tower.encoder.layers.0.self_attn.out_proj`. */
  module: z.string(),
  graph: z.enum(['vision', 'decoder']),
  inputA: z.string(),
  inputB: z.string(),
  inFeatures: z.number().int().positive(),
  outFeatures: z.number().int().positive(),
});
export type LoraTarget = z.infer<typeof LoraTargetSchema>;

export const QuantizationSchema = z.object({
  /** onnxruntime contrib operator the quantized weights feed (domain com.microsoft). */
  operator: z.literal('MatMulNBits'),
  bits: z.union([z.literal(4), z.literal(8)]),
  /** Weights per block along the input features; one scale per block. */
  blockSize: z.number().int().min(16),
  /** Symmetric: no zero points stored; the operator's default 2^(bits-1) applies. */
  symmetric: z.literal(true),
  /** MatMulNBits accuracy_level (0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8 activations). */
  accuracyLevel: z.number().int().min(0).max(4),
  scales: z.enum(['float32', 'float16']),
  /** Element type of activations and non-quantized matrix work (graph inputs, cache, LoRA). */
  compute: z.enum(['float32', 'float16']),
  /** What is quantized: every linear layer of the vision encoder, projector and decoder, and the lm_head. */
  modules: z.array(z.enum(['vision', 'projector', 'decoder', 'lm_head'])),
});
export type Quantization = z.infer<typeof QuantizationSchema>;

export const ModelManifestSchema = z.object({
  format: z.literal(MANIFEST_FORMAT),
  version: z.literal(MANIFEST_VERSION),
  createdAt: z.string(),
  builder: z.string(),
  dtype: z.enum(['fp32', 'fp16', 'int8', 'int4']),
  source: z.object({
    checkpoint: z.string(),
    modelType: z.string(),
  }),
  text: z.object({
    hiddenSize: z.number().int().positive(),
    numLayers: z.number().int().positive(),
    numHeads: z.number().int().positive(),
    numKvHeads: z.number().int().positive(),
    headDim: z.number().int().positive(),
    vocabSize: z.number().int().positive(),
    maxPositionEmbeddings: z.number().int().positive(),
  }),
  vision: z.object({
    imageSize: z.number().int().positive(),
    patchSize: z.number().int().positive(),
    /** Image feature rows per image (= image tokens in the prompt). */
    imageTokens: z.number().int().positive(),
  }),
  tokens: z.object({
    imageTokenId: z.number().int().nonnegative(),
    eosTokenIds: z.array(z.number().int().nonnegative()).min(1),
    padTokenId: z.number().int().nonnegative().nullable(),
    bosTokenId: z.number().int().nonnegative().nullable(),
  }),
  graphs: z.object({
    vision: z.string(),
    embed: z.string(),
    decoder: z.string(),
  }),
  kvCache: z.object({
    layout: z.literal('window'),
    dtype: z.enum(['float32', 'float16']),
  }),
  allPositionLogits: z.boolean(),
  lora: z.object({
    targets: z.array(LoraTargetSchema),
    /** Element type of the LoRA A/B inputs (float16 in fp16 builds). Absent means float32. */
    dtype: z.enum(['float32', 'float16']).optional(),
  }),
  /** Files copied from the checkpoint, relative to the built folder. */
  files: z.object({
    config: z.string(),
    tokenizer: z.string(),
    tokenizerConfig: z.string().nullable(),
    chatTemplate: z.string().nullable(),
    preprocessorConfig: z.string(),
    generationConfig: z.string().nullable(),
  }),
  /** int8/int4 builds: how the weights were quantized. Absent in fp32/fp16 builds. */
  quantization: QuantizationSchema.optional(),
});
export type ModelManifest = z.infer<typeof ModelManifestSchema>;
