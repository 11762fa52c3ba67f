// Turns a style, a question and the earlier turns into what the engine takes: the messages (system
// prompt, the style's few-shot examples as earlier text-only turns, the history, then the
// question), the style's sampling overrides and its adapter. The bot and `vistyle ask --style`
// both go through here, so a style sounds the same everywhere.
import type { AdapterRef, ChatMessage, GenerateRequest, SamplingOptions } from '../engine/types.js';
import { VistyleError } from '../errors.js';
import type { Language, Style } from './types.js';

export interface StyledTurnInput {
  /** The user's question; empty or missing asks the style's default question. */
  question?: string;
  /** Language of the default question (default 'en'). */
  language?: Language;
  /** Earlier turns of this conversation, oldest first (user/assistant only; system turns are dropped). */
  history?: ChatMessage[];
  /** The conversation has a picture (default true). It goes with the first user turn that already
   *  carries it in `history`, else with this question. */
  image?: boolean;
  /** Bare conversation: no system prompt, no examples, no overrides, no style adapter. */
  raw?: boolean;
  /** Use this adapter instead of the style's (null: none). Applies with `raw` too. */
  adapter?: AdapterRef | null;
}

export type StyledRequest = Required<Pick<GenerateRequest, 'messages'>> & {
  sampling: Partial<SamplingOptions>;
  adapter: AdapterRef | null;
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
    if (style.systemPrompt.trim()) messages.push({ role: 'system', text: style.systemPrompt });
    for (const example of style.examples) {
      messages.push({ role: 'user', text: example.question }, { role: 'assistant', text: example.answer });
    }
  }
  const history = (input.history ?? []).filter((message) => message.role !== 'system');
  const wantsImage = input.image ?? true;
  let imagePlaced = false;
  for (const message of history) {
    // At most one message shows the picture: keep the first that claims it.
    const image = wantsImage && message.role === 'user' && message.image === true && !imagePlaced;
    if (image) imagePlaced = true;
    messages.push(image ? { role: message.role, text: message.text, image: true } : { role: message.role, text: message.text });
  }
  messages.push(wantsImage && !imagePlaced ? { role: 'user', text: question, image: true } : { role: 'user', text: question });

  const styleAdapter = !raw && style ? style.adapter : null;
  const adapter = input.adapter !== undefined ? input.adapter : styleAdapter;
  const sampling: Partial<SamplingOptions> = !raw && style ? { ...style.generation } : {};
  return { messages, sampling, adapter: adapter ? { ...adapter } : null, question };
}
