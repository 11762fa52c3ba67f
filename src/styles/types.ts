// A style is a voice: a system prompt, optional few-shot examples and generation overrides, and
// optionally a LoRA adapter trained on styled data. The registry (src/styles/registry.ts) loads
// the built-in styles plus the operator's styles file.
import type { LoraRef, SamplingOptions } from '../engine/types.js';

export type Language = 'zh' | 'en';

export interface LocalizedText {
  zh: string;
  en: string;
}

export interface StyleExample {
  question: string;
  answer: string;
}

export type GenerationOverrides = Partial<
  Pick<SamplingOptions, 'temperature' | 'topP' | 'topK' | 'repetitionPenalty' | 'noRepeatNgramSize' | 'maxNewTokens'>
>;

export interface Style {
  id: string;
  names: LocalizedText;
  /** One line for /styles and `vistyle styles`. */
  description: LocalizedText;
  systemPrompt: string;
  /** Few-shot Q/A pairs rendered as earlier text-only turns. */
  examples: StyleExample[];
  /** Shown by /styles as a taste of the voice. */
  sampleAnswer: LocalizedText;
  /** Asked when a photo arrives without a question. */
  defaultQuestion: LocalizedText;
  generation: GenerationOverrides;
  /** The LoRA adapter (the styles file's `adapter:` key). */
  adapter: LoraRef | null;
  /** The instruction `vistyle data make` gives the data API to restyle Q/A into this voice. */
  dataPrompt: string | null;
  builtin: boolean;
}

export interface StyleRegistry {
  /** The style with this id, or undefined. */
  get(id: string): Style | undefined;
  /** Every style, the default first. */
  list(): Style[];
  /** The default style (`plain` unless the styles file says otherwise). */
  defaultStyle(): Style;
}
