// A stored conversation plus this request's new pictures -> the engine's history messages, the
// question's pictures and the images[] they index. Every picture stays with the turn it came
// with; pictures whose turn is outside the history window (or was dropped from the store) go
// with the oldest turn kept, so a follow-up about an old photo still shows it (the engine drops
// the oldest turns, and moves their pictures forward, when the context is full). Pictures with
// the same bytes share one images[] entry; each place that shows one is its own occurrence.
import type { ChatMessage, MessagePart } from '../engine/types.js';
import type { Turn } from '../store/store.js';

export interface PromptPicture {
  sha256: string;
  bytes: Uint8Array;
}

export interface StoredPicture extends PromptPicture {
  /** The turn it came with. */
  turnSeq: number;
}

export interface ConversationPrompt {
  /** Earlier turns, oldest first: user messages with their pictures, then the answers. */
  history: ChatMessage[];
  /** Pictures shown with the question (indexes into `images`), in order. */
  questionImages: number[];
  images: Uint8Array[];
  /** Picture occurrences in history and question together. */
  occurrences: number;
}

/**
 * `turns` are the turns to show (the history window, oldest first); `stored` every picture of the
 * conversation (oldest first); `fresh` the pictures this request brought, shown with the question.
 */
export function conversationPrompt(turns: readonly Turn[], stored: readonly StoredPicture[], fresh: readonly PromptPicture[]): ConversationPrompt {
  const images: Uint8Array[] = [];
  const indexOf = new Map<string, number>();
  const index = (picture: PromptPicture): number => {
    let at = indexOf.get(picture.sha256);
    if (at === undefined) {
      at = images.push(picture.bytes) - 1;
      indexOf.set(picture.sha256, at);
    }
    return at;
  };
  const shown = new Set(turns.map((turn) => turn.seq));
  const carried = stored.filter((picture) => !shown.has(picture.turnSeq));
  let occurrences = 0;
  const parts = (pictures: readonly PromptPicture[]): MessagePart[] =>
    pictures.map((picture) => {
      occurrences++;
      return { type: 'image', image: index(picture) };
    });

  const history: ChatMessage[] = [];
  turns.forEach((turn, position) => {
    const own = stored.filter((picture) => picture.turnSeq === turn.seq);
    const pictures = position === 0 ? [...carried, ...own] : own;
    history.push(
      pictures.length > 0 ? { role: 'user', content: [...parts(pictures), { type: 'text', text: turn.question }] } : { role: 'user', content: turn.question },
      { role: 'assistant', content: turn.answer },
    );
  });
  const withQuestion = turns.length === 0 ? [...carried, ...fresh] : [...fresh];
  const questionImages = parts(withQuestion).map((part) => (part as { image: number }).image);
  return { history, questionImages, images, occurrences };
}
