// Conversation -> prompt token ids: check the conversation, render it with the checkpoint's chat
// template, tokenize, and expand the image placeholder to the N image-token rows that the image
// features replace.
//
//   const prompts = new PromptBuilder({ tokenizer, template, imageTokenId, imageTokens });
//   const { ids, imageRuns } = prompts.build(messages, { imageCount: 2, maxPromptTokens });
//
// Pictures are image parts of messages ({type:'image', image: i}, i indexing the request's
// images). The template places them (the hub template: a message's pictures first, then its text
// parts joined); each placeholder it writes becomes `imageTokens` rows, and the r-th placeholder
// in the rendered prompt is the r-th image part in message order. A plain-string content becomes
// one text part: the templates select parts by type, and @huggingface/jinja has no `selectattr`
// on strings.
//
// Text that people type never becomes a special token: an `<image>` or `<|im_end|>` inside a
// question is defused (a zero-width space after its first character) before rendering, so it can
// neither add image rows nor close the turn.
import { VistyleError } from '../errors.js';
import type { ChatTemplate, TemplateMessage } from './chat-template.js';
import type { TextTokenizer } from './tokenizer.js';
import type { ChatMessage, MessagePart } from './types.js';

export interface PromptBuilderOptions {
  tokenizer: TextTokenizer;
  template: ChatTemplate;
  /** Id of the image placeholder (manifest.tokens.imageTokenId; 151646 for the real model). */
  imageTokenId: number;
  /** Image-token rows per image (manifest.vision.imageTokens; 729 for the real model). */
  imageTokens: number;
}

export interface BuildOptions {
  /** How many pictures the request carries (GenerateRequest.images.length). Default 0. */
  imageCount?: number;
  /** Longest prompt allowed, in tokens; longer gives PROMPT_TOO_LONG (or trimming, below). */
  maxPromptTokens?: number;
  /** Reported as `capacity` in PROMPT_TOO_LONG details (the engine's positions). Default maxPromptTokens. */
  capacity?: number;
  /**
   * Drop the oldest question/answer turns (never system messages or the last question) until the
   * prompt fits maxPromptTokens. The pictures of dropped turns move to the oldest user message
   * kept (newest first, as many as fit; at least one when no kept message shows a picture); the
   * rest are dropped with their turns.
   */
  trimHistory?: boolean;
}

/** One picture occurrence in the prompt. */
export interface ImageRun {
  /** Index into the request's images. */
  image: number;
  /** Position of its first image-token row in `ids` (the run is `imageTokens` rows long). */
  start: number;
}

export interface BuiltPrompt {
  /** Prompt ids with each image placeholder already expanded to `imageTokens` ids. */
  ids: number[];
  /** Picture occurrences in prompt order. */
  imageRuns: ImageRun[];
  /** Positions in `ids` of every image-token row, ascending (empty without a picture). */
  imageTokenPositions: number[];
  /** The rendered template text (one placeholder per picture, not expanded). */
  text: string;
  /** The conversation as rendered: validated, oldest turns dropped when trimmed. */
  messages: ChatMessage[];
  /** How many messages trimming dropped. */
  droppedMessages: number;
  /** Picture occurrences that went with dropped messages (not moved to a kept one). */
  droppedImages: number;
}

/** Zero-width space: splits a special-token string so the tokenizer no longer sees it. */
const DEFUSE = '\u200b';

/** A message's content as parts (a plain string is one text part). */
export function contentParts(message: ChatMessage): MessagePart[] {
  return typeof message.content === 'string' ? [{ type: 'text', text: message.content }] : message.content;
}

/** The text of a message (its text parts joined). */
export function messageText(message: ChatMessage): string {
  return contentParts(message)
    .map((part) => (part.type === 'text' ? part.text : ''))
    .join('');
}

/** The picture indexes a message shows, in order. */
export function messageImages(message: ChatMessage): number[] {
  return contentParts(message).flatMap((part) => (part.type === 'image' ? [part.image] : []));
}

/**
 * Checks a conversation and returns a copy with every content as parts. Throws QUESTION_EMPTY (no
 * user question last, or one without text), IMAGE_MISSING (an image part indexes a picture that
 * was not sent) or INTERNAL (a picture in a non-user message, a sent picture no message shows).
 */
export function normalizeConversation(messages: readonly ChatMessage[], imageCount: number): ChatMessage[] {
  const copy: ChatMessage[] = messages.map((m) => ({ role: m.role, content: contentParts(m).map((part) => ({ ...part })) }));
  const last = copy.at(-1);
  if (!last || last.role !== 'user' || messageText(last).trim().length === 0) {
    throw new VistyleError('QUESTION_EMPTY', 'The question is empty; ask something about the picture.');
  }
  const shown = new Set<number>();
  for (const message of copy) {
    const images = messageImages(message);
    if (images.length > 0 && message.role !== 'user') {
      throw new VistyleError('INTERNAL', 'Only a user message can show a picture.');
    }
    for (const index of images) {
      if (!Number.isInteger(index) || index < 0 || index >= imageCount) {
        throw new VistyleError(
          'IMAGE_MISSING',
          imageCount === 0 ? 'The conversation shows a picture, but no image was sent.' : `The conversation shows picture ${index + 1}, but only ${imageCount} were sent.`,
          { details: { image: index, imageCount } },
        );
      }
      shown.add(index);
    }
  }
  for (let index = 0; index < imageCount; index++) {
    if (!shown.has(index)) throw new VistyleError('INTERNAL', `picture ${index + 1} of ${imageCount} is not shown by any message`);
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

  /** The conversation in the HF multimodal message format the templates expect (parts as given). */
  toTemplateMessages(messages: readonly ChatMessage[]): TemplateMessage[] {
    return messages.map((m) => ({
      role: m.role,
      content: contentParts(m).map((part) => (part.type === 'image' ? { type: 'image' as const } : { type: 'text' as const, text: this.defuse(part.text) })),
    }));
  }

  /** Renders and tokenizes a normalised conversation, expanding the placeholders. */
  private encode(messages: ChatMessage[]): Omit<BuiltPrompt, 'droppedMessages' | 'droppedImages'> {
    const text = this.template.render(this.toTemplateMessages(messages), { addGenerationPrompt: true });
    const raw = this.tokenizer.encode(text);
    const order = messages.flatMap(messageImages);
    const found = raw.reduce((n, id) => (id === this.imageTokenId ? n + 1 : n), 0);
    if (found !== order.length) {
      // The template did not write the placeholder once per picture: a template/tokenizer mismatch.
      throw new VistyleError(
        'CHECKPOINT_INVALID',
        `The chat template produced ${found} image placeholders (id ${this.imageTokenId}) for ${order.length} picture(s).`,
        { details: { found, expected: order.length, imageTokenId: this.imageTokenId } },
      );
    }
    const ids: number[] = [];
    const imageTokenPositions: number[] = [];
    const imageRuns: ImageRun[] = [];
    for (const id of raw) {
      if (id === this.imageTokenId) {
        imageRuns.push({ image: order[imageRuns.length]!, start: ids.length });
        for (let i = 0; i < this.imageTokens; i++) {
          imageTokenPositions.push(ids.length);
          ids.push(id);
        }
      } else {
        ids.push(id);
      }
    }
    return { ids, imageRuns, imageTokenPositions, text, messages };
  }

  /**
   * Prompt ids for a conversation (oldest first, ending with the question to answer). Throws
   * QUESTION_EMPTY, IMAGE_MISSING, INTERNAL (see normalizeConversation) and PROMPT_TOO_LONG (with
   * details promptTokens, capacity, maxPromptTokens, imageTokens (rows per picture) and maxImages:
   * how many pictures would fit with this text).
   */
  build(messages: readonly ChatMessage[], options: BuildOptions = {}): BuiltPrompt {
    const conversation = normalizeConversation(messages, options.imageCount ?? 0);
    const limit = options.maxPromptTokens ?? Number.POSITIVE_INFINITY;
    const full = this.encode(conversation);
    if (full.ids.length <= limit) return { ...full, droppedMessages: 0, droppedImages: 0 };
    if (!options.trimHistory) throw this.tooLong(full, limit, options);

    // Drop k oldest turns (a turn = a user message and the replies after it), smallest k that fits.
    const firstTurn = conversation.findIndex((m) => m.role !== 'system');
    const turnStarts: number[] = [];
    for (let i = firstTurn; i < conversation.length - 1; i++) {
      if (conversation[i]!.role === 'user') turnStarts.push(i);
    }
    // k turns dropped; `moved` of their pictures (the newest ones) go to the oldest kept question.
    const withoutTurns = (k: number, moved: number): ChatMessage[] => {
      const keepFrom = k < turnStarts.length ? turnStarts[k]! : conversation.length - 1;
      const kept = [...conversation.slice(0, firstTurn), ...conversation.slice(keepFrom).map((m) => ({ ...m }))];
      const droppedPictures = conversation.slice(firstTurn, keepFrom).flatMap(messageImages);
      const carried = moved > 0 ? droppedPictures.slice(-moved) : [];
      if (carried.length > 0) {
        const target = kept.find((m) => m.role === 'user')!;
        target.content = [...carried.map((image) => ({ type: 'image' as const, image })), ...contentParts(target)];
      }
      return kept;
    };
    const droppedPicturesOf = (k: number): number => {
      const keepFrom = k < turnStarts.length ? turnStarts[k]! : conversation.length - 1;
      return conversation.slice(firstTurn, keepFrom).flatMap(messageImages).length;
    };
    const attempt = (k: number, moved: number): BuiltPrompt | null => {
      const built = this.encode(withoutTurns(k, moved));
      if (built.ids.length > limit) return null;
      return { ...built, droppedMessages: conversation.length - built.messages.length, droppedImages: droppedPicturesOf(k) - moved };
    };
    // Pictures first: keep every picture of the dropped turns while any k lets them fit.
    for (let k = 1; k <= turnStarts.length; k++) {
      const fits = attempt(k, droppedPicturesOf(k));
      if (fits) return fits;
    }
    // Then fewer of them, oldest dropped first; a conversation that had pictures keeps at least one.
    const k = turnStarts.length;
    const keptShowPictures = withoutTurns(k, 0).some((m) => messageImages(m).length > 0);
    const fewest = keptShowPictures || droppedPicturesOf(k) === 0 ? 0 : 1;
    for (let moved = droppedPicturesOf(k) - 1; moved >= fewest; moved--) {
      const fits = attempt(k, moved);
      if (fits) return fits;
    }
    throw this.tooLong(this.encode(withoutTurns(k, fewest)), limit, options);
  }

  private tooLong(built: Omit<BuiltPrompt, 'droppedMessages' | 'droppedImages'>, limit: number, options: BuildOptions): VistyleError {
    const tokens = built.ids.length;
    // Rows one picture costs in this template: its image rows plus what the template writes around it.
    const pictures = built.imageRuns.length;
    const withoutPictures = pictures > 0
      ? this.encode(built.messages.map((m) => ({ role: m.role, content: contentParts(m).filter((part) => part.type === 'text') }))).ids.length
      : tokens;
    const perPicture = pictures > 0 ? (tokens - withoutPictures) / pictures : this.imageTokens;
    const maxImages = Math.max(0, Math.floor((limit - withoutPictures) / perPicture));
    const capacity = options.capacity ?? limit;
    const fit = pictures > 0 ? ` At most ${maxImages} picture(s) fit with this question.` : '';
    return new VistyleError('PROMPT_TOO_LONG', `The conversation is ${tokens} tokens; at most ${limit} fit.${fit} Ask a shorter question or start over.`, {
      details: { promptTokens: tokens, capacity, maxPromptTokens: limit, imageTokens: this.imageTokens, maxImages, imageCount: pictures },
    });
  }
}
