// `npm run bench` rewrites its own figures in bench/RESULTS.md and nothing else: the bot's load
// figures and the notes live in the same file.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { withEngineSection } from '../../bench/results-file.js';

const committed = readFileSync(new URL('../../bench/RESULTS.md', import.meta.url), 'utf8');

describe('bench/RESULTS.md update', () => {
  it('replaces only the engine section of the committed file', () => {
    const updated = withEngineSection(committed, '## CPU fp32 (new run)\n\n| figure | value |\n');
    expect(updated).toContain('## CPU fp32 (new run)');
    expect(updated).not.toContain('## CPU fp32, random weights of the real dimensions');
    for (const kept of ['## Notes', '## Bot load (Telegram)', '# Benchmark results']) {
      expect(updated).toContain(kept);
      expect(updated.indexOf(kept)).toBeGreaterThanOrEqual(0);
    }
    // the text outside the markers is byte for byte what it was
    const outside = (text: string) => text.replace(/<!-- engine-bench:start[\s\S]*<!-- engine-bench:end -->/, '');
    expect(outside(updated)).toBe(outside(committed));
    // and a second run replaces the first, not appends
    const again = withEngineSection(updated, '## CPU fp32 (third run)\n');
    expect(again).toContain('third run');
    expect(again).not.toContain('new run');
  });

  it('appends a section to a file without markers, and starts a new file', () => {
    expect(withEngineSection('# Benchmark results\n\n## Bot load\n', '## CPU\n')).toMatch(/## Bot load\n\n<!-- engine-bench:start[^\n]*-->\n## CPU\n<!-- engine-bench:end -->\n$/);
    expect(withEngineSection('', '## CPU\n')).toMatch(/^# Benchmark results\n\n<!-- engine-bench:start/);
  });
});
