// The Python trainer writes adapters through models/training/peft_format.py. Here that very code
// (run with python3, standard library only) writes an adapter for every LoRA target of a tiny
// built model, and vistyle's loader must read back the module names, shapes, values and scale
// (parity.test.ts shows that tensors read this way give the merged model's logits). Also runs the
// trainer's torch-free unit tests. Skipped where there is no python3.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadPeftAdapter } from '../../models/lora/loader.js';
import { ModelManifestSchema, type LoraTarget } from '../../models/manifest.js';
import { tinyModel } from '../support/tiny-model.js';

const repo = resolve(__dirname, '../..');
const python = spawnSync('python3', ['--version'], { encoding: 'utf8' });
const hasPython = python.status === 0 && /Python 3\.(\d+)/.test(python.stdout + python.stderr);
const root = mkdtempSync(join(tmpdir(), 'vistyle-pyformat-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** The name transformers 4.45 gives a module (what the trainer sees in model.named_modules()). */
function transformersName(canonical: string): string {
  return canonical
    .replace(/^language_model\./, 'language_model.model.')
    .replace(/^vision_tower\./, 'vision_tower.vision_model.');
}

/** peft_format.example_value, in float32. */
function exampleValue(seed: number, moduleIndex: number, which: 'A' | 'B', i: number): number {
  return Math.fround(0.25 * Math.sin(seed + 7 * moduleIndex + (which === 'B' ? 0.5 : 0) + 0.37 * i));
}

describe.skipIf(!hasPython)('adapters written by the Python trainer\'s format code', () => {
  it('passes the trainer\'s pure unit tests (label masking, key names, safetensors layout)', () => {
    const run = spawnSync('python3', ['-m', 'unittest', '-q', 'models/training/test_pure.py'], { cwd: repo, encoding: 'utf8', env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
    expect(run.status, run.stderr).toBe(0);
  });

  it('loads in vistyle with the right names, shapes, values and scale', async () => {
    const { modelDir } = await tinyModel({ build: { allPositionLogits: true } });
    const manifest = ModelManifestSchema.parse(JSON.parse(readFileSync(join(modelDir, 'vistyle-model.json'), 'utf8')));
    const targets: LoraTarget[] = manifest.lora.targets;
    const out = join(root, 'adapter');
    const spec = {
      out,
      r: 3,
      alpha: 12,
      seed: 5,
      modules: targets.map((t) => ({ name: transformersName(t.module), in: t.inFeatures, out: t.outFeatures })),
    };
    const run = spawnSync('python3', ['models/training/peft_format.py'], { cwd: repo, input: JSON.stringify(spec), encoding: 'utf8', env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' } });
    expect(run.status, run.stderr).toBe(0);

    const adapter = loadPeftAdapter({ path: out }, { targets });
    expect(adapter.config).toMatchObject({ peft_type: 'LORA', r: 3, lora_alpha: 12, target_modules: ['k_proj', 'o_proj', 'out_proj', 'q_proj', 'v_proj'] });
    expect(adapter.uncovered).toEqual([]);
    for (const [index, target] of targets.entries()) {
      const module = adapter.modules.find((m) => m.target.module === target.module)!;
      expect(module.fileModule).toBe(transformersName(target.module));
      expect(module.scale).toBe(4);
      expect(module.A.dims).toEqual([3, target.inFeatures]);
      expect(module.B.dims).toEqual([target.outFeatures, 3]);
      const a = module.A.data as Float32Array;
      const b = module.B.data as Float32Array;
      for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - exampleValue(5, index, 'A', i))).toBeLessThan(1e-7);
      for (let i = 0; i < b.length; i++) expect(Math.abs(b[i]! - 4 * exampleValue(5, index, 'B', i))).toBeLessThan(4e-7);
    }
  });
});
