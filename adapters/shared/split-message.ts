// Splits a final answer into messages no longer than a platform's limit (Telegram 4096, Discord
// 2000), at the most natural boundary available: a paragraph break, then a line break, then the
// end of a sentence, then a space, and only as a last resort inside a word — and then never inside
// a surrogate pair or a grapheme cluster (an emoji with modifiers stays whole).
// Lengths are counted in UTF-16 code units, which is what Telegram counts and never less than what
// Discord counts.

/** A cut is "natural" only if it keeps at least this share of the limit in the chunk. */
const MIN_FILL = 0.3;

const SENTENCE_END = /[.!?;:](?=\s)|[。！？…；]/gu;

export interface SplitOptions {
  /** Maximum UTF-16 code units per message. */
  maxLength: number;
}

export function splitMessage(text: string, maxLengthOrOptions: number | SplitOptions): string[] {
  const maxLength = typeof maxLengthOrOptions === 'number' ? maxLengthOrOptions : maxLengthOrOptions.maxLength;
  if (!Number.isInteger(maxLength) || maxLength < 2) throw new RangeError(`maxLength must be an integer >= 2, got ${maxLength}`);
  const chunks: string[] = [];
  let rest = text.trim();
  while (rest.length > maxLength) {
    const { end, next } = findCut(rest, maxLength);
    const chunk = rest.slice(0, end).trimEnd();
    if (chunk.length > 0) chunks.push(chunk);
    rest = rest.slice(next).trimStart();
  }
  if (rest.length > 0) chunks.push(rest);
  return chunks;
}

/** `end`: where the chunk ends; `next`: where the remainder starts (separators between are dropped). */
function findCut(text: string, maxLength: number): { end: number; next: number } {
  const window = text.slice(0, maxLength + 1); // +1: a separator right after the limit still counts
  const minEnd = Math.floor(maxLength * MIN_FILL);
  const candidates: Array<() => { end: number; next: number } | undefined> = [
    () => lastSeparator(window, /\n[ \t]*\n\s*/g, maxLength),
    () => lastSeparator(window, /\n/g, maxLength),
    () => lastSentenceEnd(window, maxLength),
    () => lastSeparator(window, /[ \t\u3000]+/g, maxLength),
  ];
  let fallback: { end: number; next: number } | undefined;
  for (const find of candidates) {
    const cut = find();
    if (!cut || cut.end <= 0) continue;
    if (cut.end >= minEnd) return cut;
    fallback ??= cut;
  }
  if (fallback) return fallback;
  const end = lastGraphemeBoundary(text, maxLength);
  return { end, next: end };
}

function lastSeparator(window: string, separator: RegExp, maxLength: number): { end: number; next: number } | undefined {
  let best: { end: number; next: number } | undefined;
  for (const match of window.matchAll(separator)) {
    const end = match.index;
    if (end > maxLength) break;
    if (end > 0) best = { end, next: end + match[0].length };
  }
  return best;
}

function lastSentenceEnd(window: string, maxLength: number): { end: number; next: number } | undefined {
  let best: { end: number; next: number } | undefined;
  for (const match of window.matchAll(SENTENCE_END)) {
    const end = match.index + match[0].length; // keep the punctuation in the chunk
    if (end > maxLength) break;
    best = { end, next: end };
  }
  return best;
}

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/** The last grapheme boundary at or before `limit` (at least one grapheme, even if it is longer). */
function lastGraphemeBoundary(text: string, limit: number): number {
  let boundary = 0;
  for (const { index, segment } of graphemes.segment(text.slice(0, limit + 64))) {
    const end = index + segment.length;
    if (end > limit) break;
    boundary = end;
  }
  if (boundary > 0) return boundary;
  // A single grapheme longer than the limit (pathological): cut at the limit, but not inside a
  // surrogate pair.
  const code = text.charCodeAt(limit - 1);
  return code >= 0xd800 && code <= 0xdbff ? limit - 1 : limit;
}
