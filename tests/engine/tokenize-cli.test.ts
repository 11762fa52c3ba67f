import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { isVistyleError } from '../../src/errors.js';
import { runTokenize } from '../../src/cli/commands/tokenize.js';
import { llavaQwenTokenizerDir, QWEN_IDS } from './tokenizer-support.js';

const ROOT = join(import.meta.dirname, '..', '..');
const TINY = join(ROOT, 'tests', 'fixtures', 'tiny-a');

/** The real CLI in a child process (through tsx, so no build is needed), stdin piped. */
function cli(args: string[], stdin: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src', 'cli', 'main.ts'), ...args], {
      cwd: ROOT,
      env: { ...process.env, VISTYLE_LOG_LEVEL: 'silent' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

async function collect(options: { tokenizer: string; jsonl?: boolean }, input: string): Promise<string> {
  const output = new PassThrough();
  let text = '';
  output.on('data', (d: Buffer) => (text += d.toString()));
  await runTokenize(options, Readable.from([Buffer.from(input)]), output);
  return text;
}

describe('vistyle tokenize', () => {
  it('prints the ids of all of stdin as one JSON array (toy tokenizer: ids = bytes)', async () => {
    expect(await collect({ tokenizer: TINY }, 'Hi\n<image>')).toBe('[72,105,10,503]\n');
  });

  it('with --jsonl, one JSON string per line in, one array per line out (real Qwen vocabulary)', async () => {
    const dir = llavaQwenTokenizerDir();
    const out = await collect({ tokenizer: dir, jsonl: true }, ['"assistant"', '', '"<|im_start|>user\\n"', '"佢哋喺度食緊嘢"', '""'].join('\r\n'));
    const lines = out.trimEnd().split('\n').map((l) => JSON.parse(l) as number[]);
    expect(lines).toHaveLength(4); // the blank line is skipped
    expect(lines[0]).toEqual([QWEN_IDS.assistant]);
    expect(lines[1]).toEqual([QWEN_IDS.imStart, QWEN_IDS.user, QWEN_IDS.newline]);
    expect(lines[2]!.length).toBeGreaterThan(3);
    expect(lines[3]).toEqual([]);
  });

  it('refuses a line that is not a JSON string, naming the line', async () => {
    for (const [input, message] of [
      ['"ok"\n{"text": 1}\n', /line 2 is a JSON object, not a string/],
      ['"ok"\nnot json\n', /line 2 is not valid JSON/],
    ] as const) {
      const error = await collect({ tokenizer: TINY, jsonl: true }, input).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isVistyleError(error, 'DATA_INVALID')).toBe(true);
      expect((error as Error).message).toMatch(message);
    }
  });

  it('runs end to end as a command: stdout ids, exit 0; a bad path is one line on stderr, exit 1', async () => {
    const ok = await cli(['tokenize', '--tokenizer', join(TINY, 'tokenizer.json'), '--jsonl'], '"Hi"\n"<|im_end|>"\n');
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toBe('[72,105]\n[502]\n');

    const bad = await cli(['tokenize', '--tokenizer', join(TINY, 'no-such-file.json')], 'x');
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(bad.stderr).toMatch(/^vistyle: No tokenizer at .*no-such-file\.json/);
  }, 120_000);
});
