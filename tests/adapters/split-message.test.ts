import { describe, expect, it } from 'vitest';
import { splitMessage } from '../../adapters/shared/split-message.js';

describe('splitMessage', () => {
  it('keeps a short text whole (trimmed) and returns nothing for blank text', () => {
    expect(splitMessage('  hello world \n', 100)).toEqual(['hello world']);
    expect(splitMessage(' \n\n ', 100)).toEqual([]);
  });

  it('cuts at paragraph boundaries first', () => {
    const p1 = 'a'.repeat(40);
    const p2 = 'b b b b b. ' + 'b'.repeat(30);
    const p3 = 'c'.repeat(20);
    const parts = splitMessage(`${p1}\n\n${p2}\n\n${p3}`, 60);
    expect(parts).toEqual([p1, p2.trimEnd(), p3]);
  });

  it('packs several paragraphs into one message when they fit', () => {
    const parts = splitMessage('one\n\ntwo\n\nthree', 10);
    expect(parts).toEqual(['one\n\ntwo', 'three']);
  });

  it('falls back to line breaks, then sentence ends, then spaces', () => {
    expect(splitMessage('first line here\nsecond line here', 20)).toEqual(['first line here', 'second line here']);
    expect(splitMessage('One sentence here. Another one follows', 25)).toEqual(['One sentence here.', 'Another one follows']);
    expect(splitMessage('alpha beta gamma delta', 12)).toEqual(['alpha beta', 'gamma delta']);
  });

  it('cuts Chinese text at sentence punctuation', () => {
    const parts = splitMessage('这是第一句。这是第二句话。', 8);
    expect(parts).toEqual(['这是第一句。', '这是第二句话。']);
  });

  it('never splits a surrogate pair or an emoji cluster, and every chunk respects the limit', () => {
    const emoji = '👍🏽'; // 4 UTF-16 code units, one grapheme
    const text = emoji.repeat(30);
    const parts = splitMessage(text, 10);
    for (const part of parts) {
      expect(part.length).toBeLessThanOrEqual(10);
      expect(part.length % emoji.length).toBe(0);
      expect(/^(?:👍🏽)+$/u.test(part)).toBe(true);
    }
    expect(parts.join('')).toBe(text);
  });

  it('hard-cuts an unbroken word at the limit and loses no characters', () => {
    const text = 'x'.repeat(25);
    expect(splitMessage(text, 10)).toEqual(['x'.repeat(10), 'x'.repeat(10), 'x'.repeat(5)]);
  });

  it('preserves all non-separator content for a long mixed text within Telegram and Discord limits', () => {
    const paragraphs = Array.from({ length: 60 }, (_, i) => `Paragraph ${i}: ` + 'word '.repeat(20 + (i % 7) * 30).trim() + '.');
    const text = paragraphs.join('\n\n');
    for (const limit of [4096, 2000]) {
      const parts = splitMessage(text, limit);
      expect(parts.length).toBeGreaterThan(1);
      for (const part of parts) expect(part.length).toBeLessThanOrEqual(limit);
      expect(parts.join('').replace(/\s+/g, '')).toBe(text.replace(/\s+/g, ''));
      // paragraph boundaries are respected: no paragraph is split when each one fits
      for (const part of parts) expect(part.split('\n\n').every((p) => paragraphs.includes(p))).toBe(true);
    }
  });
});
