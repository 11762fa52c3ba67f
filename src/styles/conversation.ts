// Turns a style, a question and the earlier turns into what the engine takes: the messages (system
// prompt, the style's few-shot examples as earlier text-only turns, the history, then the
// question), the style's sampling overrides and its adapter. The bot and `vistyle ask --style`
// both go through here, so a style sounds the same everywhere.
import type { ChatMessage, GenerateRequest, LoraRef, MessagePart, SamplingOptions } from '../engine/types.js';
import { VistyleError } from '../errors.js';
import type { Language, Style } from './types.js';

export interface StyledTurnInput {
  /** The user's question; empty or missing asks the style's default question. */
  question?: string;
  /** Language of the default question (default 'en'). */
  language?: Language;
  /** Earlier turns of this conversation, oldest first (user/assistant only; system turns are
   *  dropped). Their image parts index the request's images, like `images` below. */
  history?: ChatMessage[];
  /** Pictures shown with this question, in order: indexes into GenerateRequest.images. */
  images?: number[];
  /** Bare conversation: no system prompt, no examples, no overrides, no style adapter. */
  raw?: boolean;
  /** Use this LoRA adapter instead of the style's (null: none). Applies with `raw` too. */
  lora?: LoraRef | null;
}

export type StyledRequest = Required<Pick<GenerateRequest, 'messages'>> & {
  sampling: Partial<SamplingOptions>;
  lora: LoraRef | null;
  /** The question actually asked (the default question when none was given). */
  question: string;
};

export function buildStyledRequest(style: Style | null, input: StyledTurnInput = {}): StyledRequest {
  const raw = input.raw === true || style === null;
  const asked = input.question?.trim() ?? '';
  const question = asked || (style ? style.defaultQuestion[input.language ?? 'en'] : '');
  if (!question) throw new VistyleError('QUESTION_EMPTY', 'the question is empty');

  const messages: ChatMessage[] = [];
  if (!raw && style) {
    if (style.systemPrompt.trim()) messages.push({ role: 'system', content: style.systemPrompt });
    for (const example of style.examples) {
      messages.push({ role: 'user', content: example.question }, { role: 'assistant', content: example.answer });
    }
  }
  for (const message of input.history ?? []) {
    if (message.role === 'system') continue;
    messages.push({ role: message.role, content: typeof message.content === 'string' ? message.content : message.content.map((part) => ({ ...part })) });
  }
  const pictures: MessagePart[] = (input.images ?? []).map((image) => ({ type: 'image', image }));
  messages.push({ role: 'user', content: [...pictures, { type: 'text', text: question }] });

  const styleLora = !raw && style ? style.adapter : null;
  const lora = input.lora !== undefined ? input.lora : styleLora;
  const sampling: Partial<SamplingOptions> = !raw && style ? { ...style.generation } : {};
  return { messages, sampling, lora: lora ? { ...lora } : null, question };
}
