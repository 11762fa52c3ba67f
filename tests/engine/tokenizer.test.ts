import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { isVistyleError } from '../../src/errors.js';
import { loadTokenizer, TextTokenizer } from '../../src/engine/tokenizer.js';
import { endOfTextIds } from '../../src/engine/text-parts.js';
import { llavaQwenTokenizerDir, QWEN_IDS } from './tokenizer-support.js';

const TINY = join(import.meta.dirname, '..', 'fixtures', 'tiny-a');

const ROUND_TRIP = [
  'What is in this picture?',
  '这张图片里有什么？一只猫坐在窗台上。',
  '佢哋喺度食緊嘢啊，好正！',
  '呢間麵包舖啲菠蘿包真係一流，咪話唔好食喎。',
  'Emoji: 🍞🥐 👍🏽 and a family 👨‍👩‍👧‍👦, a rainbow flag 🏳️‍🌈, a keycap 1️⃣',
  '  leading spaces, tabs\tand\nnewlines\n\n',
  'Mixed 中文 English 粵語 😀 123 4567',
];

describe('TextTokenizer on the real Qwen vocabulary', () => {
  let tok: TextTokenizer;
  beforeAll(async () => {
    tok = await loadTokenizer(llavaQwenTokenizerDir());
  });

  it('has the special tokens of the llava-interleave checkpoint', () => {
    expect(tok.encode('<|endoftext|>')).toEqual([QWEN_IDS.endoftext]);
    expect(tok.encode('<|im_start|>')).toEqual([QWEN_IDS.imStart]);
    expect(tok.encode('<|im_end|>')).toEqual([QWEN_IDS.imEnd]);
    expect(tok.encode('<image>')).toEqual([QWEN_IDS.image]);
    expect(tok.encode('assistant')).toEqual([QWEN_IDS.assistant]);
    expect([...tok.specialTokenIds].sort()).toEqual([151643, 151644, 151645, 151646]);
    expect(tok.vocabSize).toBe(151647);
    expect(tok.settings.eosToken).toBe('<|im_end|>');
    expect(tok.settings.bosToken).toBeNull();
  });

  it('ends answers at <|im_end|> and at the pad token <|endoftext|>', () => {
    expect(endOfTextIds(tok, QWEN_IDS.image)).toEqual([QWEN_IDS.imEnd, QWEN_IDS.endoftext]);
    // The image placeholder never ends an answer, even where a tokenizer names it as a role token.
    expect(endOfTextIds(tok, QWEN_IDS.imEnd)).toEqual([QWEN_IDS.endoftext]);
  });

  it('recognises special tokens written in the text and adds none of its own', () => {
    expect(tok.encode('<|im_start|>user\n<image>\nhi<|im_end|>\n')).toEqual([
      QWEN_IDS.imStart,
      QWEN_IDS.user,
      QWEN_IDS.newline,
      QWEN_IDS.image,
      QWEN_IDS.newline,
      tok.encode('hi')[0],
      QWEN_IDS.imEnd,
      QWEN_IDS.newline,
    ]);
    expect(tok.encode('hi')).toHaveLength(1);
    expect(tok.encode('')).toEqual([]);
  });

  for (const text of ROUND_TRIP) {
    it(`round-trips ${JSON.stringify(text.slice(0, 24))}`, () => {
      const ids = tok.encode(text);
      expect(ids.length).toBeGreaterThan(0);
      expect(ids.every((id) => id < QWEN_IDS.endoftext)).toBe(true); // plain text: no special ids
      expect(tok.decode(ids)).toBe(text);
    });
  }

  it('decodes special tokens, or skips them on request', () => {
    const ids = tok.encode('<|im_start|>assistant\nOK<|im_end|>');
    expect(tok.decode(ids)).toBe('<|im_start|>assistant\nOK<|im_end|>');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('assistant\nOK');
  });

  it('decodes ids outside the vocabulary as empty text instead of failing', () => {
    // The real model has 152000 embedding rows; the tokenizer knows 151647 ids.
    expect(tok.isKnownId(151999)).toBe(false);
    expect(tok.decode([151999])).toBe('');
    expect(tok.decode([-1, 1.5, 200000])).toBe('');
    const hello = tok.encode('Hello');
    expect(tok.decode([151700, ...hello, 151999])).toBe('Hello');
    expect(tok.idToToken(151999)).toBeUndefined();
    expect(tok.idToToken(QWEN_IDS.imEnd)).toBe('<|im_end|>');
    expect(tok.tokenToId('<image>')).toBe(QWEN_IDS.image);
  });
});

describe('loadTokenizer', () => {
  it('loads the tiny-a toy tokenizer from its folder or its tokenizer.json', async () => {
    for (const path of [TINY, join(TINY, 'tokenizer.json')]) {
      const tok = await loadTokenizer(path);
      // toy vocabulary: text token id = UTF-8 byte value; specials at 500..503
      expect(tok.encode('Hi\n')).toEqual([72, 105, 10]);
      expect(tok.encode('<|im_start|>user <image>')).toEqual([501, 117, 115, 101, 114, 32, 503]);
      expect(tok.settings.eosToken).toBe('<|im_end|>');
      expect(tok.settings.padToken).toBe('<|endoftext|>');
    }
  });

  it('fails with CHECKPOINT_INVALID naming the file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vistyle-tok-bad-'));
    const expectInvalid = async (path: string, message: RegExp): Promise<void> => {
      const error = await loadTokenizer(path).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isVistyleError(error, 'CHECKPOINT_INVALID')).toBe(true);
      expect((error as Error).message).toMatch(message);
    };
    await expectInvalid(join(dir, 'nope'), /No tokenizer at .*nope/);
    await expectInvalid(dir, /Cannot read .*tokenizer\.json/);
    writeFileSync(join(dir, 'tokenizer.json'), '{ not json');
    await expectInvalid(dir, /tokenizer\.json is not valid JSON/);
    writeFileSync(join(dir, 'tokenizer.json'), '{"version": "1.0"}');
    await expectInvalid(dir, /field "model" is missing/);
  });
});
