// The engine in this thread: sessions, the KV cache for `slots` sequences, the prefix cache and
// the batch engine that decodes every request in it together (batch-engine.ts). This is what the
// worker runs (src/engine/worker.ts) and what the CLI's `vistyle ask` uses directly. The bot uses
// the worker-backed engine (engine.ts), because onnxruntime's run() blocks the thread that calls it.
//
// Settings come only from the options (the application config reads the environment, with its
// zod rules: src/config/config.ts); the engine reads no environment variable itself.
import { VistyleError } from '../errors.js';
import { moduleLogger } from '../log.js';
import { BatchEngine, type JobInput } from './batch-engine.js';
import { DeviceLoraFeeds } from './device-lora.js';
import { checkWebGpuMemory } from './device-memory.js';
import type { LoadedLora } from './generation-parts.js';
import { kvCacheBytes, type KvCache, type KvCacheSpec } from './kv-cache.js';
import { DEFAULT_WINDOW_BLOCK, HostKvCache } from './kv-host.js';
import { LoraFeeds } from './lora-batch.js';
import { LoraCache, defaultLoraLoader, type LoraLoader } from './lora.js';
import { LruCache } from './lru.js';
import { loraBytes, planMemory, type MemoryPlan } from './memory.js';
import { openModelFolder, type ModelFolder } from './model-folder.js';
import { PrefixCache } from './prefix-cache.js';
import { resolveProviderConfig, type ProviderConfig } from './providers.js';
import { loadModelSessions, type ModelSessions } from './session.js';
import { DeltaStream, cancelledResult } from './stream.js';
import { createTextParts, resolveSampling } from './text-parts.js';
import type { Engine, EngineOptions, GenerateRequest, GenerationResult, GenerationStream, ModelInfo } from './types.js';

/** Default positions of each sequence (prompt with 729 image tokens + system prompt + answer). */
export const DEFAULT_MAX_CONTEXT_TOKENS = 2048;
/** Default slots: requests decoded together. */
export const DEFAULT_SLOTS = 4;
/** Default longest prefill chunk. */
export const DEFAULT_PREFILL_CHUNK = 512;

export interface LocalEngineOptions extends EngineOptions {
  /** Pictures whose features are kept for follow-up questions (default 8). */
  featureCacheSize?: number;
  /** Loaded LoRA adapters kept (default 4). */
  loraCacheSize?: number;
  /** How `request.lora` is loaded (default: the PEFT loader, src/engine/lora-feeds.ts). */
  loraLoader?: LoraLoader;
  /** Window granularity of the host KV cache in positions (default 64; tests use small ones). */
  cacheBlock?: number;
}

export interface LocalGenerateOptions {
  signal?: AbortSignal;
  /** Called after each generated token. */
  onToken?: (tokenId: number, count: number) => void;
  /** Raw logits of each step before sampling (step 0 = prefill). */
  onLogits?: (step: number, logits: Float32Array) => void;
}

function positiveInt(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0) throw new VistyleError('CONFIG_INVALID', `${name} must be a positive integer, got ${value}`);
  return value;
}

export class LocalEngine implements Engine {
  readonly info: ModelInfo;
  readonly memory: MemoryPlan;
  private readonly log = moduleLogger('engine');
  private closed = false;
  private pending = 0;

  constructor(
    folder: ModelFolder,
    private readonly sessions: ModelSessions,
    /** The KV cache (host or device); exposed for tests and measurements. */
    readonly cache: KvCache,
    /** The batch loop; exposed for tests and measurements (steps, batch sizes). */
    readonly batch: BatchEngine,
    private readonly loras: LoraCache,
    private readonly loraFeeds: LoraFeeds | DeviceLoraFeeds,
    readonly prefix: PrefixCache,
    provider: ProviderConfig,
    memory: MemoryPlan,
    private readonly maxLoraBytes: number | undefined,
  ) {
    const m = folder.manifest;
    this.memory = memory;
    this.info = {
      modelDir: folder.dir,
      dtype: m.dtype,
      provider: provider.provider,
      maxContextTokens: cache.spec.capacity,
      imageSize: m.vision.imageSize,
      imageTokens: m.vision.imageTokens,
      eosTokenIds: batch.endTokenIds,
      loraTargets: m.lora.targets.map((t) => t.module),
      slots: cache.spec.rows,
    };
  }

  /** Requests waiting or running. */
  get queueLength(): number {
    return this.pending;
  }

  /** Sequences open in the KV cache (0 between requests). */
  get openSequences(): number {
    return this.cache.spec.rows - this.cache.freeRows;
  }

  generate(request: GenerateRequest, options: LocalGenerateOptions = {}): GenerationStream {
    const stream = new DeltaStream();
    if (this.closed) {
      stream.fail(new VistyleError('SHUTTING_DOWN', 'the engine is closed'));
      return stream;
    }
    const { signal } = options;
    if (signal?.aborted) {
      stream.end(cancelledResult());
      return stream;
    }
    this.pending++;
    // A request cancelled while it waits for a slot ends at once.
    let started = false;
    const onAbortWhileWaiting = (): void => {
      if (!started && !stream.settled) stream.end(cancelledResult());
    };
    signal?.addEventListener('abort', onAbortWhileWaiting, { once: true });
    const prepare = async (): Promise<JobInput> => {
      started = true;
      signal?.removeEventListener('abort', onAbortWhileWaiting);
      const sampling = resolveSampling(request.sampling);
      const lora = request.lora ? await this.loadLora(request.lora) : null;
      return { images: request.images ?? [], messages: request.messages, sampling, lora };
    };
    const done = (): void => {
      this.pending--;
      signal?.removeEventListener('abort', onAbortWhileWaiting);
    };
    this.batch.run(prepare, { signal, onDelta: (delta) => stream.push(delta), onToken: options.onToken, onLogits: options.onLogits }).then(
      (result) => {
        done();
        this.logResult(result);
        stream.end(result);
      },
      (error: unknown) => {
        done();
        stream.fail(error);
      },
    );
    return stream;
  }

  private async loadLora(ref: NonNullable<GenerateRequest['lora']>): Promise<LoadedLora> {
    const lora = await this.loras.get(ref);
    if (this.maxLoraBytes !== undefined) {
      let bytes = 0;
      for (const tensor of lora.feeds.values()) bytes += tensor.dims.reduce((a, b) => a * b, 1) * (tensor.type === 'float16' ? 2 : 4);
      if (bytes > this.maxLoraBytes) {
        throw new VistyleError(
          'ADAPTER_INVALID',
          `LoRA adapter ${ref.path} needs ${Math.ceil(bytes / 2 ** 20)} MB; VISTYLE_MAX_MEMORY_MB leaves ${Math.floor(this.maxLoraBytes / 2 ** 20)} MB for one adapter`,
          { details: { path: ref.path, bytes, maxBytes: this.maxLoraBytes } },
        );
      }
    }
    return lora;
  }

  private logResult(result: GenerationResult): void {
    this.log.debug(
      {
        promptTokens: result.promptTokens,
        cachedPromptTokens: result.cachedPromptTokens,
        images: result.imageCount,
        tokens: result.tokens.length,
        finishReason: result.finishReason,
        ttftMs: Math.round(result.ttftMs),
        tokensPerSecond: Number(result.tokensPerSecond.toFixed(1)),
      },
      'generation finished',
    );
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.batch.drain();
    this.batch.close();
    this.prefix.clear();
    this.cache.free();
    this.loras.clear();
    this.loraFeeds.clear();
    await this.sessions.release();
  }
}

/** Loads a built model into this thread. Rejects with MODEL_NOT_FOUND / MODEL_INVALID / PROVIDER_UNAVAILABLE / CONFIG_INVALID. */
export async function createLocalEngine(options: LocalEngineOptions): Promise<LocalEngine> {
  const provider = resolveProviderConfig(options);
  const folder = openModelFolder(options.modelDir);
  const m = folder.manifest;
  const requested = positiveInt('maxContextTokens', options.maxContextTokens ?? DEFAULT_MAX_CONTEXT_TOKENS);
  const capacity = Math.min(requested, m.text.maxPositionEmbeddings);
  const slots = positiveInt('slots', options.slots ?? DEFAULT_SLOTS);
  const prefillChunk = positiveInt('prefillChunk', options.prefillChunk ?? DEFAULT_PREFILL_CHUNK);
  const featureCacheSize = options.featureCacheSize ?? 8;
  const loraCacheSize = options.loraCacheSize ?? 4;
  const block = options.cacheBlock ?? DEFAULT_WINDOW_BLOCK;
  const spec: KvCacheSpec = {
    numLayers: m.text.numLayers,
    numKvHeads: m.text.numKvHeads,
    headDim: m.text.headDim,
    capacity,
    rows: slots,
    dtype: m.kvCache.dtype,
  };
  const webgpu = provider.provider === 'webgpu';
  const onDevice = webgpu && folder.paths.deviceDecoder !== null;
  const log = moduleLogger('engine');
  if (webgpu && !onDevice) {
    log.warn(
      { modelDir: folder.dir },
      'this model has no device decoder: with WebGPU the KV cache then crosses host memory on every step; rebuild it with `vistyle model build --device-decoder` (or `vistyle model pull` with VISTYLE_PROVIDER=webgpu)',
    );
  }
  // The host cache's buffers hold whole windows: capacity rounded up to the block. The device
  // cache holds no host memory (its plan is the GPU's, below).
  const kvBytes = onDevice ? 0 : kvCacheBytes({ ...spec, capacity: Math.ceil(capacity / block) * block });
  const memory = planMemory({
    folder,
    kvCacheBytes: kvBytes,
    slots,
    capacity,
    chunk: prefillChunk,
    featureCacheSize,
    loraCacheSize,
    prefixCacheBytes: options.prefixCacheBytes,
    maxMemoryBytes: options.maxMemoryBytes,
  });
  // WebGPU: weights + every slot's cache + prefix snapshots must fit the GPU (refused with the numbers)
  const deviceMemory = onDevice
    ? await checkWebGpuMemory(folder, {
      capacity, maxContextTokens: requested, slots, prefixCacheBytes: memory.prefixCache, prefixCacheFixed: options.prefixCacheBytes !== undefined,
      deviceMemoryMB: options.deviceMemoryMB, deviceId: provider.deviceId, maxPrefillTokens: prefillChunk,
    })
    : undefined;
  if (deviceMemory) memory.prefixCache = deviceMemory.plan.prefixCacheBytes;
  const text = await createTextParts(folder, {
    maxImagePixels: options.maxImagePixels,
    maxImageBytes: options.maxImageBytes,
  });
  const sessions = await loadModelSessions(folder, provider);
  try {
    const device = sessions.device;
    const cache: KvCache = device ? device.createKvCache(spec) : new HostKvCache({ spec, block });
    const prefix = new PrefixCache(memory.prefixCache, (snapshot) => cache.releaseSnapshot(snapshot));
    const featureCache = new LruCache<string, Float32Array>(featureCacheSize);
    const hostLora = new LoraFeeds(m, sessions.decoder.inputTypes, sessions.vision.inputTypes);
    const loraFeeds = device ? new DeviceLoraFeeds(hostLora, device.graphs) : hostLora;
    // the device's prefill limit (device-attention-check.ts) bounds the chunks
    const chunk = device ? Math.min(prefillChunk, device.maxPrefillTokens) : prefillChunk;
    const batch = new BatchEngine({ sessions, manifest: m, text, cache, lora: loraFeeds, prefix, featureCache, prefillChunk: chunk });
    const loras = new LoraCache(options.loraLoader ?? defaultLoraLoader, folder, sessions, loraCacheSize);
    const maxLoraBytes = options.maxMemoryBytes === undefined ? undefined : Math.floor(memory.loraCache / Math.max(1, loraCacheSize));
    log.info(
      {
        modelDir: folder.dir,
        provider: provider.provider,
        dtype: m.dtype,
        slots,
        maxContextTokens: capacity,
        kvCacheMiB: Math.round(kvCacheBytes(spec) / 2 ** 20),
        kvCache: device ? 'device' : 'host',
        prefixCacheMiB: Math.round(memory.prefixCache / 2 ** 20),
        plannedMiB: Math.round(memory.total / 2 ** 20),
        loraMiBPerAdapter: Math.round(loraBytes(m, 8) / 2 ** 20),
        ...(device ? { prefillChunk: chunk, maxPrefillTokens: device.maxPrefillTokens } : {}),
        ...(deviceMemory
          ? { deviceMiB: Math.ceil(deviceMemory.plan.totalBytes / 2 ** 20), deviceBudgetMiB: deviceMemory.budget ? Math.floor(deviceMemory.budget.bytes / 2 ** 20) : null, deviceBudgetSource: deviceMemory.budget?.source ?? 'unknown' }
          : {}),
      },
      'engine loaded',
    );
    return new LocalEngine(folder, sessions, cache, batch, loras, loraFeeds, prefix, provider, memory, maxLoraBytes);
  } catch (error) {
    await sessions.release();
    throw error;
  }
}
