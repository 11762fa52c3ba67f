// Conversation -> prompt token ids: check the conversation, render it with the checkpoint's chat
// template, tokenize, and expand the image placeholder to the N image-token rows that the image
// features replace.
//
//   const prompts = new PromptBuilder({ tokenizer, template, imageTokenId, imageTokens });
//   const { ids, imageTokenPositions } = prompts.build(messages, { hasImage: true, maxPromptTokens });
//
// Text that people type never becomes a special token: an `<image>` or `<|im_end|>` inside a
// question is defused (a zero-width space after its first character) before rendering, so it can
// neither add image rows nor close the turn.
import { VistyleError } from '../errors.js';
import type { ChatTemplate, TemplateMessage } from './chat-template.js';
import type { TextTokenizer } from './tokenizer.js';
import type { ChatMessage } from './types.js';

export interface PromptBuilderOptions {
  tokenizer: TextTokenizer;
  template: ChatTemplate;
  /** Id of the image placeholder (manifest.tokens.imageTokenId; 151646 for the real model). */
  imageTokenId: number;
  /** Image-token rows per image (manifest.vision.imageTokens; 729 for the real model). */
  imageTokens: number;
}

export interface BuildOptions {
  /** Whether image bytes come with the request. Default: whether a message has `image: true`. */
  hasImage?: boolean;
  /** Longest prompt allowed, in tokens; longer gives PROMPT_TOO_LONG (or trimming, below). */
  maxPromptTokens?: number;
  /**
   * Drop the oldest question/answer turns (never system messages or the last question) until the
   * prompt fits maxPromptTokens. The picture moves to the oldest user message that is kept.
   */
  trimHistory?: boolean;
}

export interface BuiltPrompt {
  /** Prompt ids with the image placeholder already expanded to `imageTokens` ids. */
  ids: number[];
  /** Positions in `ids` of the image-token rows, ascending (empty without a picture). */
  imageTokenPositions: number[];
  /** The rendered template text (one placeholder per picture, not expanded). */
  text: string;
  /** The conversation as rendered: validated, picture attached, oldest turns dropped when trimmed. */
  messages: ChatMessage[];
  /** How many messages trimming dropped. */
  droppedMessages: number;
}

/** Zero-width space: splits a special-token string so the tokenizer no longer sees it. */
const DEFUSE = '\u200b';

/**
 * Checks a conversation and returns a copy with the picture attached to exactly one user message.
 * Throws QUESTION_EMPTY (no user question last, or a blank one), IMAGE_MISSING (a message shows
 * the picture but none was sent) or INTERNAL (the picture in two messages, or in a non-user one).
 */
export function normalizeConversation(messages: readonly ChatMessage[], hasImage: boolean): ChatMessage[] {
  const copy = messages.map((m) => ({ ...m }));
  const last = copy.at(-1);
  if (!last || last.role !== 'user' || last.text.trim().length === 0) {
    throw new VistyleError('QUESTION_EMPTY', 'The question is empty; ask something about the picture.');
  }
  const shown = copy.filter((m) => m.image === true);
  if (shown.length > 1) {
    throw new VistyleError('INTERNAL', `A conversation shows its picture in one message only (here ${shown.length}).`);
  }
  if (shown.some((m) => m.role !== 'user')) {
    throw new VistyleError('INTERNAL', 'Only a user message can show the picture.');
  }
  if (shown.length === 1 && !hasImage) {
    throw new VistyleError('IMAGE_MISSING', 'The conversation shows a picture, but no image was sent.');
  }
  if (shown.length === 0 && hasImage) {
    const firstUser = copy.find((m) => m.role === 'user');
    if (firstUser) firstUser.image = true;
  }
  return copy;
}

export class PromptBuilder {
  readonly imageTokenId: number;
  readonly imageTokens: number;
  private readonly tokenizer: TextTokenizer;
  private readonly template: ChatTemplate;
  private readonly addedTokenStrings: string[];

  constructor(options: PromptBuilderOptions) {
    if (!Number.isInteger(options.imageTokens) || options.imageTokens < 1) {
      throw new RangeError(`imageTokens must be a positive integer, got ${options.imageTokens}`);
    }
    this.tokenizer = options.tokenizer;
    this.template = options.template;
    this.imageTokenId = options.imageTokenId;
    this.imageTokens = options.imageTokens;
    // Longest first, so that a token containing another is defused whole.
    this.addedTokenStrings = [...options.tokenizer.addedTokens.keys()].filter((s) => s.length > 1).sort((a, b) => b.length - a.length);
  }

  /** Text that people wrote, with every added-token string in it made inert. */
  defuse(text: string): string {
    let out = text;
    for (const token of this.addedTokenStrings) {
      if (out.includes(token)) out = out.split(token).join(token[0] + DEFUSE + token.slice(1));
    }
    return out;
  }

  /** The conversation in the HF multimodal message format the templates expect. */
  toTemplateMessages(messages: readonly ChatMessage[]): TemplateMessage[] {
    return messages.map((m) => ({
      role: m.role,
      content: [...(m.image ? [{ type: 'image' as const }] : []), { type: 'text' as const, text: this.defuse(m.text) }],
    }));
  }

  /** Renders and tokenizes a normalised conversation, expanding the placeholder. */
  private encode(messages: ChatMessage[]): Omit<BuiltPrompt, 'droppedMessages'> {
    const text = this.template.render(this.toTemplateMessages(messages), { addGenerationPrompt: true });
    const raw = this.tokenizer.encode(text);
    const expected = messages.some((m) => m.image) ? 1 : 0;
    const found = raw.reduce((n, id) => (id === this.imageTokenId ? n + 1 : n), 0);
    if (found !== expected) {
      // The template did not write the placeholder once per picture: a template/tokenizer mismatch.
      throw new VistyleError(
        'CHECKPOINT_INVALID',
        `The chat template produced ${found} image placeholders (id ${this.imageTokenId}) for ${expected} picture(s).`,
        { details: { found, expected, imageTokenId: this.imageTokenId } },
      );
    }
    const ids: number[] = [];
    const imageTokenPositions: number[] = [];
    for (const id of raw) {
      if (id === this.imageTokenId) {
        for (let i = 0; i < this.imageTokens; i++) {
          imageTokenPositions.push(ids.length);
          ids.push(id);
        }
      } else {
        ids.push(id);
      }
    }
    return { ids, imageTokenPositions, text, messages };
  }

  /**
   * Prompt ids for a conversation (oldest first, ending with the question to answer). Throws
   * QUESTION_EMPTY, IMAGE_MISSING, INTERNAL (see normalizeConversation) and PROMPT_TOO_LONG.
   */
  build(messages: readonly ChatMessage[], options: BuildOptions = {}): BuiltPrompt {
    const hasImage = options.hasImage ?? messages.some((m) => m.image === true);
    const conversation = normalizeConversation(messages, hasImage);
    const limit = options.maxPromptTokens ?? Number.POSITIVE_INFINITY;
    const full = this.encode(conversation);
    if (full.ids.length <= limit) return { ...full, droppedMessages: 0 };
    if (!options.trimHistory) throw tooLong(full.ids.length, limit);

    // Drop k oldest turns (a turn = a user message and the replies after it), smallest k that fits.
    const firstTurn = conversation.findIndex((m) => m.role !== 'system');
    const turnStarts: number[] = [];
    for (let i = firstTurn; i < conversation.length - 1; i++) {
      if (conversation[i]!.role === 'user') turnStarts.push(i);
    }
    const withoutTurns = (k: number): ChatMessage[] => {
      const keepFrom = k < turnStarts.length ? turnStarts[k]! : conversation.length - 1;
      const kept = [...conversation.slice(0, firstTurn), ...conversation.slice(keepFrom).map((m) => ({ ...m }))];
      if (conversation.slice(firstTurn, keepFrom).some((m) => m.image)) {
        // The picture stays in the conversation: it moves to the oldest user message kept.
        kept.find((m) => m.role === 'user')!.image = true;
      }
      return kept;
    };
    let lo = 1;
    let hi = turnStarts.length;
    let best: Omit<BuiltPrompt, 'droppedMessages'> | null = null;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const attempt = this.encode(withoutTurns(mid));
      if (attempt.ids.length <= limit) {
        best = attempt;
        hi = mid - 1;
      } else {
        lo = mid + 1;
      }
    }
    if (!best) {
      const alone = turnStarts.length > 0 ? this.encode(withoutTurns(turnStarts.length)) : full;
      throw tooLong(alone.ids.length, limit);
    }
    return { ...best, droppedMessages: conversation.length - best.messages.length };
  }
}

function tooLong(tokens: number, limit: number): VistyleError {
  return new VistyleError('PROMPT_TOO_LONG', `The conversation is ${tokens} tokens; at most ${limit} fit. Ask a shorter question or start over.`, {
    details: { promptTokens: tokens, maxPromptTokens: limit },
  });
}
