// Whether this machine has a Vulkan adapter onnxruntime's WebGPU provider accepts (Mesa's lavapipe
// is enough). Suites that need one call `webgpuSuite()` at the top level: without an adapter they
// skip with a message, except under CI=true (CI installs lavapipe: .ci/run), where a missing
// adapter is a failure that names what is wrong.
import { describe, it } from 'vitest';
import { ensureDawnRuntimeDir, probeWebGpu, type WebGpuProbeResult } from '../../src/engine/providers.js';

let status: Promise<WebGpuProbeResult> | undefined;

export function webgpuStatus(): Promise<WebGpuProbeResult> {
  ensureDawnRuntimeDir(process.env);
  status ??= probeWebGpu();
  return status;
}

/**
 * `describe` for suites that need WebGPU. Resolve it with top-level await:
 *   const describeGpu = await webgpuSuite(); describeGpu('...', () => { ... });
 */
export async function webgpuSuite(): Promise<(name: string, body: () => void) => void> {
  const result = await webgpuStatus();
  if (result.ok) return (name, body) => describe(name, body);
  if (process.env.CI === 'true') {
    return (name) => describe(name, () => {
      it('needs a Vulkan adapter for WebGPU (CI installs lavapipe in .ci/run)', () => {
        throw new Error(`${result.message}\n${result.output}`);
      });
    });
  }
  return (name, body) => {
    console.warn(`skipping "${name}": ${result.message}`);
    describe.skip(name, body);
  };
}
