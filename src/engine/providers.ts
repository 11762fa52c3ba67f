// Execution providers: which onnxruntime backend runs the graphs, and a clear error when the one
// asked for cannot run here. CPU is always there. The CUDA provider is not in the npm tarball:
// `npm run install-cuda` downloads libonnxruntime_providers_{shared,cuda}.so next to the binding,
// and those libraries in turn need CUDA 12 (libcudart, libcublas...) and cuDNN 9 on the system.
// onnxruntime only says "Failed to load shared library", so we look for the files ourselves first
// and, when loading still fails, ask the dynamic linker (ldd) which dependency is missing.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { InferenceSession } from 'onnxruntime-node';
import { VistyleError } from '../errors.js';
import type { EngineOptions, ExecutionProvider } from './types.js';

export const CUDA_INSTALL_HINT =
  'run `npm run install-cuda` on the GPU host (needs CUDA 12 and cuDNN 9 installed)';

export interface ProviderConfig {
  provider: ExecutionProvider;
  deviceId: number;
  /** onnxruntime intra-op threads; 0 lets onnxruntime choose. */
  threads: number;
}

/**
 * The provider settings from EngineOptions, with CPU defaults. The engine reads no environment
 * variable: VISTYLE_PROVIDER, VISTYLE_DEVICE_ID and VISTYLE_THREADS are read by the application
 * config (src/config/config.ts) and passed in by the caller.
 */
export function resolveProviderConfig(options: Pick<EngineOptions, 'provider' | 'deviceId' | 'threads'>): ProviderConfig {
  const provider: string = options.provider ?? 'cpu';
  if (provider !== 'cpu' && provider !== 'cuda') {
    throw new VistyleError('CONFIG_INVALID', `unknown execution provider "${provider}" (use cpu or cuda)`);
  }
  const deviceId = options.deviceId ?? 0;
  const threads = options.threads ?? 0;
  if (!Number.isInteger(deviceId) || deviceId < 0) {
    throw new VistyleError('CONFIG_INVALID', `CUDA device id must be a non-negative integer, got ${deviceId}`);
  }
  if (!Number.isInteger(threads) || threads < 0) {
    throw new VistyleError('CONFIG_INVALID', `threads must be a non-negative integer, got ${threads}`);
  }
  return { provider, deviceId, threads };
}

/** The folder that holds onnxruntime-node's native binding and, once installed, its providers. */
export function ortNativeDir(): string {
  const require = createRequire(import.meta.url);
  const entry = require.resolve('onnxruntime-node'); // .../onnxruntime-node/dist/index.js
  return join(dirname(entry), '..', 'bin', 'napi-v6', process.platform, process.arch);
}

export const CUDA_PROVIDER_LIBRARIES = ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so'];

/** Throws PROVIDER_UNAVAILABLE when the CUDA provider's own libraries are not installed. */
export function assertCudaProviderInstalled(nativeDir: string = ortNativeDir()): void {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new VistyleError(
      'PROVIDER_UNAVAILABLE',
      `the CUDA execution provider is only available on linux/x64 (this is ${process.platform}/${process.arch})`,
    );
  }
  for (const library of CUDA_PROVIDER_LIBRARIES) {
    const file = join(nativeDir, library);
    if (!existsSync(file)) {
      throw new VistyleError('PROVIDER_UNAVAILABLE', `CUDA provider library ${library} is not installed (${file}); ${CUDA_INSTALL_HINT}`, {
        details: { library, path: file },
      });
    }
  }
}

/** Session options for the three graphs. */
export function sessionOptions(config: ProviderConfig): InferenceSession.SessionOptions {
  const executionProviders: InferenceSession.ExecutionProviderConfig[] =
    config.provider === 'cuda' ? [{ name: 'cuda', deviceId: config.deviceId }, 'cpu'] : ['cpu'];
  const options: InferenceSession.SessionOptions = {
    executionProviders,
    graphOptimizationLevel: 'all',
    // Single-stream inference: parallelism inside ops only.
    executionMode: 'sequential',
    interOpNumThreads: 1,
  };
  if (config.threads > 0) options.intraOpNumThreads = config.threads;
  return options;
}

const SO_NOT_FOUND = /(lib[\w.+-]+?\.so(?:\.\d+)*)\s*:\s*cannot open shared object file/i;

/**
 * The missing shared library named in a loader error text (onnxruntime's log line, dlopen's or
 * ldd's output), or undefined. Skips the provider library itself when a dependency is named.
 */
export function missingLibraryFromText(text: string): string | undefined {
  const lddMissing = /^\s*(lib[\w.+-]+?\.so(?:\.\d+)*)\s*=>\s*not found/im.exec(text);
  if (lddMissing) return lddMissing[1];
  const matches = [...text.matchAll(new RegExp(SO_NOT_FOUND.source, 'gi'))].map((m) => m[1]!);
  // "Failed to load library X with error: Y: cannot open..." -> Y is the one that is missing.
  return matches.at(-1);
}

/** Runs ldd on a library and returns the first dependency it cannot find. */
export async function findMissingDependency(library: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('ldd', [library], { timeout: 10_000 }, (error, stdout, stderr) => {
      if (error && !stdout) {
        resolve(undefined);
        return;
      }
      resolve(missingLibraryFromText(`${stdout}\n${stderr}`));
    });
  });
}

function cudaHintFor(library: string): string {
  if (/^libcudnn/.test(library)) return 'install cuDNN 9 for CUDA 12 and make sure the dynamic linker finds it (LD_LIBRARY_PATH or ldconfig)';
  if (/^lib(cudart|cublas|cublasLt|cufft|curand|cusparse|nvrtc)/.test(library)) {
    return 'install the CUDA 12 runtime libraries and make sure the dynamic linker finds them (LD_LIBRARY_PATH or ldconfig)';
  }
  if (/^libonnxruntime_providers/.test(library)) return CUDA_INSTALL_HINT;
  return 'install it and make sure the dynamic linker finds it (LD_LIBRARY_PATH or ldconfig)';
}

/**
 * Turns an error from creating a session into PROVIDER_UNAVAILABLE when the cause is the CUDA
 * provider failing to load; returns undefined when the error is about something else.
 */
export async function diagnoseProviderError(
  error: unknown,
  config: ProviderConfig,
  nativeDir: string = ortNativeDir(),
): Promise<VistyleError | undefined> {
  if (config.provider !== 'cuda') return undefined;
  const message = error instanceof Error ? error.message : String(error);
  const named = missingLibraryFromText(message);
  const loadFailure = named !== undefined || /Failed to load (shared )?library|AppendExecutionProvider_Cuda|providers_cuda/i.test(message);
  if (loadFailure) {
    const missing = named ?? (await findMissingDependency(join(nativeDir, 'libonnxruntime_providers_cuda.so')));
    if (missing) {
      return new VistyleError(
        'PROVIDER_UNAVAILABLE',
        `the CUDA execution provider cannot load: ${missing} is missing; ${cudaHintFor(missing)}`,
        { cause: error, details: { library: missing } },
      );
    }
    return new VistyleError(
      'PROVIDER_UNAVAILABLE',
      `the CUDA execution provider failed to load (${message}); check the CUDA 12 / cuDNN 9 installation, or ${CUDA_INSTALL_HINT}`,
      { cause: error },
    );
  }
  if (/no CUDA-capable device|CUDA driver version is insufficient|cudaErrorNoDevice|CUDA failure 100|invalid device ordinal/i.test(message)) {
    return new VistyleError(
      'PROVIDER_UNAVAILABLE',
      `the CUDA execution provider found no usable GPU (device ${config.deviceId}): ${message}`,
      { cause: error, details: { deviceId: config.deviceId } },
    );
  }
  return undefined;
}
