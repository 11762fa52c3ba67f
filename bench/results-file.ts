// bench/RESULTS.md holds other figures too (the bot's load test, notes): `npm run bench` replaces
// only the text between its markers, or appends its section when the markers are missing.

const SECTION_START = '<!-- engine-bench:start (written by npm run bench) -->';
const SECTION_END = '<!-- engine-bench:end -->';

export function withEngineSection(current: string, markdown: string): string {
  const section = `${SECTION_START}\n${markdown}${SECTION_END}`;
  const start = current.indexOf(SECTION_START);
  const end = current.indexOf(SECTION_END);
  if (start >= 0 && end > start) return current.slice(0, start) + section + current.slice(end + SECTION_END.length);
  const base = current.trim() === '' ? '# Benchmark results\n' : `${current.trimEnd()}\n`;
  return `${base}\n${section}\n`;
}
