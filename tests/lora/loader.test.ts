import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { halfToFloat32 } from '../../models/checkpoint/dtype.js';
import { writeSafetensors } from '../../models/checkpoint/safetensors.js';
import { allLoraTensors, loadPeftAdapter } from '../../models/lora/loader.js';
import { peftConfigJson, writePeftAdapter, type WritePeftAdapterOptions } from '../../models/lora/writer.js';
import { isVistyleError } from '../../src/errors.js';
import { attentionTargets, randomLoraWeights } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'vistyle-lora-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let counter = 0;
function adapterDir(options: WritePeftAdapterOptions): string {
  const dir = join(root, `adapter-${counter++}`);
  writePeftAdapter(dir, options);
  return dir;
}

const targets = attentionTargets();

function expectAdapterError(fn: () => unknown, ...fragments: string[]): void {
  try {
    fn();
  } catch (error) {
    expect(isVistyleError(error, 'ADAPTER_INVALID'), String(error)).toBe(true);
    for (const fragment of fragments) expect((error as Error).message).toContain(fragment);
    return;
  }
  throw new Error('expected ADAPTER_INVALID');
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

describe('PEFT adapter loader', () => {
  const weights = randomLoraWeights(targets, 4);

  it('reads every target with the scale alpha / r folded into B', () => {
    const dir = adapterDir({ modules: weights, rank: 4, alpha: 8 });
    const adapter = loadPeftAdapter({ path: dir }, { targets });
    expect(adapter.layout).toBe('legacy');
    expect(adapter.uncovered).toEqual([]);
    expect(adapter.modules.map((m) => m.target.module)).toEqual(targets.map((t) => t.module));
    for (const [i, module] of adapter.modules.entries()) {
      const w = weights[i]!;
      expect(module.rank).toBe(4);
      expect(module.scale).toBe(2);
      expect(module.A.name).toBe(targets[i]!.inputA);
      expect(module.A.dims).toEqual([4, w.inFeatures]);
      expect(module.B.dims).toEqual([w.outFeatures, 4]);
      expect(module.A.type).toBe('float32');
      expect(Array.from(module.A.data)).toEqual(Array.from(w.A));
      expect(maxAbsDiff(module.B.data, w.B.map((v) => v * 2))).toBe(0);
    }
  });

  it('names modules of transformers >= 4.52 the same way', () => {
    const legacy = loadPeftAdapter({ path: adapterDir({ modules: weights, rank: 4, alpha: 8 }) }, { targets });
    const currentDir = adapterDir({ modules: weights, rank: 4, alpha: 8, layout: 'current' });
    const keys = readFileSync(join(currentDir, 'adapter_model.safetensors')).subarray(8, 400).toString();
    expect(keys).toContain('base_model.model.model.');
    const current = loadPeftAdapter({ path: currentDir }, { targets });
    expect(current.layout).toBe('current');
    expect(current.modules.map((m) => [m.target.module, Array.from(m.B.data)])).toEqual(
      legacy.modules.map((m) => [m.target.module, Array.from(m.B.data)]),
    );
    expect(current.modules.find((m) => m.target.graph === 'vision')!.fileModule).toBe(
      'model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj',
    );
  });

  it('converts to float16 for fp16 graphs', () => {
    const adapter = loadPeftAdapter({ path: adapterDir({ modules: weights, rank: 4, alpha: 4 }) }, { targets, elementType: 'float16' });
    const first = adapter.modules[0]!;
    expect(first.A.type).toBe('float16');
    expect(first.A.data).toBeInstanceOf(Uint16Array);
    expect(maxAbsDiff(halfToFloat32(first.A.data as Uint16Array), weights[0]!.A)).toBeLessThan(2e-4);
  });

  it('reads bf16 and fp16 files', () => {
    for (const dtype of ['BF16', 'F16'] as const) {
      const adapter = loadPeftAdapter({ path: adapterDir({ modules: weights, rank: 4, alpha: 4, dtype }) }, { targets });
      expect(maxAbsDiff(adapter.modules[3]!.A.data, weights[3]!.A)).toBeLessThan(dtype === 'BF16' ? 2e-3 : 2e-4);
    }
  });

  it('takes the scale from the request, from rsLoRA, and from rank_pattern / alpha_pattern', () => {
    const dir = adapterDir({ modules: weights, rank: 4, alpha: 8 });
    const overridden = loadPeftAdapter({ path: dir, scale: 0.5 }, { targets });
    expect(overridden.modules.every((m) => m.scale === 0.5)).toBe(true);
    expect(maxAbsDiff(overridden.modules[0]!.B.data, weights[0]!.B.map((v) => v * 0.5))).toBe(0);

    const rs = loadPeftAdapter({ path: adapterDir({ modules: weights, rank: 4, alpha: 8, useRslora: true }) }, { targets });
    expect(rs.modules[0]!.scale).toBe(4); // 8 / sqrt(4)

    // one module with rank 2 and its own alpha
    const odd = targets[9]!.module; // a decoder module
    const mixed = randomLoraWeights(targets, (t) => (t.module === odd ? 2 : 4));
    const oddName = 'language_model.model.' + odd.slice('language_model.'.length);
    const config = peftConfigJson({ modules: mixed, rank: 4, alpha: 8, alphaPattern: { [oddName]: 1 } });
    expect(config.rank_pattern).toEqual({ [oddName]: 2 });
    const patterned = loadPeftAdapter({ path: adapterDir({ modules: mixed, rank: 4, alpha: 8, alphaPattern: { [oddName]: 1 } }) }, { targets });
    const oddModule = patterned.modules.find((m) => m.target.module === odd)!;
    expect(oddModule.rank).toBe(2);
    expect(oddModule.scale).toBe(0.5);
    expect(patterned.modules.find((m) => m.target.module !== odd)!.scale).toBe(2);

    // a short regex pattern key, as PEFT users write them
    const regexDir = adapterDir({ modules: weights, rank: 4, alpha: 8, extraConfig: { alpha_pattern: { 'self_attn\\.o_proj': 16 } } });
    const regex = loadPeftAdapter({ path: regexDir }, { targets });
    expect(regex.modules.find((m) => m.target.module.endsWith('o_proj'))!.scale).toBe(4);
    expect(regex.modules.find((m) => m.target.module.endsWith('q_proj'))!.scale).toBe(2);
  });

  it('leaves targets the adapter does not cover at "no adapter" (a rank-1 zero, never zero-size)', () => {
    const decoderOnly = weights.filter((w) => w.module.startsWith('language_model.'));
    const dir = adapterDir({ modules: decoderOnly, rank: 4, alpha: 8, targetModules: 'language_model\\.model\\..*\\.(q_proj|k_proj|v_proj|o_proj)' });
    const adapter = loadPeftAdapter({ path: dir }, { targets });
    expect(adapter.uncovered.map((t) => t.module)).toEqual(targets.filter((t) => t.graph === 'vision').map((t) => t.module));
    const all = allLoraTensors(adapter);
    expect(all).toHaveLength(targets.length * 2);
    const visionA = all.find((t) => t.name === targets[0]!.inputA)!;
    expect(visionA.dims).toEqual([1, targets[0]!.inFeatures]);
    expect([...visionA.data].every((v) => v === 0)).toBe(true);
  });

  it('ignores vision layers past vision_feature_layer, which the graph never computes', () => {
    // a model whose vision graph stops after layer 0 (vision_feature_layer -2 with 2 layers)
    const built = targets.filter((t) => !t.module.startsWith('vision_tower.encoder.layers.1.'));
    const adapter = loadPeftAdapter({ path: adapterDir({ modules: weights, rank: 4, alpha: 8 }) }, { targets: built });
    expect(adapter.ignored).toEqual(
      ['q_proj', 'k_proj', 'v_proj', 'out_proj'].map((p) => `vision_tower.vision_model.encoder.layers.1.self_attn.${p}`).sort(),
    );
    expect(adapter.modules).toHaveLength(built.length);
  });

  it('refuses a missing module, naming it', () => {
    // target_modules q_proj covers the vision tower too; drop one vision q_proj from the file
    const missing = 'vision_tower.encoder.layers.1.self_attn.q_proj';
    const dir = adapterDir({ modules: weights.filter((w) => w.module !== missing), rank: 4, alpha: 8, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'out_proj'] });
    expectAdapterError(() => loadPeftAdapter({ path: dir }, { targets }), 'vision_tower.vision_model.encoder.layers.1.self_attn.q_proj', 'missing');
  });

  it('refuses a wrong shape, naming the module', () => {
    const bad = weights.map((w, i) => (i === 10 ? { ...w, inFeatures: w.inFeatures - 1, A: w.A.subarray(0, 4 * (w.inFeatures - 1)) } : w));
    const dir = adapterDir({ modules: bad, rank: 4, alpha: 8 });
    expectAdapterError(() => loadPeftAdapter({ path: dir }, { targets }), 'language_model.model.layers.0.self_attn.v_proj', 'lora_A.weight', 'shape');

    const wrongOut = weights.map((w, i) => (i === 0 ? { ...w, outFeatures: 31, B: w.B.subarray(0, 31 * 4) } : w));
    expectAdapterError(
      () => loadPeftAdapter({ path: adapterDir({ modules: wrongOut, rank: 4, alpha: 8 }) }, { targets }),
      'vision_tower.vision_model.encoder.layers.0.self_attn.q_proj',
      'lora_B.weight',
    );

    // rank in the weights differs from adapter_config.json
    expectAdapterError(
      () => loadPeftAdapter({ path: adapterDir({ modules: weights, rank: 4, alpha: 8, extraConfig: { r: 8 } }) }, { targets }),
      'rank 4 in the weights, 8 in adapter_config.json',
    );
  });

  it('refuses a half-missing module, the projector and the MLP, naming them', () => {
    const dir = adapterDir({ modules: weights, rank: 4, alpha: 8 });
    // rewrite the file without one B
    const dropped = join(root, `adapter-${counter++}`);
    const keep = weights.filter((_, i) => i !== 2);
    writePeftAdapter(dropped, { modules: keep, rank: 4, alpha: 8 });
    const w = weights[2]!;
    const name = 'vision_tower.vision_model.encoder.layers.0.self_attn.v_proj';
    writeSafetensors(join(dropped, 'adapter_model.safetensors'), [
      ...keep.flatMap((m) => {
        const n = m.module.startsWith('language_model.')
          ? `language_model.model.${m.module.slice('language_model.'.length)}`
          : `vision_tower.vision_model.${m.module.slice('vision_tower.'.length)}`;
        return [
          { name: `base_model.model.${n}.lora_A.weight`, dtype: 'F32' as const, shape: [m.rank, m.inFeatures], data: () => m.A },
          { name: `base_model.model.${n}.lora_B.weight`, dtype: 'F32' as const, shape: [m.outFeatures, m.rank], data: () => m.B },
        ];
      }),
      { name: `base_model.model.${name}.lora_A.weight`, dtype: 'F32', shape: [4, w.inFeatures], data: () => w.A },
    ]);
    expectAdapterError(() => loadPeftAdapter({ path: dropped }, { targets }), name, 'lora_B.weight is missing');

    const projector = {
      module: 'multi_modal_projector.linear_1', inFeatures: 32, outFeatures: 64, rank: 4,
      A: new Float32Array(4 * 32), B: new Float32Array(64 * 4),
    };
    expectAdapterError(
      () => loadPeftAdapter({ path: adapterDir({ modules: [...weights, projector], rank: 4, alpha: 8 }) }, { targets }),
      'multi_modal_projector.linear_1',
      'not a LoRA target',
    );
    const mlp = {
      module: 'language_model.layers.1.mlp.gate_proj', inFeatures: 64, outFeatures: 128, rank: 4,
      A: new Float32Array(4 * 64), B: new Float32Array(128 * 4),
    };
    expectAdapterError(
      () => loadPeftAdapter({ path: adapterDir({ modules: [...weights, mlp], rank: 4, alpha: 8 }) }, { targets }),
      'language_model.model.layers.1.mlp.gate_proj',
      'MLP',
    );
    // an attention projection the model was built without
    expectAdapterError(
      () => loadPeftAdapter({ path: dir }, { targets: targets.filter((t) => !t.module.endsWith('k_proj')) }),
      '.self_attn.k_proj is not a LoRA target of the built model',
    );
  });

  it('refuses folders and configs it cannot honour', () => {
    expectAdapterError(() => loadPeftAdapter({ path: join(root, 'nowhere') }, { targets }), 'nowhere', 'no such folder');
    const empty = join(root, `adapter-${counter++}`);
    writePeftAdapter(empty, { modules: weights, rank: 4, alpha: 8 });
    rmSync(join(empty, 'adapter_config.json'));
    expectAdapterError(() => loadPeftAdapter({ path: empty }, { targets }), 'adapter_config.json is missing');

    for (const [extra, fragment] of [
      [{ use_dora: true }, 'DoRA'],
      [{ bias: 'lora_only' }, 'bias'],
      [{ modules_to_save: ['lm_head'] }, 'modules_to_save'],
      [{ peft_type: 'IA3' }, 'LORA'],
      [{ lora_alpha: 'sixteen' }, 'field lora_alpha'],
    ] as const) {
      expectAdapterError(
        () => loadPeftAdapter({ path: adapterDir({ modules: weights, rank: 4, alpha: 8, extraConfig: extra }) }, { targets }),
        fragment,
      );
    }
    const broken = adapterDir({ modules: weights, rank: 4, alpha: 8 });
    writeFileSync(join(broken, 'adapter_config.json'), '{');
    expectAdapterError(() => loadPeftAdapter({ path: broken }, { targets }), 'not valid JSON');
    const garbage = adapterDir({ modules: weights, rank: 4, alpha: 8 });
    writeFileSync(join(garbage, 'adapter_model.safetensors'), 'not a safetensors file');
    expectAdapterError(() => loadPeftAdapter({ path: garbage }, { targets }), 'adapter_model.safetensors');
  });
});
