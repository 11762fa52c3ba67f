// Stateless requests: the HTTP API gives the bot core a whole conversation (system messages,
// earlier turns, the question and its pictures) and gets one answer back; nothing is stored. They go
// through the same style registry, scheduler and engine as the bots (BotCoreImpl.askStateless);
// this module holds their types and turns a style plus the caller's conversation into the engine's
// request, through the same buildStyledRequest the bots and `vistyle ask` use.
import type { ChatMessage, GenerateRequest, GenerationResult, SamplingOptions } from '../engine/types.js';
import { VistyleError } from '../errors.js';
import { buildStyledRequest } from '../styles/conversation.js';
import type { Language, Style } from '../styles/types.js';

export interface StatelessRequest {
  /** Whose queue place, limits and log lines these are, e.g. `api:alice` (a key's name, never the key). */
  caller: string;
  /** Style id or display name; undefined: the registry's default. */
  style?: string;
  /**
   * The conversation, oldest first, ending with the user message to answer, in the engine's shape
   * (image parts index `images`). System messages are the caller's own instructions; they follow
   * the style's system prompt.
   */
  messages: ChatMessage[];
  /** The pictures' bytes, already checked (JPEG, PNG, GIF or WebP). */
  images?: Uint8Array[];
  /** The caller's sampling settings; they win over the style's. */
  sampling?: Partial<SamplingOptions>;
  /** Language of the default question when the last message is a picture with no text (default en). */
  language?: Language;
  /**
   * The caller applies its own per-caller limits (the HTTP API's per-key limits), so the bots'
   * per-user limits do not apply again; the queue cap, time-outs and positions always do.
   */
  exemptFromUserLimits?: boolean;
}

export interface StatelessHooks {
  /** Aborting cancels the request: it leaves the queue, or the engine stops at its next step. */
  signal?: AbortSignal;
  /** Position in the waiting line (1 = next); called on acceptance and whenever it changes. */
  onPosition?: (position: number) => void;
  /** The engine started on it. */
  onStart?: () => void;
  /** Each piece of the answer as it is generated. */
  onDelta?: (delta: string) => void;
}

export interface StatelessAnswer {
  text: string;
  result: GenerationResult;
  style: Style;
  /** Milliseconds it waited in the queue. */
  waitedMs: number;
}

/** The text of a message (its text parts joined). */
export function messageText(message: ChatMessage): string {
  return typeof message.content === 'string' ? message.content : message.content.flatMap((part) => (part.type === 'text' ? [part.text] : [])).join('');
}

function messageImages(message: ChatMessage): number[] {
  return typeof message.content === 'string' ? [] : message.content.flatMap((part) => (part.type === 'image' ? [part.image] : []));
}

/**
 * The engine request for a stateless conversation in `style`. Throws QUESTION_EMPTY (the last
 * message is not a user message, or it has neither text nor a picture), PROMPT_TOO_LONG (the
 * question is over `maxQuestionChars`), IMAGE_MISSING (an image part names no given picture).
 */
export function styledStatelessRequest(style: Style, request: StatelessRequest, maxQuestionChars: number): GenerateRequest {
  const messages = request.messages;
  const images = request.images ?? [];
  const last = messages[messages.length - 1];
  if (!last || last.role !== 'user') throw new VistyleError('QUESTION_EMPTY', 'the conversation must end with a user message');
  const question = messageText(last).trim();
  if (question.length > maxQuestionChars) {
    throw new VistyleError('PROMPT_TOO_LONG', `the question has ${question.length} characters (limit ${maxQuestionChars})`);
  }
  const questionImages = messageImages(last);
  // Like the bots: pictures without a question get the style's default question; words are needed otherwise.
  if (!question && questionImages.length === 0) throw new VistyleError('QUESTION_EMPTY', 'the last user message has no question');
  for (const index of messages.flatMap(messageImages)) {
    if (!Number.isInteger(index) || index < 0 || index >= images.length) {
      throw new VistyleError('IMAGE_MISSING', `a message shows picture ${index}, but ${images.length} picture(s) were given`);
    }
  }

  const history = messages.slice(0, -1).filter((message) => message.role !== 'system');
  const styled = buildStyledRequest(style, { question, language: request.language ?? 'en', history, images: questionImages });
  const callerSystem = messages
    .filter((message) => message.role === 'system')
    .map((message) => messageText(message).trim())
    .filter(Boolean);
  const out = styled.messages;
  if (callerSystem.length > 0) {
    // One system message: the style's voice first, then the caller's instructions.
    const first = out[0];
    if (first?.role === 'system') out[0] = { role: 'system', content: [messageText(first), ...callerSystem].join('\n\n') };
    else out.unshift({ role: 'system', content: callerSystem.join('\n\n') });
  }
  return {
    ...(images.length > 0 ? { images } : {}),
    messages: out,
    lora: styled.lora,
    sampling: { ...styled.sampling, ...request.sampling },
  };
}
