// The engine in this thread: sessions, one preallocated KV cache, the generator, and a queue that
// runs one request at a time. This is what the worker runs (src/engine/worker.ts) and what the
// CLI's `vistyle ask` uses directly. The bot uses the worker-backed engine (engine.ts), because
// onnxruntime's run() blocks the thread that calls it.
import { VistyleError } from '../errors.js';
import { moduleLogger } from '../log.js';
import { Generator, type LoadedLora } from './generator.js';
import { checkWebGpuMemory } from './device-memory.js';
import { HostKvCache, kvCacheBytes, type KvCache } from './kv-cache.js';
import { LoraCache, defaultLoraLoader, type LoraLoader } from './lora.js';
import { LruCache } from './lru.js';
import { openModelFolder, type ModelFolder } from './model-folder.js';
import { resolveProviderConfig, type ProviderConfig } from './providers.js';
import { loadModelSessions, type ModelSessions } from './session.js';
import { DeltaStream, cancelledBeforeStart } from './stream.js';
import { createTextParts, resolveSampling } from './text-parts.js';
import type { Engine, EngineOptions, GenerateRequest, GenerationResult, GenerationStream, ModelInfo } from './types.js';

/** Default positions of the KV cache (prompt with 729 image tokens + system prompt + answer). */
export const DEFAULT_MAX_CONTEXT_TOKENS = 2048;

export interface LocalEngineOptions extends EngineOptions {
  /** Pictures whose features are kept for follow-up questions (default 8). */
  featureCacheSize?: number;
  /** Loaded LoRA adapters kept (default 4). */
  loraCacheSize?: number;
  /** How `request.lora` is loaded (default: the PEFT loader, src/engine/lora-feeds.ts). */
  loraLoader?: LoraLoader;
}

export interface LocalGenerateOptions {
  signal?: AbortSignal;
  /** Called after each generated token. */
  onToken?: (tokenId: number, count: number) => void;
  /** Raw logits of each step before sampling (step 0 = prefill). */
  onLogits?: (step: number, logits: Float32Array) => void;
}

function maxContextFromEnv(): number | undefined {
  const raw = process.env.VISTYLE_MAX_CONTEXT_TOKENS;
  if (raw === undefined || raw.trim() === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new VistyleError('CONFIG_INVALID', `VISTYLE_MAX_CONTEXT_TOKENS must be a positive integer, got "${raw}"`);
  }
  return value;
}

export class LocalEngine implements Engine {
  readonly info: ModelInfo;
  private readonly log = moduleLogger('engine');
  private readonly generator: Generator;
  private readonly loras: LoraCache;
  private tail: Promise<void> = Promise.resolve();
  private pending = 0;
  private closed = false;

  constructor(
    folder: ModelFolder,
    private readonly sessions: ModelSessions,
    private readonly cache: HostKvCache,
    generator: Generator,
    loras: LoraCache,
    provider: ProviderConfig,
    private readonly sequenceCache?: KvCache,
  ) {
    this.generator = generator;
    this.loras = loras;
    const m = folder.manifest;
    this.info = {
      modelDir: folder.dir,
      dtype: m.dtype,
      provider: provider.provider,
      maxContextTokens: sequenceCache?.spec.capacity ?? cache.shape.capacity,
      imageSize: m.vision.imageSize,
      imageTokens: m.vision.imageTokens,
      eosTokenIds: generator.endTokenIds,
      loraTargets: m.lora.targets.map((t) => t.module),
      slots: 1,
    };
  }

  /** Positions the KV cache holds right now (0 between requests). */
  get cacheLength(): number {
    return this.cache.length;
  }

  /** Requests queued or running. */
  get queueLength(): number {
    return this.pending;
  }

  generate(request: GenerateRequest, options: LocalGenerateOptions = {}): GenerationStream {
    const stream = new DeltaStream();
    if (this.closed) {
      stream.fail(new VistyleError('SHUTTING_DOWN', 'the engine is closed'));
      return stream;
    }
    const { signal } = options;
    this.pending++;
    const job = async (): Promise<void> => {
      try {
        if (signal?.aborted) {
          stream.end(cancelledBeforeStart());
          return;
        }
        const result = await this.runOne(request, options, (delta) => stream.push(delta));
        stream.end(result);
      } catch (error) {
        stream.fail(error);
      } finally {
        this.pending--;
      }
    };
    // A request cancelled while it waits ends at once; its turn in the queue then does nothing.
    const onAbortWhileQueued = (): void => {
      if (!stream.settled) stream.end(cancelledBeforeStart());
    };
    signal?.addEventListener('abort', onAbortWhileQueued, { once: true });
    this.tail = this.tail.then(async () => {
      signal?.removeEventListener('abort', onAbortWhileQueued);
      if (stream.settled) {
        this.pending--;
        return;
      }
      await job();
    });
    return stream;
  }

  private async runOne(
    request: GenerateRequest,
    options: LocalGenerateOptions,
    onDelta: (text: string) => void,
  ): Promise<GenerationResult> {
    const sampling = resolveSampling(request.sampling);
    let lora: LoadedLora | null = null;
    if (request.lora) lora = await this.loras.get(request.lora);
    const result = await this.generator.generate(
      { images: request.images, messages: request.messages, sampling, lora },
      { signal: options.signal, onDelta, onToken: options.onToken, onLogits: options.onLogits },
    );
    this.log.debug(
      {
        promptTokens: result.promptTokens,
        tokens: result.tokens.length,
        finishReason: result.finishReason,
        ttftMs: Math.round(result.ttftMs),
        tokensPerSecond: Number(result.tokensPerSecond.toFixed(1)),
      },
      'generation finished',
    );
    return result;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail.catch(() => undefined);
    this.cache.free();
    this.generator.dispose();
    this.sequenceCache?.free();
    this.loras.clear();
    await this.sessions.release();
  }
}

/** Loads a built model into this thread. Rejects with MODEL_NOT_FOUND / MODEL_INVALID / PROVIDER_UNAVAILABLE. */
export async function createLocalEngine(options: LocalEngineOptions): Promise<LocalEngine> {
  const provider = resolveProviderConfig(options);
  const folder = openModelFolder(options.modelDir);
  const m = folder.manifest;
  const requested = options.maxContextTokens ?? maxContextFromEnv() ?? DEFAULT_MAX_CONTEXT_TOKENS;
  if (!Number.isInteger(requested) || requested <= 0) {
    throw new VistyleError('CONFIG_INVALID', `maxContextTokens must be a positive integer, got ${requested}`);
  }
  const capacity = Math.min(requested, m.text.maxPositionEmbeddings);
  const text = await createTextParts(folder, {
    maxImagePixels: options.maxImagePixels,
    maxImageBytes: options.maxImageBytes,
  });
  const log = moduleLogger('engine');
  // WebGPU: the weights and every slot's cache must fit the GPU; refused with the numbers first
  const deviceMemory = provider.provider === 'webgpu' && folder.paths.deviceDecoder !== null
    ? await checkWebGpuMemory(folder, { capacity, maxContextTokens: requested, slots: 1, prefixCacheBytes: 0, deviceMemoryMB: options.deviceMemoryMB, deviceId: provider.deviceId })
    : undefined;
  if (provider.provider === 'webgpu' && folder.paths.deviceDecoder === null) {
    log.warn(
      { modelDir: folder.dir },
      'this model has no device decoder: with WebGPU the KV cache then crosses host memory on every step; rebuild it with `vistyle model build --device-decoder` (or `vistyle model pull` with VISTYLE_PROVIDER=webgpu)',
    );
  }
  const sessions = await loadModelSessions(folder, provider);
  try {
    // With a device cache the host cache is a placeholder (the generator's one-request path)
    const cache = new HostKvCache({
      numLayers: m.text.numLayers,
      batch: 1,
      numKvHeads: m.text.numKvHeads,
      headDim: m.text.headDim,
      capacity: sessions.device ? 1 : capacity,
      dtype: m.kvCache.dtype,
    });
    const sequenceCache: KvCache | undefined = sessions.device?.createKvCache({
      numLayers: m.text.numLayers,
      numKvHeads: m.text.numKvHeads,
      headDim: m.text.headDim,
      capacity,
      rows: 1,
      dtype: m.kvCache.dtype,
    });
    const featureCache = new LruCache<string, Float32Array>(options.featureCacheSize ?? 8);
    const generator = new Generator({
      sessions, manifest: m, text, cache, featureCache, sequenceCache,
      zeroLoraRank: provider.provider === 'webgpu' ? 1 : 0,
    });
    const loras = new LoraCache(options.loraLoader ?? defaultLoraLoader, folder, sessions, options.loraCacheSize ?? 4);
    log.info(
      {
        modelDir: folder.dir, provider: provider.provider, dtype: m.dtype, maxContextTokens: capacity,
        kvCacheMiB: Math.round((sequenceCache ? kvCacheBytes({ ...sequenceCache.spec }) : kvCacheBytes(cache.shape)) / 2 ** 20),
        ...(sessions.device ? { kvCache: 'device', maxPrefillTokens: sessions.device.maxPrefillTokens } : {}),
        ...(deviceMemory ? { deviceMemoryMiB: Math.ceil(deviceMemory.plan.totalBytes / 2 ** 20), deviceBudgetMiB: deviceMemory.budget ? Math.floor(deviceMemory.budget.bytes / 2 ** 20) : null } : {}),
      },
      'engine loaded',
    );
    return new LocalEngine(folder, sessions, cache, generator, loras, provider, sequenceCache);
  } catch (error) {
    await sessions.release();
    throw error;
  }
}
