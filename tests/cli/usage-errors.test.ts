// Usage mistakes through the CLI entry point (runCli): like every other error, one line on stderr
// saying what is wrong and where the help is, a non-zero exit, and nothing on stdout.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/main.js';

let stderr = '';
let stdout = '';
beforeEach(() => {
  stderr = '';
  stdout = '';
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((stderr += String(chunk)), true));
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => ((stdout += String(chunk)), true));
});
afterEach(() => {
  vi.restoreAllMocks();
  process.exitCode = undefined;
});

describe('usage errors', () => {
  const cases: Array<[string[], RegExp, string]> = [
    [['ask', 'What is it?'], /required option '--image <file>' not specified/, 'vistyle ask --help'],
    [['ask', '--image', 'x.png'], /missing required argument 'question'/, 'vistyle ask --help'],
    [['ask', '--gredy', '--image', 'x.png', 'q'], /unknown option '--gredy'.*--greedy/, 'vistyle ask --help'],
    [['model', 'build', '--checkpoint', 'a', '--out', 'b', '--dtype', 'fp8'], /'fp8' is invalid.*fp32, fp16/, 'vistyle model build --help'],
    [['model', 'pull', '--source', 'github'], /'github' is invalid.*huggingface, modelscope/, 'vistyle model pull --help'],
    [['tokenize'], /required option '--tokenizer <path>' not specified/, 'vistyle tokenize --help'],
  ];
  for (const [args, message, help] of cases) {
    it(`vistyle ${args.join(' ')}`, async () => {
      const code = await runCli(['node', 'vistyle', ...args]);
      expect(code).not.toBe(0);
      expect(stdout).toBe('');
      const lines = stderr.trimEnd().split('\n');
      expect(lines, stderr).toHaveLength(1);
      expect(lines[0]).toMatch(/^vistyle: /);
      expect(lines[0]).toMatch(message);
      expect(lines[0]).toContain(`(see \`${help}\`)`);
    });
  }

  it('still prints the help when asked for it', async () => {
    expect(await runCli(['node', 'vistyle', 'ask', '--help'])).toBe(0);
    expect(stdout).toMatch(/Usage: vistyle ask \[options\] <question>/);
    expect(stdout).toMatch(/--greedy/);
  });
});
