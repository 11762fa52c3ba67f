// Binds the text-side modules (image preprocessing, tokenizer, chat template, prompt builder,
// sampler, detokenizer) to one built model folder, in the shape the generator takes (TextParts).
import { VistyleError } from '../errors.js';
import { ChatTemplate, loadChatTemplate } from './chat-template.js';
import { StreamingDetokenizer } from './detokenizer.js';
import type { DeltaDetokenizer, EncodedPrompt, TextParts, TokenSampler } from './generation-parts.js';
import { DEFAULT_IMAGE_LIMITS, loadPreprocessorConfig, preprocessImage, type ImageLimits } from './image.js';
import type { ModelFolder } from './model-folder.js';
import { PromptBuilder } from './prompt.js';
import { Sampler, resolveSampling as resolveSamplerOptions, type SamplerOptions } from './sampler.js';
import { loadTokenizer, type TextTokenizer } from './tokenizer.js';
import type { ChatMessage, SamplingOptions } from './types.js';

/** The request's sampling on top of the engine's defaults (DEFAULT_SAMPLING); CONFIG_INVALID when out of range. */
export function resolveSampling(partial: Partial<SamplingOptions> | undefined): SamplerOptions {
  try {
    return resolveSamplerOptions(partial ?? {});
  } catch (error) {
    if (error instanceof RangeError) throw new VistyleError('CONFIG_INVALID', error.message, { cause: error });
    throw error;
  }
}

/**
 * The tokenizer's end-of-text tokens (tokenizer_config.json's eos_token and pad_token, when they are
 * special tokens), which end an answer besides generation_config.json's eos_token_id.
 * llava-interleave-qwen-0.5b-hf stops on `<|im_end|>` (151645) only, but its decoder is
 * Qwen1.5-0.5B-Chat, whose own generation config also ends on `<|endoftext|>` (151643, the pad
 * token here): after it comes a new document, never more of the answer (and greedy decoding would
 * go on to the token limit). Until such a token, the answer is the same as transformers' generate().
 */
export function endOfTextIds(tokenizer: TextTokenizer, imageTokenId: number): number[] {
  const ids: number[] = [];
  for (const token of [tokenizer.settings.eosToken, tokenizer.settings.padToken]) {
    if (!token) continue;
    const id = tokenizer.tokenToId(token);
    if (id === undefined || id === imageTokenId || !tokenizer.isSpecial(id) || ids.includes(id)) continue;
    ids.push(id);
  }
  return ids;
}

export interface TextPartsOptions {
  maxImagePixels?: number | undefined;
  maxImageBytes?: number | undefined;
}

export interface LoadedTextParts extends TextParts {
  tokenizer: TextTokenizer;
  template: ChatTemplate;
}

export async function createTextParts(folder: ModelFolder, options: TextPartsOptions = {}): Promise<LoadedTextParts> {
  const m = folder.manifest;
  const tokenizer = await loadTokenizer(folder.paths.tokenizer);
  const template = await loadChatTemplate(folder.paths.chatTemplate, tokenizer.settings.chatTemplate, {
    bosToken: tokenizer.settings.bosToken,
    eosToken: tokenizer.settings.eosToken,
  });
  const preprocessor = await loadPreprocessorConfig(folder.paths.preprocessorConfig);
  const limits: ImageLimits = {
    maxBytes: options.maxImageBytes ?? DEFAULT_IMAGE_LIMITS.maxBytes,
    maxPixels: options.maxImagePixels ?? DEFAULT_IMAGE_LIMITS.maxPixels,
  };
  const prompts = new PromptBuilder({ tokenizer, template, imageTokenId: m.tokens.imageTokenId, imageTokens: m.vision.imageTokens });
  const size = m.vision.imageSize;

  return {
    tokenizer,
    template,
    endTokenIds: endOfTextIds(tokenizer, m.tokens.imageTokenId),
    async preprocessImage(bytes: Uint8Array): Promise<Float32Array> {
      const image = await preprocessImage(bytes, preprocessor, limits);
      if (image.width !== size || image.height !== size) {
        throw new VistyleError('MODEL_INVALID', `the preprocessor makes ${image.width}x${image.height} images; the vision graph takes ${size}x${size}`);
      }
      return image.pixelValues;
    },
    encodePrompt(messages: ChatMessage[], opts: { imageCount: number; maxPromptTokens: number; capacity: number }): EncodedPrompt {
      const built = prompts.build(messages, { ...opts, trimHistory: true });
      return { ids: built.ids, imageRuns: built.imageRuns, droppedMessages: built.droppedMessages };
    },
    createSampler(sampling: SamplingOptions, promptIds: readonly number[]): TokenSampler {
      return new Sampler(sampling, promptIds);
    },
    createDetokenizer(): DeltaDetokenizer {
      return new StreamingDetokenizer(tokenizer);
    },
  };
}
