// `vistyle model build` through the CLI entry point (runCli): a build from a generated checkpoint,
// flags reaching the manifest, and one-line errors naming a missing tensor or a refused target.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { generateCheckpoint } from '../../models/checkpoint/generate.js';
import { ModelManifestSchema } from '../../models/manifest.js';
import { defaultPullDtype } from '../../src/cli/commands/model-pull.js';

const root = mkdtempSync(join(tmpdir(), 'vistyle-cli-build-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

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

function cli(...args: string[]): Promise<number> {
  return runCli(['node', 'vistyle', 'model', 'build', ...args]);
}

describe('vistyle model build', () => {
  it('builds a checkpoint folder (ignoring extra files) into a model folder', async () => {
    const ckpt = join(root, 'ok');
    generateCheckpoint(ckpt, { layout: 'current', dtype: 'BF16' });
    writeFileSync(join(ckpt, 'README.md'), '# model card');
    writeFileSync(join(ckpt, 'pytorch_model.bin'), 'not read');
    const out = join(root, 'ok-built');
    const code = await cli('--checkpoint', ckpt, '--out', out, '--dtype', 'fp16', '--lora-targets', 'q_proj,language_model.layers.1.self_attn.o_proj');
    expect(code, stderr).toBe(0);
    expect(stdout.trim()).toBe(out);
    expect(stderr).toMatch(/decoder\.onnx/);
    const manifest = ModelManifestSchema.parse(JSON.parse(readFileSync(join(out, 'vistyle-model.json'), 'utf8')));
    expect(manifest.dtype).toBe('fp16');
    expect(manifest.kvCache.dtype).toBe('float16');
    expect(manifest.lora.targets.map((t) => t.module).sort()).toEqual([
      'language_model.layers.0.self_attn.q_proj',
      'language_model.layers.1.self_attn.o_proj',
      'language_model.layers.1.self_attn.q_proj',
      'vision_tower.encoder.layers.0.self_attn.q_proj',
      'vision_tower.encoder.layers.1.self_attn.q_proj',
    ]);
    for (const f of ['vision.onnx', 'embed.onnx', 'decoder.onnx', 'tokenizer.json', 'tokenizer_config.json', 'chat_template.json',
      'preprocessor_config.json', 'generation_config.json', 'config.json']) {
      expect(existsSync(join(out, f)), f).toBe(true);
    }
  });

  it('--no-lora leaves the LoRA inputs out', async () => {
    const ckpt = join(root, 'nolora');
    generateCheckpoint(ckpt);
    const out = join(root, 'nolora-built');
    expect(await cli('--checkpoint', ckpt, '--out', out, '--no-lora'), stderr).toBe(0);
    const manifest = JSON.parse(readFileSync(join(out, 'vistyle-model.json'), 'utf8'));
    expect(manifest.lora.targets).toEqual([]);
  });

  it('--dtype int4 --block-size 64 quantizes the weights and says how in the manifest', async () => {
    const ckpt = join(root, 'int4');
    generateCheckpoint(ckpt, { dtype: 'BF16' });
    const out = join(root, 'int4-built');
    expect(await cli('--checkpoint', ckpt, '--out', out, '--dtype', 'int4', '--block-size', '64'), stderr).toBe(0);
    expect(stderr).toMatch(/building int4 graphs \(MatMulNBits, block 64, accuracy level 4, compute fp32\)/);
    const manifest = ModelManifestSchema.parse(JSON.parse(readFileSync(join(out, 'vistyle-model.json'), 'utf8')));
    expect(manifest.dtype).toBe('int4');
    expect(manifest.kvCache.dtype).toBe('float32');
    expect(manifest.lora.dtype).toBe('float32');
    expect(manifest.quantization).toMatchObject({ operator: 'MatMulNBits', bits: 4, blockSize: 64, symmetric: true, scales: 'float32' });
    const decoder = readFileSync(join(out, 'decoder.onnx'));
    expect(decoder.includes('MatMulNBits')).toBe(true);
    expect(decoder.includes('com.microsoft')).toBe(true);
  });

  it('refuses a block size that is not a power of two from 16, and quantization flags on a float build', async () => {
    const ckpt = join(root, 'flags');
    generateCheckpoint(ckpt);
    expect(await cli('--checkpoint', ckpt, '--out', join(root, 'f1'), '--dtype', 'int4', '--block-size', '48')).not.toBe(0);
    expect(stderr).toMatch(/--block-size/);
    expect(stderr).toMatch(/power of two from 16/);
    stderr = '';
    expect(await cli('--checkpoint', ckpt, '--out', join(root, 'f2'), '--dtype', 'fp32', '--block-size', '64')).toBe(1);
    expect(stderr).toBe('vistyle: --block-size and --accuracy-level apply to int8 and int4 builds, not fp32\n');
    expect(existsSync(join(root, 'f2', 'vistyle-model.json'))).toBe(false);
  });

  it('fails with one line naming a missing tensor, and writes no manifest', async () => {
    const ckpt = join(root, 'broken');
    generateCheckpoint(ckpt, { omitTensors: ['language_model.layers.1.mlp.down_proj.weight'] });
    const out = join(root, 'broken-built');
    expect(await cli('--checkpoint', ckpt, '--out', out)).toBe(1);
    expect(stderr).toBe('vistyle: model.safetensors: tensor language_model.model.layers.1.mlp.down_proj.weight is missing\n');
    expect(existsSync(join(out, 'vistyle-model.json'))).toBe(false);
  });

  it('refuses the projector and MLPs as LoRA targets, and unknown names', async () => {
    const ckpt = join(root, 'targets');
    generateCheckpoint(ckpt);
    expect(await cli('--checkpoint', ckpt, '--out', join(root, 't1'), '--lora-targets', 'q_proj,multi_modal_projector.linear_1')).toBe(1);
    expect(stderr).toMatch(/^vistyle: LoRA target "multi_modal_projector\.linear_1" is not supported/);
    stderr = '';
    expect(await cli('--checkpoint', ckpt, '--out', join(root, 't2'), '--lora-targets', 'gate_proj')).toBe(1);
    expect(stderr).toMatch(/LoRA target "gate_proj" is not supported/);
    stderr = '';
    expect(await cli('--checkpoint', ckpt, '--out', join(root, 't3'), '--lora-targets', 'qq_proj')).toBe(1);
    expect(stderr).toMatch(/LoRA target "qq_proj" matches no attention projection/);
    expect(stderr.split('\n').filter(Boolean)).toHaveLength(1);
  });

  it('model pull builds int4 on CPU and fp16 for the GPU providers by default', () => {
    expect(defaultPullDtype({})).toBe('int8');
    expect(defaultPullDtype({ VISTYLE_PROVIDER: 'cpu' })).toBe('int8');
    expect(defaultPullDtype({ VISTYLE_PROVIDER: ' CUDA ' })).toBe('fp16');
    expect(defaultPullDtype({ VISTYLE_PROVIDER: 'webgpu' })).toBe('fp16');
  });

  it('names a missing checkpoint folder', async () => {
    expect(await cli('--checkpoint', join(root, 'nope'), '--out', join(root, 'x'))).toBe(1);
    expect(stderr).toMatch(/^vistyle: checkpoint folder .*nope does not exist\n$/);
  });
});
