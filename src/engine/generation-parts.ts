// The parts of generation that are not graphs: how the text side (image preprocessing,
// tokenizer + chat template, sampler, detokenizer; bound to a checkpoint by text-parts.ts) and a
// loaded LoRA adapter look to the batch engine (batch-engine.ts), which runs the graphs, the
// cache and the decode loop.
import * as ort from 'onnxruntime-node';
import type { ChatMessage, SamplingOptions } from './types.js';

/** Chooses the next token from the last position's logits (may modify `logits`). */
export interface TokenSampler {
  next(logits: Float32Array, generated: readonly number[]): number;
}

/** Turns generated ids into text deltas that never split a UTF-8 character. */
export interface DeltaDetokenizer {
  push(tokenId: number): string;
  /** Whatever is still held back at the end (an incomplete character). */
  flush(): string;
}

/** The text-side parts of the engine (src/engine/text-parts.ts binds them to the checkpoint). */
export interface TextParts {
  /** Pixel values [1,3,S,S] (float32, NCHW) for encoded image bytes; typed IMAGE_* errors. */
  preprocessImage(bytes: Uint8Array): Promise<Float32Array>;
  /**
   * Prompt ids of the conversation: checked (QUESTION_EMPTY, IMAGE_MISSING), rendered with the
   * checkpoint's chat template with the generation prompt, image placeholders expanded; oldest
   * turns dropped to fit `maxPromptTokens` (PROMPT_TOO_LONG when even the question alone does not).
   */
  encodePrompt(messages: ChatMessage[], options: { imageCount: number; maxPromptTokens: number; capacity: number }): EncodedPrompt;
  createSampler(options: SamplingOptions, promptIds: readonly number[]): TokenSampler;
  createDetokenizer(): DeltaDetokenizer;
  /**
   * Ids that end an answer besides the model's EOS ids (generation_config.json): the tokenizer's
   * own end-of-text tokens (see text-parts.ts endOfTextIds).
   */
  readonly endTokenIds?: readonly number[];
}

export interface EncodedPrompt {
  ids: number[];
  /** Picture occurrences in prompt order: which request image, and where its rows start. */
  imageRuns: Array<{ image: number; start: number }>;
  /** Messages left out to fit (oldest first). */
  droppedMessages: number;
}

/** LoRA weights for one request, by graph input name (A: [r,in], B: [out,r], scale folded into B). */
export interface LoadedLora {
  /** Identifies the adapter in the image-feature cache. */
  key: string;
  feeds: ReadonlyMap<string, ort.Tensor>;
}
