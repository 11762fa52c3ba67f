// `vistyle ask` as people run it (the built CLI in a child process): streaming to stdout, the JSON
// summary, the model-folder default, styles vs --raw, and one-line errors without stack traces.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { animatedGif, frameColors } from '../support/media-files.js';
import { CLI_JS, TINY_A_IMAGE, buildTinyA, ensureBuiltCli, referenceInputs, removeDirs, runCli, textFileBytes } from './engine-test-helpers.js';

interface Summary {
  text: string;
  tokens: number[];
  promptTokens: number;
  ttftMs: number;
  tokensPerSecond: number;
}

function lastJson(stdout: string): Summary {
  return JSON.parse(stdout.trimEnd().split('\n').at(-1)!) as Summary;
}

function expectOneLineError(result: { status: number | null; stdout: string; stderr: string }, pattern: RegExp): void {
  expect(result.status).not.toBe(0);
  expect(result.stdout).toBe('');
  const lines = result.stderr.trimEnd().split('\n');
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^vistyle: /);
  expect(lines[0]).toMatch(pattern);
  expect(result.stderr).not.toMatch(/\n\s+at /);
}

describe('vistyle ask', () => {
  let modelDir: string;
  let scratch: string;
  const env = { ...process.env, VISTYLE_HOME: '' };

  beforeAll(async () => {
    await ensureBuiltCli();
    modelDir = await buildTinyA();
    scratch = mkdtempSync(join(tmpdir(), 'vistyle-ask-'));
  });
  afterAll(() => removeDirs(modelDir, scratch));

  it('streams the answer and ends with the JSON summary; VISTYLE_MODEL_DIR is the default model', async () => {
    const result = await runCli(['ask', '--image', TINY_A_IMAGE, '--raw', '--greedy', '--json', '--max-tokens', '8', 'What is in this picture?'], {
      ...env,
      VISTYLE_MODEL_DIR: modelDir,
    });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const summary = lastJson(result.stdout);
    expect(summary.tokens).toEqual(referenceInputs().generate.new_tokens.slice(0, 8));
    expect(Object.keys(summary).sort()).toEqual(['promptTokens', 'text', 'tokens', 'tokensPerSecond', 'ttftMs']);
    expect(result.stdout).toBe(`${summary.text}${summary.text.endsWith('\n') || summary.text === '' ? '' : '\n'}${JSON.stringify(summary)}\n`);
  });

  it('without --raw answers in the default style: its system prompt makes the prompt longer', async () => {
    const raw = await runCli(['ask', '--model', modelDir, '--image', TINY_A_IMAGE, '--raw', '--greedy', '--json', '--max-tokens', '2', 'What is it?'], env);
    const styled = await runCli(['ask', '--model', modelDir, '--image', TINY_A_IMAGE, '--greedy', '--json', '--max-tokens', '2', 'What is it?'], env);
    expect(raw.status).toBe(0);
    expect(styled.status, styled.stderr).toBe(0);
    expect(lastJson(styled.stdout).promptTokens).toBeGreaterThan(lastJson(raw.stdout).promptTokens);
  });

  it('ends quietly, exit 0, when the reader of stdout goes away (`vistyle ask ... | head -c 1`)', async () => {
    const child = spawn(process.execPath, [CLI_JS, 'ask', '--model', modelDir, '--image', TINY_A_IMAGE, '--raw', '--greedy', '--max-tokens', '1500', 'What?'], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // Greedy on tiny-a streams 1500 tokens (~650 characters) in many writes: later ones hit the closed pipe.
    child.stdout.once('data', () => child.stdout.destroy());
    const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).toBe('');
    expect(status).toBe(0);
  });

  it('samples reproducibly with a seed', async () => {
    const args = ['ask', '--model', modelDir, '--image', TINY_A_IMAGE, '--raw', '--json', '--max-tokens', '12', '--temperature', '1.5', '--top-p', '0.95', '--seed', '42', 'Hi?'];
    const a = await runCli(args, env);
    const b = await runCli(args, env);
    expect(a.status, a.stderr).toBe(0);
    expect(lastJson(a.stdout).tokens).toEqual(lastJson(b.stdout).tokens);
    expect(lastJson(a.stdout).tokens.length).toBeGreaterThan(0);
  });

  it('shows an animated GIF as VISTYLE_VIDEO_FRAMES frames, each its own run of image tokens', async () => {
    const gif = join(scratch, 'clip.gif');
    writeFileSync(gif, animatedGif(frameColors(9), { width: 24, height: 24 }));
    const ask = (frames: string) =>
      runCli(['ask', '--model', modelDir, '--image', gif, '--raw', '--greedy', '--json', '--max-tokens', '1', 'What happens?'], { ...env, VISTYLE_VIDEO_FRAMES: frames });
    const [two, three] = [await ask('2'), await ask('3')];
    expect(two.status, two.stderr).toBe(0);
    expect(three.status, three.stderr).toBe(0);
    // one more frame = one more block of image tokens plus its placeholder line (`<image>\n`)
    const imageTokens = (referenceInputs() as unknown as { num_image_tokens: number }).num_image_tokens;
    expect(lastJson(three.stdout).promptTokens - lastJson(two.stdout).promptTokens).toBe(imageTokens + 1);
  });

  it('reports a missing model folder in one line with its path', async () => {
    const missing = join(scratch, 'no-model-here');
    expectOneLineError(await runCli(['ask', '--model', missing, '--image', TINY_A_IMAGE, 'What?'], env), new RegExp(missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  });

  it('reports a missing image, a text file, an empty question and a bad number in one line each', async () => {
    expectOneLineError(await runCli(['ask', '--model', modelDir, '--image', join(scratch, 'nope.png'), 'What?'], env), /cannot read the image .*no such file/);
    const textFile = join(scratch, 'notes.png');
    writeFileSync(textFile, textFileBytes());
    expectOneLineError(await runCli(['ask', '--model', modelDir, '--image', textFile, '--raw', 'What?'], env), /not a JPEG, PNG, GIF or WebP picture/);
    expectOneLineError(await runCli(['ask', '--model', modelDir, '--image', TINY_A_IMAGE, '--raw', '   '], env), /question is empty/i);
    expectOneLineError(await runCli(['ask', '--model', modelDir, '--image', TINY_A_IMAGE, '--max-tokens', 'lots', 'What?'], env), /--max-tokens must be a positive integer/);
    expectOneLineError(await runCli(['ask', '--model', modelDir, '--image', TINY_A_IMAGE, '--provider', 'tpu', 'What?'], env), /--provider must be cpu, cuda or webgpu/);
  });

  it('asked for CUDA without the provider installed, names the missing library', async () => {
    const result = await runCli(['ask', '--model', modelDir, '--image', TINY_A_IMAGE, '--provider', 'cuda', '--raw', 'What?'], env);
    if (result.status === 0) return; // a GPU host with the CUDA provider installed
    expectOneLineError(result, /lib[\w.]+\.so/);
  });

  it('prints the stack trace only with --verbose', async () => {
    const result = await runCli(['--verbose', 'ask', '--model', join(scratch, 'absent'), '--image', TINY_A_IMAGE, 'What?'], env);
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(/^vistyle: /);
    expect(result.stderr).toMatch(/\n\s+at /);
  });
});
