// Which execution providers can run here: the CPU always; CUDA when onnxruntime's CUDA provider
// libraries and their CUDA 12 / cuDNN 9 dependencies are found; WebGPU when a Vulkan adapter takes
// a tiny model. The configured provider failing is a failure; the others are only reported.
// WebGPU detection lives in src/engine/providers.ts (probeWebGpu) once the WebGPU provider is in;
// it is looked up at run time so that this check works with and without it.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import * as providers from '../../engine/providers.js';
import { explainConfiguredValues } from '../../config/provenance.js';
import { isVistyleError, VistyleError } from '../../errors.js';
import { result, type CheckResult, type DoctorContext } from '../types.js';

type WebGpuProbe = (options?: { timeoutMs?: number }) => Promise<{ ok: true } | { ok: false; message: string }>;

/** probeWebGpu from src/engine/providers.ts, when this vistyle has the WebGPU provider. */
export function webGpuProbe(module: object = providers): WebGpuProbe | undefined {
  const probe = (module as { probeWebGpu?: unknown }).probeWebGpu;
  return typeof probe === 'function' ? (probe as WebGpuProbe) : undefined;
}

/** Why CUDA cannot run here, or null when its libraries are all found. */
export async function cudaProblem(): Promise<string | null> {
  try {
    providers.assertCudaProviderInstalled();
  } catch (error) {
    return isVistyleError(error) ? error.message : String(error);
  }
  const missing = await providers.findMissingDependency(join(providers.ortNativeDir(), 'libonnxruntime_providers_cuda.so'));
  return missing ? `the CUDA provider is installed but ${missing} is missing (CUDA 12 and cuDNN 9 must be where the dynamic linker finds them)` : null;
}

/** The NVIDIA driver version from nvidia-smi, or null. */
export function nvidiaDriver(timeoutMs = 5000): Promise<string | null> {
  return new Promise((resolve) => {
    execFile('nvidia-smi', ['--query-gpu=driver_version,name', '--format=csv,noheader'], { timeout: timeoutMs }, (error, stdout) => {
      resolve(error ? null : stdout.trim().split('\n')[0]?.trim() || null);
    });
  });
}

export async function checkProviders(ctx: DoctorContext, probe: WebGpuProbe | undefined = webGpuProbe()): Promise<CheckResult[]> {
  const configured = ctx.config?.model.provider ?? (ctx.env.VISTYLE_PROVIDER?.trim().toLowerCase() || 'cpu');
  const results: CheckResult[] = [result('provider', 'ok', `cpu: available${configured === 'cpu' ? ' (configured)' : ''}`)];
  const fail = (name: string, message: string, fix: string): CheckResult => {
    const error = explainConfiguredValues(new VistyleError('PROVIDER_UNAVAILABLE', message), ctx.env);
    return result('provider', 'fail', `${name}: ${error.message}`, fix);
  };

  const cuda = await cudaProblem();
  const driver = cuda === null || configured === 'cuda' ? await nvidiaDriver() : null;
  if (cuda === null) results.push(result('provider', 'ok', `cuda: available${driver ? ` (driver ${driver})` : ''}${configured === 'cuda' ? ' (configured)' : ''}`));
  else if (configured === 'cuda') results.push(fail('cuda', cuda, 'on a GPU host: `npm run install-cuda` and CUDA 12 + cuDNN 9 (docs/deploy.md); elsewhere unset VISTYLE_PROVIDER'));
  else results.push(result('provider', 'skip', 'cuda: not installed here (only needed on an NVIDIA GPU host: `npm run install-cuda`)'));

  if (!probe) {
    results.push(result('provider', 'skip', 'webgpu: not in this vistyle version'));
  } else {
    const outcome = await probe({ timeoutMs: 30_000 });
    if (outcome.ok) results.push(result('provider', 'ok', `webgpu: a Vulkan adapter runs it${configured === 'webgpu' ? ' (configured)' : ''}`));
    else if (configured === 'webgpu') results.push(fail('webgpu', outcome.message, 'install what the line says, or unset VISTYLE_PROVIDER to run on the CPU'));
    else results.push(result('provider', 'skip', `webgpu: ${outcome.message}`));
  }
  return results;
}
