import { beforeAll, describe, expect, it } from 'vitest';
import { StreamingDetokenizer } from '../../src/engine/detokenizer.js';
import { StopStringFilter } from '../../src/engine/stopping.js';
import { loadTokenizer, type TextTokenizer } from '../../src/engine/tokenizer.js';
import { llavaQwenTokenizerDir, QWEN_IDS } from './tokenizer-support.js';

const TEXTS = [
  '这是一个面包店，橱窗里摆满了刚出炉的面包和扁面包🫓。',
  '佢哋喺度食緊嘢啊，好正！呢個菠蘿包真係好好食。',
  'Fresh bread 🍞🥐🥖 and a happy family 👨‍👩‍👧‍👦 with 🏳️‍🌈 and 👍🏽!',
  'Mixed: 麵包 bakery パン 빵 хлеб 🧁',
];

function stream(detok: StreamingDetokenizer, ids: readonly number[]): string[] {
  const deltas: string[] = [];
  for (const id of ids) {
    const d = detok.push(id);
    if (d) deltas.push(d);
  }
  const rest = detok.flush();
  if (rest) deltas.push(rest);
  return deltas;
}

describe('StreamingDetokenizer on the real Qwen vocabulary', () => {
  let tok: TextTokenizer;
  beforeAll(async () => {
    tok = await loadTokenizer(llavaQwenTokenizerDir());
  });

  for (const text of TEXTS) {
    it(`streams ${JSON.stringify(text.slice(0, 16))} without splitting a character`, () => {
      const ids = tok.encode(text);
      // the test is meaningful only if some characters span several tokens
      expect(ids.some((id) => tok.decode([id]).includes('\ufffd'))).toBe(true);
      const detok = new StreamingDetokenizer(tok);
      const deltas = stream(detok, ids);
      expect(deltas.join('')).toBe(text);
      expect(deltas.join('')).toBe(tok.decode(ids));
      expect(detok.text).toBe(text);
      for (const d of deltas) expect(d).not.toContain('\ufffd');
      expect(deltas.length).toBeLessThan(ids.length + 1);
    });
  }

  it('skips special tokens and ids outside the vocabulary', () => {
    const body = tok.encode('好正！👍🏽');
    const ids = [151999, ...body.slice(0, 2), 151700, ...body.slice(2), QWEN_IDS.imEnd, 200000];
    const detok = new StreamingDetokenizer(tok);
    const deltas = stream(detok, ids);
    expect(deltas.join('')).toBe('好正！👍🏽');
    expect(deltas.join('')).toBe(tok.decode(ids, { skipSpecialTokens: true }));
    const keep = new StreamingDetokenizer(tok, { skipSpecialTokens: false });
    expect(stream(keep, [...body, QWEN_IDS.imEnd]).join('')).toBe('好正！👍🏽<|im_end|>');
  });

  it('flushes an incomplete trailing character as the full decode does', () => {
    const ids = tok.encode('面包🫓'); // 🫓 is three byte-level tokens
    const cut = ids.slice(0, -1); // the emoji's last byte-level token is missing
    const detok = new StreamingDetokenizer(tok);
    const deltas = stream(detok, cut);
    expect(deltas.join('')).toBe(tok.decode(cut));
    expect(deltas.at(-1)!.endsWith('\ufffd')).toBe(true);
  });

  it('with the stop-string filter: a stop string split across tokens ends the text before it', () => {
    const text = '一個菠蘿包。\nUser: 仲有冇？';
    const ids = tok.encode(text);
    const detok = new StreamingDetokenizer(tok);
    const stops = new StopStringFilter(['\nUser:']);
    let out = '';
    let stoppedAfter = -1;
    ids.forEach((id, i) => {
      if (stops.stopped) return;
      out += stops.push(detok.push(id));
      if (stops.stopped) stoppedAfter = i;
    });
    // the stop string spans several tokens ("\n", "User", ":")
    expect(ids.slice(0, stoppedAfter + 1).length).toBeGreaterThan(tok.encode('一個菠蘿包。').length + 1);
    expect(stops.stopped).toBe(true);
    expect(out).toBe('一個菠蘿包。');
  });
});
