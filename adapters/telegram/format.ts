// The model writes light Markdown (**bold**, *italic*, `code`, ``` blocks, [links](https://...),
// # headings). Telegram shows it through its HTML parse mode, which only needs <, > and & escaped
// and never fails on stray punctuation the way MarkdownV2 does. Only the final message is
// formatted; anything we do not recognise stays literal text.

export function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function escapeAttribute(text: string): string {
  return escapeHtml(text).replace(/"/g, '&quot;');
}

/**
 * Markdown-ish model output -> Telegram HTML. Unbalanced markers are left as they are; if the
 * spans overlap (e.g. `**a _b** c_`), the result would not nest, so the text goes out unformatted.
 */
export function markdownToTelegramHtml(markdown: string): string {
  const html = convert(markdown);
  return tagsNest(html) ? html : escapeHtml(markdown);
}

/** Whether every tag we produced is closed in the right order. */
function tagsNest(html: string): boolean {
  const open: string[] = [];
  for (const match of html.matchAll(/<(\/?)([a-z]+)[^>]*>/g)) {
    if (match[1] === '') open.push(match[2]!);
    else if (open.pop() !== match[2]) return false;
  }
  return open.length === 0;
}

function convert(markdown: string): string {
  const out: string[] = [];
  const lines = markdown.split('\n');
  let index = 0;
  while (index < lines.length) {
    const line = lines[index]!;
    const fence = /^\s*```\s*([\w+#.-]*)\s*$/.exec(line);
    if (fence) {
      const close = lines.findIndex((candidate, i) => i > index && /^\s*```\s*$/.test(candidate));
      if (close > index) {
        const code = escapeHtml(lines.slice(index + 1, close).join('\n'));
        const language = fence[1] ? ` class="language-${escapeAttribute(fence[1])}"` : '';
        out.push(language ? `<pre><code${language}>${code}</code></pre>` : `<pre>${code}</pre>`);
        index = close + 1;
        continue;
      }
    }
    const heading = /^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$/.exec(line);
    out.push(heading ? `<b>${inline(heading[1]!)}</b>` : inline(line));
    index += 1;
  }
  return out.join('\n');
}

/** Inline spans of one line: code spans and links first (their content is literal), then bold, italic, strike. */
function inline(line: string): string {
  const parts = line.split(/(`[^`\n]+`|\[[^\]\n]+\]\(https?:\/\/[^\s)]+\))/);
  return parts
    .map((part, i) => {
      if (i % 2 === 1) {
        if (part.startsWith('`')) return `<code>${escapeHtml(part.slice(1, -1))}</code>`;
        const link = /^\[([^\]]+)\]\((.+)\)$/.exec(part)!;
        return `<a href="${escapeAttribute(link[2]!)}">${escapeHtml(link[1]!)}</a>`;
      }
      let html = escapeHtml(part);
      html = html.replace(/\*\*(?=\S)([^*\n]*?\S)\*\*/g, '<b>$1</b>');
      html = html.replace(/__(?=\S)([^_\n]*?\S)__/g, '<b>$1</b>');
      html = html.replace(/(^|[^\w*])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?![\w*])/g, '$1<i>$2</i>');
      html = html.replace(/(^|[^\w])_(?=[^\s_])([^_\n]*?[^\s_])_(?!\w)/g, '$1<i>$2</i>');
      html = html.replace(/~~(?=\S)([^~\n]*?\S)~~/g, '<s>$1</s>');
      return html;
    })
    .join('');
}
