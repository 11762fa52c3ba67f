// Streaming detokenization: generated ids in, text deltas out. Qwen's byte-level BPE spells a
// Chinese character or an emoji as several tokens that are not characters on their own; decoding
// them one by one would print U+FFFD. This keeps two offsets into the ids, as text-generation
// servers do: the text of the window [prefixOffset, readOffset) was already emitted, and a delta is
// released only when decoding the window up to the newest id gives more text that does not end in
// an incomplete character (U+FFFD). Decoding a window that starts a token early gives decoders that
// treat the first token specially (SentencePiece's leading space) the context they need.
//
// The deltas join to exactly tokenizer.decode(ids, { skipSpecialTokens }); special tokens such as
// `<|im_end|>` are skipped by default; ids the tokenizer does not know (greedy can pick them — the
// model has more rows than the vocabulary) contribute no text.
import type { TextTokenizer } from './tokenizer.js';

const REPLACEMENT = '\ufffd';

export interface DetokenizerOptions {
  /** Leave special tokens out of the text. Default true. */
  skipSpecialTokens?: boolean;
}

export class StreamingDetokenizer {
  private readonly tokenizer: TextTokenizer;
  private readonly skipSpecialTokens: boolean;
  private readonly ids: number[] = [];
  private prefixOffset = 0;
  private readOffset = 0;
  private emitted = '';

  constructor(tokenizer: TextTokenizer, options: DetokenizerOptions = {}) {
    this.tokenizer = tokenizer;
    this.skipSpecialTokens = options.skipSpecialTokens ?? true;
  }

  /** Everything emitted so far (the concatenation of the deltas). */
  get text(): string {
    return this.emitted;
  }

  /** Adds one generated id; returns the new text it completes ('' while a character is partial). */
  push(tokenId: number): string {
    this.ids.push(tokenId);
    const delta = this.pending();
    if (delta.length === 0 || delta.endsWith(REPLACEMENT)) return '';
    return this.advance(delta);
  }

  /**
   * At the end of generation: the text still held back (an incomplete character becomes U+FFFD,
   * as the full decode has it).
   */
  flush(): string {
    return this.advance(this.pending());
  }

  private pending(): string {
    const opts = { skipSpecialTokens: this.skipSpecialTokens };
    const before = this.tokenizer.decode(this.ids.slice(this.prefixOffset, this.readOffset), opts);
    const after = this.tokenizer.decode(this.ids.slice(this.prefixOffset), opts);
    // Byte-level decoding makes `before` a prefix of `after` (the window only ever starts at a
    // character boundary), so the new text is what follows it.
    return after.length > before.length ? after.slice(before.length) : '';
  }

  private advance(delta: string): string {
    this.prefixOffset = this.readOffset;
    this.readOffset = this.ids.length;
    this.emitted += delta;
    return delta;
  }
}
