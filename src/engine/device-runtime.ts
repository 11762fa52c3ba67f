// What the engine needs to run the device decoder with a device-resident cache on WebGPU: the
// small device graphs, the adapter's prefill limit (device-attention-check.ts), the decoder's
// output locations, and device KV caches sharing them.
import * as ort from 'onnxruntime-node';
import type { ModelManifest } from '../../models/manifest.js';
import { deviceCacheNames } from '../../models/graphs/decoder-device.js';
import { moduleLogger } from '../log.js';
import { VistyleError } from '../errors.js';
import { checkDeviceAttention, type AttentionCheckResult } from './device-attention-check.js';
import { DeviceGraphs } from './device-graphs.js';
import { DeviceKvCache } from './device-kv-cache.js';
import type { KvCacheSpec } from './kv-cache.js';

/** preferredOutputLocation of the device decoder's session: logits to the host, the cache stays. */
export function deviceDecoderOutputLocations(numLayers: number): Record<string, 'cpu' | 'gpu-buffer'> {
  const locations: Record<string, 'cpu' | 'gpu-buffer'> = { logits: 'cpu' };
  for (let i = 0; i < numLayers; i++) {
    const n = deviceCacheNames(i);
    locations[n.presentKey] = 'gpu-buffer';
    locations[n.presentValue] = 'gpu-buffer';
  }
  return locations;
}

export interface DeviceRuntime {
  readonly graphs: DeviceGraphs;
  /** Longest prefill chunk GroupQueryAttention got right on this adapter. */
  readonly maxPrefillTokens: number;
  readonly attentionCheck: AttentionCheckResult;
  createKvCache(spec: KvCacheSpec): DeviceKvCache;
  release(): Promise<void>;
}

/** Checks the adapter's attention with the model's head shape and sets up the device graphs. */
export async function startDeviceRuntime(manifest: ModelManifest): Promise<DeviceRuntime> {
  const t = manifest.text;
  const attentionCheck = await checkDeviceAttention(
    { numHeads: t.numHeads, numKvHeads: t.numKvHeads, headDim: t.headDim },
    (path) => ort.InferenceSession.create(path, { executionProviders: [{ name: 'webgpu' }], logSeverityLevel: 3 }),
  );
  if (attentionCheck.maxChunk < 1) {
    throw new VistyleError(
      'PROVIDER_UNAVAILABLE',
      `the WebGPU adapter computes attention wrongly (GroupQueryAttention off by ${attentionCheck.tried.at(-1)?.maxAbsDiff.toPrecision(3)} even for one token); use --provider cpu or cuda`,
      { details: { provider: 'webgpu', attentionCheck: attentionCheck.tried } },
    );
  }
  const maxPrefillTokens = attentionCheck.maxChunk;
  if (maxPrefillTokens < Number.MAX_SAFE_INTEGER) {
    moduleLogger('engine').info(
      { maxPrefillTokens, tried: attentionCheck.tried },
      'this WebGPU adapter gets long attention prefills wrong; prefilling in short chunks',
    );
  }
  const graphs = new DeviceGraphs();
  return {
    graphs,
    maxPrefillTokens,
    attentionCheck,
    createKvCache: (spec) => new DeviceKvCache(graphs, spec, { maxPrefillTokens }),
    release: () => graphs.release(),
  };
}
