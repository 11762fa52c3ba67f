// Execution providers: which onnxruntime backend runs the graphs, and a clear error when the one
// asked for cannot run here. CPU is always there. The CUDA provider is not in the npm tarball:
// `npm run install-cuda` downloads libonnxruntime_providers_{shared,cuda}.so next to the binding,
// and those libraries in turn need CUDA 12 (libcudart, libcublas...) and cuDNN 9 on the system.
// onnxruntime only says "Failed to load shared library", so we look for the files ourselves first
// and, when loading still fails, ask the dynamic linker (ldd) which dependency is missing.
// WebGPU is bundled in onnxruntime-node (linux/x64); it needs a Vulkan loader and a Vulkan driver
// Dawn accepts. Dawn prints why it refused an adapter on stderr and onnxruntime only says "No
// supported adapters", so probeWebGpu() tries it in a child process and reads what Dawn printed.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
  if (provider !== 'cpu' && provider !== 'cuda' && provider !== 'webgpu') {
    throw new VistyleError('CONFIG_INVALID', `unknown execution provider "${provider}" (use cpu, cuda or webgpu)`);
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

/**
 * Session options for the three graphs. With WebGPU, `outputLocations` says which outputs stay on
 * the device as gpu-buffer tensors (the rest come back to host memory).
 */
export function sessionOptions(
  config: ProviderConfig,
  outputLocations?: Readonly<Record<string, 'cpu' | 'gpu-buffer'>>,
): InferenceSession.SessionOptions {
  const executionProviders: InferenceSession.ExecutionProviderConfig[] =
    config.provider === 'cuda' ? [{ name: 'cuda', deviceId: config.deviceId }, 'cpu']
      : config.provider === 'webgpu' ? [{ name: 'webgpu' }, 'cpu']
        : ['cpu'];
  const options: InferenceSession.SessionOptions = {
    executionProviders,
    graphOptimizationLevel: 'all',
    // Single-stream inference: parallelism inside ops only.
    executionMode: 'sequential',
    interOpNumThreads: 1,
  };
  if (config.threads > 0) options.intraOpNumThreads = config.threads;
  if (config.provider === 'webgpu') {
    if (outputLocations) options.preferredOutputLocation = { ...outputLocations };
    // errors only: every WebGPU session warns that shape arithmetic runs on the CPU (by design)
    options.logSeverityLevel = 3;
  }
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
  if (config.provider === 'webgpu') return diagnoseWebGpuError(error);
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

// --- WebGPU ---------------------------------------------------------------------------------

export type WebGpuProblem = 'not-bundled' | 'no-vulkan-loader' | 'mesa-too-old' | 'no-adapter' | 'failed';

export type WebGpuProbeResult =
  | { ok: true }
  | { ok: false; problem: WebGpuProblem; message: string; output: string };

/** A 164-byte model, y = x * x over float32[4]: enough for Dawn to pick an adapter and run a kernel. */
const PROBE_MODEL_BASE64 =
  'CAgSB3Zpc3R5bGUaATFCAhAROnoKHgoBeAoBeBIFTXVsXzAaCk11bF8wL25vZGUiA011bAogCgVNdWxfMBIBeRoKeS9pZGVudGl0eSIISWRlbnRpdHkSFHZpc3R5bGVfd2ViZ3B1X3Byb2JlWg8KAXgSCgoICAESBAoCCARiDwoBeRIKCggIARIECgIIBA==';

const WEBGPU_HINTS: Record<Exclude<WebGpuProblem, 'failed'>, string> = {
  'not-bundled': 'this onnxruntime-node build has no WebGPU provider on this platform (it is bundled on linux/x64); use cpu or cuda',
  'no-vulkan-loader':
    'the Vulkan loader libvulkan.so.1 is not installed: install libvulkan1 (Debian/Ubuntu) and a Vulkan driver (the NVIDIA driver, or mesa-vulkan-drivers)',
  'mesa-too-old':
    'the Vulkan driver is too old for WebGPU (Dawn needs shaderUniform*ArrayDynamicIndexing, which Mesa 22.3 lacks): on Debian bookworm install mesa-vulkan-drivers from bookworm-backports, or use the NVIDIA driver',
  'no-adapter':
    'no Vulkan adapter found: the GPU driver has no Vulkan support or no Vulkan ICD is installed (NVIDIA: the driver with its Vulkan ICD, check `vulkaninfo --summary`; no GPU: mesa-vulkan-drivers gives the lavapipe CPU driver)',
};

/** Sorts the text Dawn/onnxruntime printed into one of the problems an operator can fix. */
export function classifyWebGpuOutput(text: string): Exclude<WebGpuProblem, 'not-bundled'> {
  if (/libvulkan\.so(\.1)?\b[^\n]*(cannot open|not found|No such file)|Couldn't load Vulkan|Failed to load Vulkan|vulkan[^\n]*loader[^\n]*not found/i.test(text)) {
    return 'no-vulkan-loader';
  }
  if (/ArrayDynamicIndexing/i.test(text)) return 'mesa-too-old';
  if (/No supported adapters|Found no drivers|VK_ERROR_INCOMPATIBLE_DRIVER|Failed to get a WebGPU adapter|No adapters? found/i.test(text)) {
    return 'no-adapter';
  }
  return 'failed';
}

/** One line for the operator: what is wrong with WebGPU here and what to install. */
export function webGpuProblemMessage(problem: WebGpuProblem, detail = ''): string {
  if (problem === 'failed') {
    const line = detail.split('\n').map((l) => l.trim()).find((l) => l.length > 0) ?? 'no output';
    return `the WebGPU execution provider failed to start: ${line.slice(0, 300)}`;
  }
  return `the WebGPU execution provider cannot run here: ${WEBGPU_HINTS[problem]}`;
}

/**
 * Dawn writes an error when XDG_RUNTIME_DIR is unset; a private empty folder keeps it quiet (it
 * never needs a real session bus). Sets `env.XDG_RUNTIME_DIR` only when it is unset; the folder
 * is removed when the process exits. Pass the environment the provider will run in.
 */
export function ensureDawnRuntimeDir(env: NodeJS.ProcessEnv): void {
  if (env.XDG_RUNTIME_DIR && env.XDG_RUNTIME_DIR.trim() !== '') return;
  const dir = mkdtempSync(join(tmpdir(), 'vistyle-xdg-'));
  env.XDG_RUNTIME_DIR = dir;
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
}

function ortEntry(): string {
  return createRequire(import.meta.url).resolve('onnxruntime-node');
}

/** The child's program: load the Vulkan loader, then run the probe model on WebGPU. */
function probeProgram(entry: string): string {
  return [
    "'use strict';",
    'if (process.platform === "linux") {',
    '  try { process.dlopen({ exports: {} }, "libvulkan.so.1"); }',
    // dlopen succeeded but the file is no Node addon: the loader is there
    '  catch (e) { const m = String(e && e.message); if (/cannot open shared object|No such file/i.test(m)) { console.error("libvulkan.so.1: cannot open shared object file"); process.exit(3); } }',
    '}',
    `const ort = require(${JSON.stringify(entry)});`,
    'if (!ort.listSupportedBackends().some((b) => b.name === "webgpu")) { console.error("VISTYLE_NOT_BUNDLED"); process.exit(4); }',
    `const model = Buffer.from(${JSON.stringify(PROBE_MODEL_BASE64)}, "base64");`,
    '(async () => {',
    '  const s = await ort.InferenceSession.create(model, { executionProviders: ["webgpu"], logSeverityLevel: 3 });',
    '  const r = await s.run({ x: new ort.Tensor("float32", Float32Array.from([1, 2, 3, 4]), [4]) });',
    '  const y = Array.from(r.y.data);',
    '  if (y.join(",") !== "1,4,9,16") { console.error("wrong result " + y.join(",")); process.exit(5); }',
    '  console.log("VISTYLE_WEBGPU_OK");',
    '})().catch((e) => { console.error(String(e && e.message || e)); process.exit(2); });',
  ].join('\n');
}

/**
 * Tries the WebGPU provider in a child process (a broken driver can abort the process that asks
 * it) and says what is wrong in one line. `env` is the child's environment (default: this one,
 * with a private XDG_RUNTIME_DIR when unset).
 */
export async function probeWebGpu(options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<WebGpuProbeResult> {
  if (process.platform !== 'linux' && process.platform !== 'win32' && process.platform !== 'darwin') {
    return { ok: false, problem: 'not-bundled', message: webGpuProblemMessage('not-bundled'), output: '' };
  }
  const env = { ...(options.env ?? process.env) };
  ensureDawnRuntimeDir(env);
  const program = probeProgram(ortEntry());
  return new Promise((resolve) => {
    execFile(process.execPath, ['-e', program], { env, timeout: options.timeoutMs ?? 60_000, maxBuffer: 1 << 20 }, (error, stdout, stderr) => {
      const output = `${stdout}\n${stderr}`.trim();
      if (!error && /VISTYLE_WEBGPU_OK/.test(stdout)) {
        resolve({ ok: true });
        return;
      }
      if (/VISTYLE_NOT_BUNDLED/.test(output)) {
        resolve({ ok: false, problem: 'not-bundled', message: webGpuProblemMessage('not-bundled'), output });
        return;
      }
      const problem = classifyWebGpuOutput(output);
      const signal = error && 'signal' in error && error.signal ? ` (the probe process died with ${String(error.signal)})` : '';
      const detail = problem === 'failed' ? `${lastMeaningfulLine(output)}${signal}` : '';
      resolve({ ok: false, problem, message: webGpuProblemMessage(problem, detail), output });
    });
  });
}

function lastMeaningfulLine(text: string): string {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l.length > 0 && !/^Warning: max\w+ artificially reduced/.test(l));
  return lines.at(-1) ?? 'no output';
}

/** Throws PROVIDER_UNAVAILABLE (one line saying what to install) when WebGPU cannot run here. */
export async function assertWebGpuUsable(options: { env?: NodeJS.ProcessEnv } = {}): Promise<void> {
  const result = await probeWebGpu(options);
  if (!result.ok) {
    throw new VistyleError('PROVIDER_UNAVAILABLE', result.message, { details: { provider: 'webgpu', problem: result.problem } });
  }
}

/** PROVIDER_UNAVAILABLE for a session that failed because of WebGPU itself, else undefined. */
export function diagnoseWebGpuError(error: unknown): VistyleError | undefined {
  const message = error instanceof Error ? error.message : String(error);
  const problem = classifyWebGpuOutput(message);
  if (problem === 'failed' && !/webgpu|dawn|wgpu/i.test(message)) return undefined;
  return new VistyleError('PROVIDER_UNAVAILABLE', webGpuProblemMessage(problem, message), {
    cause: error,
    details: { provider: 'webgpu', problem },
  });
}
