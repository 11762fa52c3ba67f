// `npm run bench -- --tiny` runs every part of the benchmark on a tiny generated checkpoint: the
// machine figures, per-dtype latency, follow-ups, concurrent streams, accuracy against fp32,
// full-context RSS, the event loop with the engine in its worker, and transformers.js on the
// same weights. No figure is asserted (they mean nothing on a tiny model and a shared machine):
// the test checks that each part ran, that the peer decoded the same greedy tokens, and that
// bench/RESULTS.md was left alone.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const repo = new URL('../..', import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), 'vistyle-bench-tiny-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('npm run bench -- --tiny', () => {
  it('runs every part on a tiny checkpoint and writes its report, not bench/RESULTS.md', () => {
    const results = readFileSync(join(repo, 'bench', 'RESULTS.md'), 'utf8');
    const run = spawnSync(process.execPath, ['--import', 'tsx', join(repo, 'bench', 'run.ts'), '--tiny', '--work', work,
      '--threads', '1', '--tokens', '4', '--runs', '1', '--streams', '1,2', '--dtype', 'fp32,int4', '--peer-dtypes', 'fp32,int4'], {
      cwd: repo, encoding: 'utf8', timeout: 300_000,
    });
    expect(run.status, run.stderr).toBe(0);
    const report = run.stdout;
    for (const part of ['### One stream, per dtype', '### Accuracy against fp32', '### int4: concurrent streams', '### Peak RSS serving full contexts',
      '### Main-thread event loop', '### Peer: transformers.js', '### Targets', 'memory read bandwidth']) {
      expect(report, part).toContain(part);
    }
    expect(report).toMatch(/\| int4 \| 0\.\d+ \|/); // a cosine similarity against fp32
    expect(report.match(/Same greedy tokens on both sides: yes/g)).toHaveLength(2);
    expect(report).not.toContain('NaN');
    const json = JSON.parse(readFileSync(join(work, 'last-results.json'), 'utf8')) as { dtypes: Array<{ dtype: string; streams: { byStreams: unknown[] } }>; rss: unknown[] };
    expect(json.dtypes.map((d) => d.dtype)).toEqual(['fp32', 'int4']);
    expect(json.dtypes[1]!.streams.byStreams).toHaveLength(2);
    expect(json.rss).toHaveLength(2);
    expect(existsSync(join(work, 'peer', 'onnx', 'decoder_model_merged_q4.onnx'))).toBe(true);
    expect(readFileSync(join(repo, 'bench', 'RESULTS.md'), 'utf8')).toBe(results);
  }, 320_000);
});
