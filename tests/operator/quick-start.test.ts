// The README's quick start on a fresh clone of this CPU-only machine: copy deploy/.env.example to
// .env, run `vistyle doctor`, then the first answer with no download (`vistyle demo`). Both must
// succeed with the example file exactly as shipped (no provider, no paths: CPU, ~/.vistyle).
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanEnv, doctorLines, ROOT, runIn } from './support.js';

let home: string;
let work: string;
let env: NodeJS.ProcessEnv;

beforeAll(() => {
  // HOME decides where ~/.vistyle is: a fresh one per run
  home = mkdtempSync(join(tmpdir(), 'vistyle-quickstart-home-'));
  work = mkdtempSync(join(tmpdir(), 'vistyle-quickstart-'));
  copyFileSync(join(ROOT, 'deploy/.env.example'), join(work, '.env'));
  env = cleanEnv({ HOME: home });
});
afterAll(() => {
  rmSync(home, { recursive: true, force: true });
  rmSync(work, { recursive: true, force: true });
});

describe('quick start on a CPU-only machine', () => {
  it('vistyle doctor succeeds right after `cp deploy/.env.example .env`, naming the steps left', async () => {
    const { code, stdout, stderr } = await runIn(work, ['doctor'], env);
    expect(code, `${stdout}\n${stderr}`).toBe(0);
    expect(stdout).not.toMatch(/^FAIL/m);
    expect(doctorLines(stdout, 'config')[0]).toContain(`read ${join(work, '.env')}`);
    expect(doctorLines(stdout, 'config').join('\n')).toContain('provider cpu (default)');
    expect(doctorLines(stdout, 'model')[0]).toMatch(/^todo\s+model\s+no model pulled yet .*vistyle model pull/);
    expect(doctorLines(stdout, 'platform')[0]).toMatch(/^todo\s+platform\s+no chat platform token/);
    // the one-token run used the demo model on the CPU
    expect(doctorLines(stdout, 'smoke')[0]).toMatch(/^ok\s+smoke\s+one token from the demo model .* on cpu/);
    expect(doctorLines(stdout, 'store')[0]).toContain(join(home, '.vistyle', 'vistyle.db'));
    expect(stdout.trimEnd().split('\n').at(-1)).toMatch(/nothing is broken; 2 steps \(todo\) left/);
    // --strict fails on the steps not taken
    const strict = await runIn(work, ['doctor', '--strict', '--no-smoke'], env);
    expect(strict.code).toBe(1);
  });

  it('vistyle demo answers with no download, says its answer is noise, and reuses its model', async () => {
    const first = await runIn(work, ['demo', '--json'], env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toContain('Its answers are noise');
    expect(first.stderr).toContain('vistyle model pull');
    expect(existsSync(join(home, '.vistyle', 'demo', 'model', 'vistyle-model.json'))).toBe(true);
    const summary = JSON.parse(first.stdout.trimEnd().split('\n').at(-1)!) as { tokens: number[]; promptTokens: number };
    expect(summary.tokens.length).toBeGreaterThan(0);
    expect(summary.promptTokens).toBeGreaterThan(10);

    const second = await runIn(work, ['demo', '--json'], env);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).not.toContain('making the demo model'); // cached in VISTYLE_HOME
    // the same seed, the same noise
    const again = JSON.parse(second.stdout.trimEnd().split('\n').at(-1)!) as { tokens: number[] };
    expect(again.tokens).toEqual(summary.tokens);
  });
});
