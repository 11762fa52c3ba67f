// What the engine will hold in memory, planned before it holds it: the weights (the graph files),
// the KV cache rows (every slot at full context), the prefix cache's budget, the working memory
// of the largest runs (a prefill chunk, a decode step, a picture through the vision graph, the
// prompts being prepared), the feature and LoRA caches, and a fixed allowance for the runtime.
// With VISTYLE_MAX_MEMORY_MB the engine refuses, at load and with these numbers, a combination of
// slots, context and prefix cache that does not fit, instead of growing into an OOM kill.
// The working-memory figures are estimates from the tensor shapes (the largest intermediates
// onnxruntime keeps alive at once), not measurements.
import { existsSync, statSync } from 'node:fs';
import { freemem } from 'node:os';
import { VistyleError } from '../errors.js';
import type { ModelManifest } from '../../models/manifest.js';
import type { ModelFolder } from './model-folder.js';

const MiB = 2 ** 20;

export interface MemoryPlan {
  weights: number;
  kvCache: number;
  prefixCache: number;
  working: number;
  featureCache: number;
  loraCache: number;
  runtime: number;
  total: number;
}

/** Bytes of a graph file and its external data. */
function graphBytes(path: string): number {
  let bytes = existsSync(path) ? statSync(path).size : 0;
  if (existsSync(`${path}.data`)) bytes += statSync(`${path}.data`).size;
  return bytes;
}

export function weightBytes(folder: ModelFolder): number {
  return graphBytes(folder.paths.vision) + graphBytes(folder.paths.embed) + graphBytes(folder.paths.decoder);
}

/** Bytes one adapter of rank `rank` takes for every LoRA target of the model. */
export function loraBytes(manifest: ModelManifest, rank: number): number {
  const bytes = manifest.lora.dtype === 'float16' || manifest.dtype === 'fp16' ? 2 : 4;
  return manifest.lora.targets.reduce((sum, t) => sum + (t.inFeatures + t.outFeatures) * rank * bytes, 0);
}

/** The largest runs' intermediates: a prefill chunk of `chunk` tokens over the whole context, a decode step, a picture. */
export function workingBytes(manifest: ModelManifest, options: { slots: number; capacity: number; chunk: number }): number {
  const { hiddenSize: D, numHeads: H, vocabSize: V } = manifest.text;
  const N = manifest.vision.imageTokens;
  const { slots, capacity: C, chunk: T } = options;
  const mlp = D * 4; // the MLP width, not in the manifest: Qwen2/SigLIP use about 3-4x hidden
  // scores and probabilities over the window plus the chunk, the layer's activations, the logits
  const prefill = 2 * H * T * (C + T) * 4 + T * (6 * D + 3 * mlp) * 4 + (manifest.allPositionLogits ? T * V * 4 : V * 4);
  const decode = slots * (2 * H * (C + 1) * 4 + (6 * D + 3 * mlp) * 4 + V * 4);
  const vision = 2 * H * N * N * 4 + N * (6 * D + 3 * mlp) * 4;
  // each slot's request being prepared: prompt embeddings for a full context, its pixels
  const prepared = slots * (C * D * 4 + 3 * manifest.vision.imageSize ** 2 * 4);
  return Math.max(prefill, decode, vision) + prepared;
}

export interface PlanOptions {
  folder: ModelFolder;
  kvCacheBytes: number;
  slots: number;
  capacity: number;
  chunk: number;
  featureCacheSize: number;
  loraCacheSize: number;
  /** Asked for (VISTYLE_PREFIX_CACHE_MB); undefined: from free memory, within maxMemoryBytes. */
  prefixCacheBytes: number | undefined;
  maxMemoryBytes: number | undefined;
}

/** Rank assumed for the LoRA cache's share of memory (the seed adapters use 8). */
export const PLANNED_LORA_RANK = 16;

/** The default prefix cache: a quarter of free memory, at most 2 GiB. */
export function defaultPrefixCacheBytes(): number {
  return Math.floor(Math.min(freemem() / 4, 2 * 1024 * MiB));
}

export function planMemory(o: PlanOptions): MemoryPlan {
  const m = o.folder.manifest;
  const weights = weightBytes(o.folder);
  const working = workingBytes(m, { slots: o.slots, capacity: o.capacity, chunk: o.chunk });
  const featureCache = o.featureCacheSize * m.vision.imageTokens * m.text.hiddenSize * 4;
  const loraCache = o.loraCacheSize * loraBytes(m, PLANNED_LORA_RANK);
  const runtime = 128 * MiB;
  const fixed = weights + o.kvCacheBytes + working + featureCache + loraCache + runtime;
  let prefixCache = o.prefixCacheBytes ?? defaultPrefixCacheBytes();
  if (o.prefixCacheBytes === undefined && o.maxMemoryBytes !== undefined) prefixCache = Math.max(0, Math.min(prefixCache, o.maxMemoryBytes - fixed));
  const plan: MemoryPlan = { weights, kvCache: o.kvCacheBytes, prefixCache, working, featureCache, loraCache, runtime, total: fixed + prefixCache };
  if (o.maxMemoryBytes !== undefined && plan.total > o.maxMemoryBytes) {
    const mb = (n: number): number => Math.ceil(n / MiB);
    throw new VistyleError(
      'CONFIG_INVALID',
      `VISTYLE_MAX_MEMORY_MB=${mb(o.maxMemoryBytes)} is too small for this engine: weights ${mb(weights)} MB + KV cache ${mb(o.kvCacheBytes)} MB ` +
        `(${o.slots} slot(s) x ${o.capacity} positions) + prefix cache ${mb(prefixCache)} MB + working memory ${mb(working)} MB + ` +
        `feature and LoRA caches ${mb(featureCache + loraCache)} MB + runtime ${mb(runtime)} MB = ${mb(plan.total)} MB. ` +
        'Lower VISTYLE_ENGINE_SLOTS, VISTYLE_MAX_CONTEXT_TOKENS or VISTYLE_PREFIX_CACHE_MB, or raise the limit.',
      { details: { maxMemoryMb: mb(o.maxMemoryBytes), plannedMb: mb(plan.total), ...Object.fromEntries(Object.entries(plan).map(([k, v]) => [`${k}Mb`, mb(v)])) } },
    );
  }
  return plan;
}
