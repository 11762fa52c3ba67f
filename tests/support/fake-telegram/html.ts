// Telegram's HTML parse mode, as the Bot API applies it: tags become MessageEntity ranges over the
// plain text, HTML character references are decoded, and anything it does not accept is refused
// with "can't parse entities". The fake server uses this so that tests see the text a user would
// see and so that badly formed markup fails like it does on the real service.

export interface FakeEntity {
  type: string;
  offset: number;
  length: number;
  url?: string;
  language?: string;
}

export interface ParsedHtml {
  text: string;
  entities: FakeEntity[];
}

export class EntityParseError extends Error {}

const TAG_TYPES: Record<string, string> = {
  b: 'bold',
  strong: 'bold',
  i: 'italic',
  em: 'italic',
  u: 'underline',
  ins: 'underline',
  s: 'strikethrough',
  strike: 'strikethrough',
  del: 'strikethrough',
  code: 'code',
  pre: 'pre',
  a: 'text_link',
  'tg-spoiler': 'spoiler',
  span: 'spoiler',
  blockquote: 'blockquote',
};

const NAMED_REFERENCES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"' };

interface OpenTag {
  name: string;
  type: string;
  start: number; // UTF-16 offset in the plain text
  url?: string;
  language?: string;
}

/** Parses Telegram-flavoured HTML into plain text and entities, or throws EntityParseError. */
export function parseTelegramHtml(html: string): ParsedHtml {
  let text = '';
  const entities: FakeEntity[] = [];
  const stack: OpenTag[] = [];
  let i = 0;
  const byteOffset = (index: number) => Buffer.byteLength(html.slice(0, index), 'utf8');

  while (i < html.length) {
    const ch = html[i]!;
    if (ch === '&') {
      const end = html.indexOf(';', i);
      const name = end > i ? html.slice(i + 1, end) : '';
      let decoded: string | undefined;
      if (/^#\d{1,7}$/.test(name)) decoded = String.fromCodePoint(Number(name.slice(1)));
      else if (/^#x[0-9a-f]{1,6}$/i.test(name)) decoded = String.fromCodePoint(parseInt(name.slice(2), 16));
      else decoded = NAMED_REFERENCES[name];
      if (decoded === undefined) {
        // Telegram leaves an unknown "&..." as literal text
        text += ch;
        i += 1;
      } else {
        text += decoded;
        i = end + 1;
      }
      continue;
    }
    if (ch !== '<') {
      text += ch;
      i += 1;
      continue;
    }
    const close = html.indexOf('>', i);
    if (close < 0) throw new EntityParseError(`Unclosed start tag at byte offset ${byteOffset(i)}`);
    const raw = html.slice(i + 1, close).trim();
    if (raw.startsWith('/')) {
      const name = raw.slice(1).trim().toLowerCase();
      const open = stack.pop();
      if (!open) throw new EntityParseError(`Unexpected end tag at byte offset ${byteOffset(i)}`);
      if (open.name !== name) {
        throw new EntityParseError(
          `Unmatched end tag at byte offset ${byteOffset(i)}, expected "</${open.name}>", found "</${name}>"`,
        );
      }
      const length = text.length - open.start;
      if (length > 0 && open.type !== 'inner-code') {
        const entity: FakeEntity = { type: open.type, offset: open.start, length };
        if (open.url !== undefined) entity.url = open.url;
        if (open.language !== undefined) entity.language = open.language;
        entities.push(entity);
      }
    } else {
      const match = /^([a-z-]+)(.*)$/is.exec(raw);
      const name = match?.[1]?.toLowerCase() ?? '';
      const attributes = match?.[2] ?? '';
      const type = TAG_TYPES[name];
      if (type === undefined) {
        throw new EntityParseError(`Unsupported start tag "${name}" at byte offset ${byteOffset(i)}`);
      }
      const open: OpenTag = { name, type, start: text.length };
      if (name === 'span' && !/class\s*=\s*"?tg-spoiler"?/.test(attributes)) {
        throw new EntityParseError(`Tag "span" must have class "tg-spoiler" at byte offset ${byteOffset(i)}`);
      }
      if (name === 'a') {
        const href = /href\s*=\s*"([^"]*)"/.exec(attributes)?.[1];
        if (!href) throw new EntityParseError(`Tag "a" must have attribute "href" at byte offset ${byteOffset(i)}`);
        open.url = href;
      }
      const parent = stack[stack.length - 1];
      if (name === 'code' && parent?.name === 'pre') {
        // <pre><code class="language-x"> is one pre entity carrying the language
        const language = /class\s*=\s*"language-([^"]+)"/.exec(attributes)?.[1];
        if (language) parent.language = language;
        open.type = 'inner-code';
      }
      stack.push(open);
    }
    i = close + 1;
  }
  const unclosed = stack.pop();
  if (unclosed) throw new EntityParseError(`Can't find end tag corresponding to start tag "${unclosed.name}"`);
  entities.sort((a, b) => a.offset - b.offset || b.length - a.length);
  return { text, entities };
}
