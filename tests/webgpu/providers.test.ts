// WebGPU provider detection: each thing an operator can get wrong gives one line naming what to
// install. The Dawn/onnxruntime texts below are what this onnxruntime-node (1.30) prints; the probe
// itself runs for real (a child process) where this machine has Vulkan.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  classifyWebGpuOutput,
  diagnoseWebGpuError,
  ensureDawnRuntimeDir,
  probeWebGpu,
  resolveProviderConfig,
  sessionOptions,
  webGpuProblemMessage,
} from '../../src/engine/providers.js';
import { isVistyleError } from '../../src/errors.js';
import { buildTinyA, removeDirs, TINY_A_IMAGE } from '../engine/engine-test-helpers.js';
import { runVistyle } from '../support/run-cli.js';
import { webgpuStatus } from './support.js';

const NO_ADAPTER = '/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 ... adapter_result.status == wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No supported adapters';

describe('WebGPU provider configuration', () => {
  it('accepts webgpu beside cpu and cuda', () => {
    expect(resolveProviderConfig({ provider: 'webgpu' }).provider).toBe('webgpu');
    const options = sessionOptions({ provider: 'webgpu', deviceId: 0, threads: 0 }, { logits: 'cpu', 'present_key.0': 'gpu-buffer' });
    expect(options.executionProviders).toEqual([{ name: 'webgpu' }, 'cpu']);
    expect(options.preferredOutputLocation).toEqual({ logits: 'cpu', 'present_key.0': 'gpu-buffer' });
    // output locations only mean something to WebGPU
    expect(sessionOptions({ provider: 'cpu', deviceId: 0, threads: 0 }, { logits: 'gpu-buffer' }).preferredOutputLocation).toBeUndefined();
  });

  it('gives Dawn a private XDG_RUNTIME_DIR only when none is set', () => {
    const env: NodeJS.ProcessEnv = {};
    ensureDawnRuntimeDir(env);
    expect(env.XDG_RUNTIME_DIR).toMatch(/vistyle-xdg-/);
    const kept: NodeJS.ProcessEnv = { XDG_RUNTIME_DIR: '/run/user/1000' };
    ensureDawnRuntimeDir(kept);
    expect(kept.XDG_RUNTIME_DIR).toBe('/run/user/1000');
  });
});

describe('what is wrong, in one line', () => {
  it('no Vulkan loader', () => {
    expect(classifyWebGpuOutput('libvulkan.so.1: cannot open shared object file')).toBe('no-vulkan-loader');
    expect(classifyWebGpuOutput(`Warning: Couldn't load Vulkan: /lib/x86_64-linux-gnu/libvulkan.so.1: file too short\n${NO_ADAPTER}`)).toBe('no-vulkan-loader');
    expect(webGpuProblemMessage('no-vulkan-loader')).toMatch(/libvulkan\.so\.1.*libvulkan1/);
  });

  it('no adapter: no driver with Vulkan, no ICD', () => {
    expect(classifyWebGpuOutput(`Warning: vkCreateInstance: Found no drivers!\nWarning: vkCreateInstance failed with VK_ERROR_INCOMPATIBLE_DRIVER\n${NO_ADAPTER}`)).toBe('no-adapter');
    expect(webGpuProblemMessage('no-adapter')).toMatch(/no Vulkan adapter.*vulkaninfo --summary/);
  });

  it('Mesa too old (bookworm 22.3): named before the generic "no adapter"', () => {
    const text = `Warning: Vulkan device llvmpipe was not accepted: shaderUniformBufferArrayDynamicIndexing required\n${NO_ADAPTER}`;
    expect(classifyWebGpuOutput(text)).toBe('mesa-too-old');
    expect(webGpuProblemMessage('mesa-too-old')).toMatch(/bookworm-backports/);
  });

  it('anything else keeps its first line, and messages are one line', () => {
    expect(classifyWebGpuOutput('device lost')).toBe('failed');
    expect(webGpuProblemMessage('failed', '\n  device lost\nmore')).toBe('the WebGPU execution provider failed to start: device lost');
    for (const p of ['not-bundled', 'no-vulkan-loader', 'mesa-too-old', 'no-adapter'] as const) {
      expect(webGpuProblemMessage(p)).not.toContain('\n');
    }
  });

  it('a session error from WebGPU becomes PROVIDER_UNAVAILABLE; other errors are left alone', () => {
    const error = diagnoseWebGpuError(new Error(NO_ADAPTER));
    expect(isVistyleError(error, 'PROVIDER_UNAVAILABLE')).toBe(true);
    expect(error?.details).toMatchObject({ provider: 'webgpu', problem: 'no-adapter' });
    expect(diagnoseWebGpuError(new Error('Load model from x.onnx failed: protobuf parsing failed'))).toBeUndefined();
  });
});

describe('the probe on this machine', () => {
  it('finds the adapter, or says why not in one line', async () => {
    const status = await webgpuStatus();
    if (status.ok) return;
    expect(status.message).not.toContain('\n');
    if (process.env.CI === 'true') throw new Error(status.message);
  });

  it('with no Vulkan driver visible (no ICD) it says "no adapter"', async () => {
    const status = await webgpuStatus();
    if (!status.ok) return; // the loader itself is missing here: the case above covers it
    const empty = mkdtempSync(join(tmpdir(), 'vistyle-no-icd-'));
    try {
      const icd = join(empty, 'none.json');
      const result = await probeWebGpu({ env: { ...process.env, VK_ICD_FILENAMES: icd, VK_DRIVER_FILES: icd } });
      expect(result.ok).toBe(false);
      if (!result.ok) {
        expect(result.problem).toBe('no-adapter');
        expect(result.message).toMatch(/no Vulkan adapter found/);
      }
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('`vistyle ask --provider webgpu` on a host without a Vulkan driver says so in one line', async () => {
    const status = await webgpuStatus();
    if (!status.ok) return;
    const modelDir = await buildTinyA({ deviceDecoder: true, noLora: true });
    const empty = mkdtempSync(join(tmpdir(), 'vistyle-no-icd-'));
    try {
      const icd = join(empty, 'none.json');
      const run = await runVistyle(['ask', '--model', modelDir, '--provider', 'webgpu', '--image', TINY_A_IMAGE, '--raw', 'What?'], { VK_ICD_FILENAMES: icd, VK_DRIVER_FILES: icd });
      expect(run.code).not.toBe(0);
      const lines = run.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/WebGPU execution provider cannot run here: no Vulkan adapter found/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
      removeDirs(modelDir);
    }
  });
});
