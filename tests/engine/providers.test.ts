// Execution providers: configuration, and the PROVIDER_UNAVAILABLE errors that name the missing
// library (onnxruntime itself only says "Failed to load shared library").
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  assertCudaProviderInstalled,
  diagnoseProviderError,
  missingLibraryFromText,
  ortNativeDir,
  resolveProviderConfig,
  sessionOptions,
} from '../../src/engine/providers.js';
import { VistyleError, isVistyleError } from '../../src/errors.js';

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('provider configuration', () => {
  it('comes from the options alone, CPU by default: the engine reads no environment variable', () => {
    const saved = process.env.VISTYLE_PROVIDER;
    process.env.VISTYLE_PROVIDER = 'cuda';
    try {
      expect(resolveProviderConfig({})).toEqual({ provider: 'cpu', deviceId: 0, threads: 0 });
    } finally {
      if (saved === undefined) delete process.env.VISTYLE_PROVIDER;
      else process.env.VISTYLE_PROVIDER = saved;
    }
    expect(resolveProviderConfig({ provider: 'cuda', deviceId: 1, threads: 2 })).toEqual({ provider: 'cuda', deviceId: 1, threads: 2 });
  });

  it('rejects unknown providers and bad numbers with CONFIG_INVALID', () => {
    expect(isVistyleError(caught(() => resolveProviderConfig({ provider: 'tpu' as 'cpu' })), 'CONFIG_INVALID')).toBe(true);
    expect(isVistyleError(caught(() => resolveProviderConfig({ threads: -1 })), 'CONFIG_INVALID')).toBe(true);
  });

  it('asks onnxruntime for CUDA first with CPU as the fallback for unsupported ops', () => {
    expect(sessionOptions({ provider: 'cuda', deviceId: 3, threads: 2 })).toMatchObject({
      executionProviders: [{ name: 'cuda', deviceId: 3 }, 'cpu'],
      intraOpNumThreads: 2,
    });
    expect(sessionOptions({ provider: 'cpu', deviceId: 0, threads: 0 }).executionProviders).toEqual(['cpu']);
    expect(sessionOptions({ provider: 'cpu', deviceId: 0, threads: 0 }).intraOpNumThreads).toBeUndefined();
  });
});

describe('CUDA provider availability', () => {
  it('names the missing provider library and the install command', () => {
    const empty = mkdtempSync(join(tmpdir(), 'vistyle-ep-'));
    try {
      const error = caught(() => assertCudaProviderInstalled(empty));
      expect(isVistyleError(error, 'PROVIDER_UNAVAILABLE')).toBe(true);
      expect((error as Error).message).toContain('libonnxruntime_providers_cuda.so');
      expect((error as Error).message).toContain('npm run install-cuda');
      writeFileSync(join(empty, 'libonnxruntime_providers_cuda.so'), '');
      expect((caught(() => assertCudaProviderInstalled(empty)) as Error).message).toContain('libonnxruntime_providers_shared.so');
      writeFileSync(join(empty, 'libonnxruntime_providers_shared.so'), '');
      expect(caught(() => assertCudaProviderInstalled(empty))).toBeUndefined();
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('looks in the directory onnxruntime-node loads its binding from', () => {
    expect(ortNativeDir()).toMatch(/onnxruntime-node[/\\]bin[/\\]napi-v6[/\\]/);
  });

  it('reads the missing library out of loader messages', () => {
    expect(
      missingLibraryFromText(
        'Failed to load library /x/libonnxruntime_providers_cuda.so with error: libcudnn.so.9: cannot open shared object file: No such file or directory',
      ),
    ).toBe('libcudnn.so.9');
    expect(missingLibraryFromText('\tlibcudart.so.12 => /usr/lib/libcudart.so.12\n\tlibcublasLt.so.12 => not found\n')).toBe('libcublasLt.so.12');
    expect(missingLibraryFromText('some other failure')).toBeUndefined();
  });

  it('maps onnxruntime error text to PROVIDER_UNAVAILABLE naming the library', async () => {
    const config = { provider: 'cuda' as const, deviceId: 0, threads: 0 };
    const named = await diagnoseProviderError(
      new Error('Failed to load library libonnxruntime_providers_cuda.so with error: libcudart.so.12: cannot open shared object file'),
      config,
    );
    expect(named?.code).toBe('PROVIDER_UNAVAILABLE');
    expect(named?.message).toContain('libcudart.so.12');
    expect(named?.message).toMatch(/CUDA 12/);
    const noGpu = await diagnoseProviderError(new Error('CUDA failure 100: no CUDA-capable device is detected'), config);
    expect(noGpu?.code).toBe('PROVIDER_UNAVAILABLE');
    expect(await diagnoseProviderError(new Error('protobuf parsing failed'), config)).toBeUndefined();
    expect(await diagnoseProviderError(new Error('Failed to load shared library'), { ...config, provider: 'cpu' })).toBeUndefined();
  });

  let hasCompiler = true;
  try {
    execFileSync('cc', ['--version'], { stdio: 'ignore' });
    execFileSync('ldd', ['--version'], { stdio: 'ignore' });
  } catch {
    hasCompiler = false;
  }

  it.skipIf(!hasCompiler || process.platform !== 'linux')(
    'asks the dynamic linker which dependency of the provider is missing when onnxruntime only says "Failed to load"',
    async () => {
      // A stand-in provider library linked against a libcudnn.so.9 that is then removed.
      const dir = mkdtempSync(join(tmpdir(), 'vistyle-ep-'));
      try {
        writeFileSync(join(dir, 'dep.c'), 'int cudnn_stub(void) { return 1; }\n');
        writeFileSync(join(dir, 'provider.c'), 'int cudnn_stub(void);\nint provider(void) { return cudnn_stub(); }\n');
        execFileSync('cc', ['-shared', '-fPIC', '-o', join(dir, 'libcudnn.so.9'), '-Wl,-soname,libcudnn.so.9', join(dir, 'dep.c')]);
        execFileSync('cc', ['-shared', '-fPIC', '-o', join(dir, 'libonnxruntime_providers_cuda.so'), join(dir, 'provider.c'), join(dir, 'libcudnn.so.9')]);
        rmSync(join(dir, 'libcudnn.so.9'));
        const error = await diagnoseProviderError(
          new Error('OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library'),
          { provider: 'cuda', deviceId: 0, threads: 0 },
          dir,
        );
        expect(error).toBeInstanceOf(VistyleError);
        expect(error?.code).toBe('PROVIDER_UNAVAILABLE');
        expect(error?.message).toContain('libcudnn.so.9');
        expect(error?.message).toContain('cuDNN');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );
});
