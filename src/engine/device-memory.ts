// Device memory for the WebGPU engine: what the weights and the KV cache need at most, and a
// refusal with the numbers when that cannot fit the GPU, before any session is created.
//
// What lives on the device: the weights of the graphs WebGPU runs (vision, embed, device
// decoder: their .onnx and .onnx.data files), every open sequence's cache buffers twice (a run's
// past_* inputs and its present_* outputs are both alive until the run returns; joining the batch
// also holds old and new batch), the prefix snapshots (bounded by the prefix cache's budget), and
// activations, of which the largest are a prefill chunk's logits-free hidden states and the
// batch's logits. WebGPU does not tell an application how much memory the GPU has, so the budget
// is VISTYLE_DEVICE_MEMORY_MB when set, else what `nvidia-smi` reports for the GPU, else unknown
// (then nothing is refused and the plan is only logged).
import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { VistyleError } from '../errors.js';

const MiB = 2 ** 20;

export interface DeviceMemoryInput {
  /** Bytes of the graph files the device runs. */
  weightsBytes: number;
  /** Device bytes of one sequence's cache buffers (keys and values, every layer, full capacity). */
  rowBytes: number;
  /** Sequences open at once (the engine's slots). */
  rows: number;
  /** Bytes the prefix cache may keep (snapshots live on the device too). */
  prefixCacheBytes: number;
  /** Bytes of the batch's logits plus one prefill chunk's activations. */
  activationBytes: number;
}

export interface DeviceMemoryPlan extends DeviceMemoryInput {
  cacheBytes: number;
  totalBytes: number;
}

export function planDeviceMemory(input: DeviceMemoryInput): DeviceMemoryPlan {
  const cacheBytes = 2 * input.rows * input.rowBytes;
  return { ...input, cacheBytes, totalBytes: input.weightsBytes + cacheBytes + input.prefixCacheBytes + input.activationBytes };
}

/** Activations bound: logits of `rows` rows, and a prefill chunk's widest tensors (MLP, logits). */
export function activationBytes(options: { rows: number; vocabSize: number; hiddenSize: number; intermediateSize: number; chunk: number; bytesPerValue: number }): number {
  const logits = options.rows * options.vocabSize * 4;
  const chunk = options.chunk * (4 * options.hiddenSize * 4 + 3 * options.intermediateSize * options.bytesPerValue);
  return logits + chunk;
}

/** Bytes of graph files (each with its external `.data` file when there is one). */
export function graphFilesBytes(dir: string, files: readonly string[]): number {
  let bytes = 0;
  for (const file of files) {
    for (const path of [join(dir, file), join(dir, `${file}.data`)]) {
      if (existsSync(path)) bytes += statSync(path).size;
    }
  }
  return bytes;
}

const mib = (bytes: number): string => `${Math.ceil(bytes / MiB)} MiB`;

/**
 * Throws CONFIG_INVALID naming the numbers when the plan does not fit `budgetBytes`; the
 * message says which settings to lower. `budgetSource` says where the budget came from.
 */
export function assertDeviceMemoryFits(
  plan: DeviceMemoryPlan,
  budget: { bytes: number; source: string },
  settings: { maxContextTokens: number; slots: number },
): void {
  if (plan.totalBytes <= budget.bytes) return;
  const perSlot = 2 * plan.rowBytes;
  const room = budget.bytes - plan.weightsBytes - plan.prefixCacheBytes - plan.activationBytes;
  const slotsThatFit = Math.max(0, Math.floor(room / perSlot));
  const contextThatFits = Math.max(0, Math.floor((room / (2 * settings.slots * plan.rowBytes)) * settings.maxContextTokens));
  throw new VistyleError(
    'CONFIG_INVALID',
    `VISTYLE_MAX_CONTEXT_TOKENS=${settings.maxContextTokens} with VISTYLE_ENGINE_SLOTS=${settings.slots} needs ${mib(plan.totalBytes)} of GPU memory ` +
      `(weights ${mib(plan.weightsBytes)} + KV cache ${mib(plan.cacheBytes)} = 2 x ${settings.slots} x ${mib(plan.rowBytes)} + prefix cache ${mib(plan.prefixCacheBytes)} + activations ${mib(plan.activationBytes)}), ` +
      `but ${budget.source} has ${mib(budget.bytes)}: ${slotsThatFit > 0 ? `${slotsThatFit} slot(s) fit at this context, or ` : ''}` +
      `${contextThatFits > 0 ? `about ${contextThatFits} tokens of context fit with ${settings.slots} slot(s)` : 'not even one slot fits'}; lower VISTYLE_ENGINE_SLOTS or VISTYLE_MAX_CONTEXT_TOKENS (or VISTYLE_PREFIX_CACHE_MB)`,
    { details: { ...plan, budgetBytes: budget.bytes, budgetSource: budget.source, ...settings } },
  );
}

/** Total memory of GPU `index` from nvidia-smi (bytes), or undefined when there is no nvidia-smi. */
export async function nvidiaGpuMemory(index: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    execFile('nvidia-smi', ['--query-gpu=memory.total', '--format=csv,noheader,nounits', '-i', String(index)], { timeout: 10_000 }, (error, stdout) => {
      if (error) {
        resolve(undefined);
        return;
      }
      resolve(parseNvidiaSmiMemory(stdout));
    });
  });
}

/** nvidia-smi's `memory.total` in MiB (csv, no header, no units) -> bytes. */
export function parseNvidiaSmiMemory(text: string): number | undefined {
  const first = text.split('\n').map((l) => l.trim()).find((l) => l.length > 0);
  const value = first === undefined ? NaN : Number(first);
  return Number.isFinite(value) && value > 0 ? value * MiB : undefined;
}

/** The budget: the operator's VISTYLE_DEVICE_MEMORY_MB, else nvidia-smi's figure, else unknown. */
export async function deviceMemoryBudget(options: { deviceMemoryMB?: number | undefined; deviceId: number }): Promise<{ bytes: number; source: string } | undefined> {
  if (options.deviceMemoryMB !== undefined) return { bytes: options.deviceMemoryMB * MiB, source: 'VISTYLE_DEVICE_MEMORY_MB' };
  const total = await nvidiaGpuMemory(options.deviceId);
  return total === undefined ? undefined : { bytes: total, source: `GPU ${options.deviceId} (nvidia-smi)` };
}


/**
 * The WebGPU engine's plan for this model folder and settings; throws CONFIG_INVALID (with the
 * numbers) when a known budget is too small. Returns the plan and the budget for the log line.
 */
export async function checkWebGpuMemory(
  folder: { dir: string; manifest: { dtype: string; text: { numLayers: number; numKvHeads: number; headDim: number; hiddenSize: number; vocabSize: number }; graphs: { vision: string; embed: string }; deviceDecoder?: { graph: string } | undefined; kvCache: { dtype: 'float32' | 'float16' } } },
  settings: {
    capacity: number; maxContextTokens: number; slots: number;
    /** The prefix cache's budget; when not `prefixCacheFixed` (the operator's) it shrinks to half the GPU memory left. */
    prefixCacheBytes: number; prefixCacheFixed?: boolean;
    deviceMemoryMB?: number | undefined; deviceId: number; maxPrefillTokens?: number; intermediateSize?: number;
  },
): Promise<{ plan: DeviceMemoryPlan; budget: { bytes: number; source: string } | undefined }> {
  const m = folder.manifest;
  const t = m.text;
  const bytesPerValue = m.kvCache.dtype === 'float32' ? 4 : 2;
  const rowBytes = t.numLayers * 2 * t.numKvHeads * t.headDim * bytesPerValue * settings.capacity;
  const graphs = [m.graphs.vision, m.graphs.embed, m.deviceDecoder?.graph].filter((g): g is string => g !== undefined);
  const input = {
    weightsBytes: graphFilesBytes(folder.dir, graphs),
    rowBytes,
    rows: settings.slots,
    prefixCacheBytes: settings.prefixCacheBytes,
    activationBytes: activationBytes({
      rows: settings.slots,
      vocabSize: t.vocabSize,
      hiddenSize: t.hiddenSize,
      intermediateSize: settings.intermediateSize ?? 4 * t.hiddenSize,
      chunk: Math.min(settings.maxPrefillTokens ?? 512, settings.capacity),
      bytesPerValue,
    }),
  };
  const budget = await deviceMemoryBudget({ deviceMemoryMB: settings.deviceMemoryMB, deviceId: settings.deviceId });
  let plan = planDeviceMemory(input);
  if (budget && !settings.prefixCacheFixed && plan.totalBytes > budget.bytes) {
    // the default prefix cache is sized from host memory: on the GPU it gets half of what is left
    const left = budget.bytes - (plan.totalBytes - plan.prefixCacheBytes);
    plan = planDeviceMemory({ ...input, prefixCacheBytes: Math.max(0, Math.floor(left / 2)) });
  }
  if (budget) assertDeviceMemoryFits(plan, budget, { maxContextTokens: settings.maxContextTokens, slots: settings.slots });
  return { plan, budget };
}
