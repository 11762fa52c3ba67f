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
import type { ModelFolder } from './model-folder.js';
import type { GraphSession } from './session.js';

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

/** MODEL_INVALID unless the device decoder has the inputs and outputs the manifest promises. */
export function checkDeviceDecoderMatchesManifest(decoder: GraphSession, folder: ModelFolder): void {
  const m = folder.manifest;
  const path = folder.paths.deviceDecoder ?? folder.paths.decoder;
  const layers = Array.from({ length: m.text.numLayers }, (_, i) => deviceCacheNames(i));
  const inputs = [
    'inputs_embeds', 'position_ids', 'seqlens_k', 'total_sequence_length',
    ...layers.flatMap((n) => [n.pastKey, n.pastValue]),
    ...m.lora.targets.filter((t) => t.graph === 'decoder').flatMap((t) => [t.inputA, t.inputB]),
  ];
  const outputs = ['logits', ...layers.flatMap((n) => [n.presentKey, n.presentValue])];
  const missing = [
    ...inputs.filter((name) => !decoder.inputTypes.has(name)).map((n) => `input ${n}`),
    ...outputs.filter((name) => !decoder.session.outputNames.includes(name)).map((n) => `output ${n}`),
  ];
  const wrongType = layers.map((n) => n.pastKey).find((name) => decoder.inputTypes.get(name) !== m.kvCache.dtype);
  if (missing.length > 0 || wrongType) {
    const what = missing.length > 0 ? `missing ${missing.slice(0, 4).join(', ')}` : `${wrongType} is not ${m.kvCache.dtype}`;
    throw new VistyleError('MODEL_INVALID', `${path} does not match vistyle-model.json (${what}); rebuild the model`, {
      details: { path, missing },
    });
  }
}
