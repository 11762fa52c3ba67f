import { describe, expect, it } from 'vitest';
import { CsvParser, parseCsv } from '../../models/data/csv.js';
import { extractStyledQa, firstJsonObject } from '../../models/data/extract.js';

describe('CSV parser', () => {
  it('handles quoted commas, doubled quotes, line breaks, CRLF, a BOM and a missing final newline', () => {
    const text = '\uFEFFurl,caption\r\nhttp://a,"one, two"\r\n"http://b","say ""hi""\nnext line"\nhttp://c,last';
    expect(parseCsv(text)).toEqual([
      ['url', 'caption'],
      ['http://a', 'one, two'],
      ['http://b', 'say "hi"\nnext line'],
      ['http://c', 'last'],
    ]);
  });

  it('gives the same records however the input is cut into chunks', () => {
    const text = 'a,b\r\n"x,\r\ny","q""q"\r\n,\r\n"",end\r\n';
    const whole = parseCsv(text);
    expect(whole).toEqual([['a', 'b'], ['x,\r\ny', 'q"q'], ['', ''], ['', 'end']]);
    for (let size = 1; size <= 4; size++) {
      const parser = new CsvParser();
      const records = [];
      for (let i = 0; i < text.length; i += size) records.push(...parser.push(text.slice(i, i + size)));
      records.push(...parser.end());
      expect(records.map((r) => r.fields)).toEqual(whole);
    }
  });

  it('keeps empty fields, skips blank lines, and reports where records start', () => {
    const parser = new CsvParser();
    const records = [...parser.push('a,,c\n\n"multi\nline",x\nlast,y\n'), ...parser.end()];
    expect(records.map((r) => [r.line, r.fields])).toEqual([
      [1, ['a', '', 'c']],
      [3, ['multi\nline', 'x']],
      [5, ['last', 'y']],
    ]);
  });

  it('rejects an unclosed quote and a stray quote, with the line', () => {
    expect(() => parseCsv('a,b\n"open,x\n')).toThrow(/not closed/);
    const parser = new CsvParser();
    expect(() => parser.push('a,b\nx"y,z\n')).toThrow(expect.objectContaining({ line: 2 }));
    expect(() => parseCsv('"a"b,c\n')).toThrow(/after a closing quote/);
  });
});

describe('reply JSON extraction', () => {
  it('accepts plain JSON, fenced JSON, and JSON inside stray text', () => {
    const want = { question: '这是什么？', answer: '你瞎吗？是猫！' };
    expect(extractStyledQa(JSON.stringify(want))).toEqual({ ok: true, value: want });
    expect(extractStyledQa('```json\n' + JSON.stringify(want, null, 2) + '\n```')).toEqual({ ok: true, value: want });
    expect(extractStyledQa(`Here it is: ${JSON.stringify(want)} — enjoy {not json}`)).toEqual({ ok: true, value: want });
    expect(extractStyledQa('{"question": "q", "ans": "a"}')).toEqual({ ok: true, value: { question: 'q', answer: 'a' } });
  });

  it('skips braces inside strings and balanced non-JSON before the object', () => {
    expect(firstJsonObject('{x} then {"a": "}{", "b": {"c": 1}} tail')).toBe('{"a": "}{", "b": {"c": 1}}');
  });

  it('refuses replies with no usable object', () => {
    expect(extractStyledQa('no json here')).toEqual({ ok: false, error: 'no JSON object in the reply' });
    expect(extractStyledQa('{"question": "q", "answer": "cut')).toMatchObject({ ok: false });
    const empty = extractStyledQa('{"question": "q", "answer": "  "}');
    expect(empty.ok).toBe(false);
    if (!empty.ok) expect(empty.error).toContain('answer');
    expect(extractStyledQa('{"title": "x"}')).toMatchObject({ ok: false });
  });
});
