// One answer, start to finish: picture -> vision graph -> image features; conversation -> prompt
// ids -> embed graph -> image features spliced into the image-token rows -> decoder prefill ->
// decode loop (sampler, detokenizer, stop criteria) with the KV cache kept in TypeScript.
//
// The text side (image preprocessing, tokenizer + chat template, sampler, detokenizer) comes in
// through `TextParts`, so this file only deals with graphs, the cache and the stop criteria.
import { createHash } from 'node:crypto';
import * as ort from 'onnxruntime-node';
import { VistyleError } from '../errors.js';
import type { ModelManifest } from '../../models/manifest.js';
import { decodeSequence, DeviceLoraFeeds, prefillSequence } from './device-steps.js';
import type { HostKvCache, KvCache, SequenceId } from './kv-cache.js';
import type { LruCache } from './lru.js';
import type { GraphSession, ModelSessions } from './session.js';
import { StopStringFilter, isStuckInLoop } from './stopping.js';
import type { ChatMessage, FinishReason, GenerationResult, SamplingOptions } from './types.js';

/** Chooses the next token from the last position's logits (may modify `logits`). */
export interface TokenSampler {
  next(logits: Float32Array, generated: readonly number[]): number;
}

/** Turns generated ids into text deltas that never split a UTF-8 character. */
export interface DeltaDetokenizer {
  push(tokenId: number): string;
  /** Whatever is still held back at the end (an incomplete character). */
  flush(): string;
}

/** The text-side parts of the engine (src/engine/text-parts.ts binds them to the checkpoint). */
export interface TextParts {
  /** Pixel values [1,3,S,S] (float32, NCHW) for encoded image bytes; typed IMAGE_* errors. */
  preprocessImage(bytes: Uint8Array): Promise<Float32Array>;
  /**
   * Prompt ids of the conversation: checked (QUESTION_EMPTY, IMAGE_MISSING), rendered with the
   * checkpoint's chat template with the generation prompt, image placeholders expanded; oldest
   * turns dropped to fit `maxPromptTokens` (PROMPT_TOO_LONG when even the question alone does not).
   */
  encodePrompt(messages: ChatMessage[], options: { imageCount: number; maxPromptTokens: number; capacity: number }): EncodedPrompt;
  createSampler(options: SamplingOptions, promptIds: readonly number[]): TokenSampler;
  createDetokenizer(): DeltaDetokenizer;
  /**
   * Ids that end an answer besides the model's EOS ids (generation_config.json): the tokenizer's
   * own end-of-text tokens (see text-parts.ts endOfTextIds).
   */
  readonly endTokenIds?: readonly number[];
}

export interface EncodedPrompt {
  ids: number[];
  /** Picture occurrences in prompt order: which request image, and where its rows start. */
  imageRuns: Array<{ image: number; start: number }>;
  /** Messages left out to fit (oldest first). */
  droppedMessages: number;
}

/** LoRA weights for one request, by graph input name (A: [r,in], B: [out,r], scale folded into B). */
export interface LoadedLora {
  /** Identifies the adapter in the image-feature cache. */
  key: string;
  feeds: ReadonlyMap<string, ort.Tensor>;
}

export interface GenerationInput {
  images?: readonly Uint8Array[] | undefined;
  messages: ChatMessage[];
  sampling: SamplingOptions;
  lora?: LoadedLora | null | undefined;
}

export interface GenerationHooks {
  signal?: AbortSignal | undefined;
  onDelta?: (text: string) => void;
  /** Called after each generated token (the worker's test-only crash hook counts them). */
  onToken?: (tokenId: number, count: number) => void;
  /** Raw logits of each step before sampling (step 0 = prefill), a copy; for parity tests. */
  onLogits?: (step: number, logits: Float32Array) => void;
}

export interface GeneratorOptions {
  sessions: ModelSessions;
  manifest: ModelManifest;
  text: TextParts;
  cache: HostKvCache;
  /**
   * A cache behind the KvCache interface (the WebGPU device cache), used instead of `cache` for
   * the decoder runs (one sequence per request until the batching generator lands).
   */
  sequenceCache?: KvCache | undefined;
  /** Rank of the zero LoRA inputs for "no adapter": 1 on WebGPU, which crashes on zero-size inputs. */
  zeroLoraRank?: 0 | 1;
  /** Image features by image hash (+ adapter): follow-up questions skip the vision graph. */
  featureCache?: LruCache<string, Float32Array> | undefined;
  /** Loop guard for sampled answers (greedy runs are left exactly as the model decides). */
  loopGuard?: boolean;
}

const now = (): number => performance.now();

function cancelledError(): VistyleError {
  return new VistyleError('CANCELLED', 'the request was cancelled');
}

/** Zero LoRA inputs ("no adapter", rank 0 or a rank-1 zero) for one graph, created once per engine. */
export function zeroLoraFeeds(manifest: ModelManifest, graph: GraphSession, which: 'vision' | 'decoder', rank: 0 | 1 = 0): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const target of manifest.lora.targets) {
    if (target.graph !== which) continue;
    const typeA = graph.inputTypes.get(target.inputA) ?? 'float32';
    const typeB = graph.inputTypes.get(target.inputB) ?? 'float32';
    feeds[target.inputA] = zeroTensor(typeA, [rank, target.inFeatures]);
    feeds[target.inputB] = zeroTensor(typeB, [target.outFeatures, rank]);
  }
  return feeds;
}

function zeroTensor(type: ort.Tensor.Type, dims: number[]): ort.Tensor {
  const size = dims.reduce((a, b) => a * b, 1);
  if (type === 'float16') return new ort.Tensor('float16', new Uint16Array(size), dims);
  return new ort.Tensor('float32', new Float32Array(size), dims);
}

export class Generator {
  private readonly sessions: ModelSessions;
  private readonly manifest: ModelManifest;
  private readonly text: TextParts;
  private readonly cache: HostKvCache;
  private readonly sequenceCache: KvCache | undefined;
  private readonly deviceLora: DeviceLoraFeeds | undefined;
  /** The request's sequence in `sequenceCache` while it runs. */
  private sequence: SequenceId | null = null;
  private readonly featureCache: LruCache<string, Float32Array> | undefined;
  private readonly loopGuard: boolean;
  private readonly visionZeroLora: Record<string, ort.Tensor>;
  private readonly decoderZeroLora: Record<string, ort.Tensor>;
  /** 1s for the attention mask, fed as a view of the first P+T entries. */
  private readonly maskOnes: BigInt64Array;
  private readonly hasLogitsForAllPositions: boolean;
  /** Ids that end an answer: the model's EOS ids and the tokenizer's end-of-text tokens. */
  private readonly endIds: ReadonlySet<number>;

  constructor(options: GeneratorOptions) {
    this.sessions = options.sessions;
    this.manifest = options.manifest;
    this.text = options.text;
    this.cache = options.cache;
    this.sequenceCache = options.sequenceCache;
    this.deviceLora = this.sessions.device ? new DeviceLoraFeeds(this.sessions.device.graphs) : undefined;
    this.featureCache = options.featureCache;
    this.loopGuard = options.loopGuard ?? true;
    this.visionZeroLora = zeroLoraFeeds(this.manifest, this.sessions.vision, 'vision', options.zeroLoraRank);
    this.decoderZeroLora = zeroLoraFeeds(this.manifest, this.sessions.decoder, 'decoder', options.zeroLoraRank);
    this.maskOnes = new BigInt64Array(this.cache.shape.capacity).fill(1n);
    this.hasLogitsForAllPositions = this.manifest.allPositionLogits;
    this.endIds = new Set([...this.manifest.tokens.eosTokenIds, ...(this.text.endTokenIds ?? [])]);
  }

  /** Ids that end an answer (the model's EOS ids first). */
  get endTokenIds(): number[] {
    return [...this.endIds];
  }

  /** Positions one answer can use (prompt + generated tokens). */
  get capacity(): number {
    return this.sequenceCache?.spec.capacity ?? this.cache.shape.capacity;
  }

  async generate(input: GenerationInput, hooks: GenerationHooks = {}): Promise<GenerationResult> {
    const { signal } = hooks;
    const started = now();
    this.cache.reset();
    try {
      if (this.sequenceCache) this.sequence = await this.sequenceCache.open();
      return await this.run(input, hooks, started);
    } catch (error) {
      if (signal?.aborted && !(error instanceof VistyleError && error.code !== 'CANCELLED')) {
        return this.cancelledResult(started, 0, [], '');
      }
      throw error;
    } finally {
      // The cache holds this request's keys and values only while it runs.
      this.cache.reset();
      if (this.sequenceCache && this.sequence !== null) await this.sequenceCache.close([this.sequence]);
      this.sequence = null;
    }
  }

  private cancelledResult(started: number, promptTokens: number, tokens: number[], text: string): GenerationResult {
    const totalMs = now() - started;
    return {
      text,
      tokens,
      promptTokens,
      ttftMs: 0,
      tokensPerSecond: 0,
      finishReason: 'cancelled',
      timings: { imageMs: 0, visionMs: 0, prefillMs: 0, decodeMs: 0, totalMs },
      cachedPromptTokens: 0,
      imageCount: 0,
      droppedMessages: 0,
    };
  }

  private async run(input: GenerationInput, hooks: GenerationHooks, started: number): Promise<GenerationResult> {
    const { signal } = hooks;
    const checkCancelled = (): void => {
      if (signal?.aborted) throw cancelledError();
    };
    const sampling = input.sampling;
    const images = input.images ?? [];
    checkCancelled();

    // Prompt first: an empty question or a too-long conversation fails before any graph runs.
    // Leave room for the answer: up to maxNewTokens, but never more than a quarter of the cache.
    const answerRoom = Math.max(1, Math.min(sampling.maxNewTokens, Math.floor(this.capacity / 4)));
    const prompt = this.text.encodePrompt(input.messages, { imageCount: images.length, maxPromptTokens: this.capacity - answerRoom, capacity: this.capacity });
    const promptIds = prompt.ids;
    if (promptIds.length >= this.capacity) {
      throw new VistyleError(
        'PROMPT_TOO_LONG',
        `the conversation is ${promptIds.length} tokens; this engine holds at most ${this.capacity} (prompt and answer together)`,
        { details: { promptTokens: promptIds.length, capacity: this.capacity, imageTokens: this.manifest.vision.imageTokens, maxImages: 0 } },
      );
    }

    // Pictures -> image features (straight from the cache for a picture seen before).
    let imageMs = 0;
    let visionMs = 0;
    const featuresByImage = new Map<number, Float32Array>();
    for (const run of prompt.imageRuns) {
      if (featuresByImage.has(run.image)) continue;
      const image = images[run.image]!;
      const loraKey = this.loraTouchesVision(input.lora) ? input.lora!.key : '';
      const featureKey = `${createHash('sha256').update(image).digest('hex')}|${loraKey}`;
      let features = this.featureCache?.get(featureKey);
      if (!features) {
        const t0 = now();
        const pixels = await this.text.preprocessImage(image);
        imageMs += now() - t0;
        checkCancelled();
        const t1 = now();
        features = await this.encodeImage(pixels, input.lora);
        visionMs += now() - t1;
        this.featureCache?.set(featureKey, features);
        checkCancelled();
      }
      featuresByImage.set(run.image, features);
    }

    // Prefill.
    const tPrefill = now();
    const embeds = await this.embed(promptIds);
    const hidden = this.manifest.text.hiddenSize;
    for (const run of prompt.imageRuns) spliceImageRun(embeds, run.start, featuresByImage.get(run.image)!, hidden);
    checkCancelled();
    const decoderLora = await this.decoderRunLora(input.lora);
    let logits = await this.decode(embeds, promptIds.length, decoderLora);
    const prefillMs = now() - tPrefill;

    const sampler = this.text.createSampler(sampling, promptIds);
    const detokenizer = this.text.createDetokenizer();
    const stops = new StopStringFilter(sampling.stopStrings);
    const tokens: number[] = [];
    let text = '';
    let ttftMs = 0;
    let firstTokenAt = 0;
    let finishReason: FinishReason = 'length';
    const emit = (delta: string): void => {
      if (delta.length === 0) return;
      text += delta;
      hooks.onDelta?.(delta);
    };

    for (let step = 0; ; step++) {
      // The sampler modifies the logits in place: observers get their own copy.
      if (hooks.onLogits) hooks.onLogits(step, logits.slice());
      const token = sampler.next(logits, tokens);
      if (step === 0) {
        firstTokenAt = now();
        ttftMs = firstTokenAt - started;
      }
      if (this.endIds.has(token)) {
        finishReason = 'eos';
        break;
      }
      tokens.push(token);
      hooks.onToken?.(token, tokens.length);
      emit(stops.push(detokenizer.push(token)));
      if (stops.stopped) {
        finishReason = 'stop';
        break;
      }
      if (tokens.length >= sampling.maxNewTokens) {
        finishReason = 'length';
        break;
      }
      if (this.loopGuard && !sampling.greedy && isStuckInLoop(tokens)) {
        finishReason = 'stop';
        break;
      }
      if (this.remaining < 1) {
        finishReason = 'length';
        break;
      }
      if (signal?.aborted) {
        finishReason = 'cancelled';
        break;
      }
      const stepEmbeds = await this.embed([token]);
      if (signal?.aborted) {
        finishReason = 'cancelled';
        break;
      }
      logits = await this.decode(stepEmbeds, 1, decoderLora);
    }
    if (finishReason !== 'cancelled' && !stops.stopped) {
      // An incomplete character at the very end, then whatever the stop filter held back.
      emit(stops.push(detokenizer.flush()));
      if (stops.stopped) finishReason = 'stop';
      else emit(stops.flush());
    }

    const end = now();
    const decodeMs = tokens.length > 0 ? end - firstTokenAt : 0;
    return {
      text,
      tokens,
      promptTokens: promptIds.length,
      ttftMs,
      tokensPerSecond: tokens.length > 1 && decodeMs > 0 ? ((tokens.length - 1) * 1000) / decodeMs : 0,
      finishReason,
      timings: { imageMs, visionMs, prefillMs, decodeMs, totalMs: end - started },
      cachedPromptTokens: 0,
      imageCount: prompt.imageRuns.length,
      droppedMessages: prompt.droppedMessages,
    };
  }

  private loraTouchesVision(lora: LoadedLora | null | undefined): boolean {
    if (!lora) return false;
    return this.manifest.lora.targets.some((t) => t.graph === 'vision' && lora.feeds.has(t.inputA));
  }

  private loraFeeds(zero: Record<string, ort.Tensor>, adapter: LoadedLora | null | undefined): Record<string, ort.Tensor> {
    if (!adapter) return zero;
    const feeds: Record<string, ort.Tensor> = { ...zero };
    for (const name of Object.keys(zero)) {
      const tensor = adapter.feeds.get(name);
      if (tensor) feeds[name] = tensor;
    }
    return feeds;
  }

  private decoderLoraFeeds(adapter: LoadedLora | null | undefined): Record<string, ort.Tensor> {
    return this.loraFeeds(this.decoderZeroLora, adapter);
  }

  /** The decoder's LoRA feeds for this request: on the device when the cache is (uploaded once per adapter). */
  private async decoderRunLora(adapter: LoadedLora | null | undefined): Promise<Record<string, ort.Tensor>> {
    const feeds = this.decoderLoraFeeds(adapter);
    if (!this.deviceLora || Object.keys(feeds).length === 0) return feeds;
    return this.deviceLora.get(adapter ? `lora:${adapter.key}` : 'none', feeds);
  }

  /** Positions still free for this request. */
  private get remaining(): number {
    if (this.sequenceCache && this.sequence !== null) return this.sequenceCache.spec.capacity - this.sequenceCache.length(this.sequence);
    return this.cache.remaining;
  }

  /** Releases what the generator keeps on the device. */
  dispose(): void {
    this.deviceLora?.clear();
  }

  /** Runs the vision graph; returns image features [N*D] (one image). */
  async encodeImage(pixels: Float32Array, adapter?: LoadedLora | null): Promise<Float32Array> {
    const size = this.manifest.vision.imageSize;
    const pixelValues = new ort.Tensor('float32', pixels, [1, 3, size, size]);
    const out = await this.sessions.vision.session.run({ pixel_values: pixelValues, ...this.loraFeeds(this.visionZeroLora, adapter) });
    const features = out.image_features;
    const expected = this.manifest.vision.imageTokens * this.manifest.text.hiddenSize;
    if (!features || features.type !== 'float32' || (features.data as Float32Array).length !== expected) {
      throw new VistyleError('MODEL_INVALID', `vision graph returned image_features of shape [${features?.dims.join(',')}], expected [1,${this.manifest.vision.imageTokens},${this.manifest.text.hiddenSize}]`);
    }
    return features.data as Float32Array;
  }

  /** Runs the embed graph for these ids; returns [T*D]. */
  private async embed(ids: readonly number[]): Promise<Float32Array> {
    const inputIds = new ort.Tensor('int64', BigInt64Array.from(ids, (id) => BigInt(id)), [1, ids.length]);
    const out = await this.sessions.embed.session.run({ input_ids: inputIds });
    const embeds = out.inputs_embeds;
    if (!embeds || embeds.type !== 'float32') throw new VistyleError('MODEL_INVALID', 'embed graph did not return float32 inputs_embeds');
    return embeds.data as Float32Array;
  }

  /** Runs the decoder over T new positions after the cached ones; returns the last position's logits. */
  private async decode(embeds: Float32Array, newTokens: number, lora: Record<string, ort.Tensor>): Promise<Float32Array> {
    if (this.sequenceCache && this.sequence !== null) {
      const session = this.sessions.decoder.session;
      const hidden = this.manifest.text.hiddenSize;
      const cache = this.sequenceCache;
      // the first run of a request is its prompt; every later one is one generated token
      return cache.length(this.sequence) === 0 || newTokens > 1
        ? prefillSequence(cache, session, this.sequence, embeds, newTokens, hidden, lora)
        : decodeSequence(cache, session, this.sequence, embeds, hidden, lora);
    }
    const past = this.cache.length;
    const total = past + newTokens;
    if (total > this.capacity) {
      throw new VistyleError('PROMPT_TOO_LONG', `the conversation needs ${total} positions; this engine holds ${this.capacity}`);
    }
    const positions = new BigInt64Array(newTokens);
    for (let i = 0; i < newTokens; i++) positions[i] = BigInt(past + i);
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor('float32', embeds, [1, newTokens, this.manifest.text.hiddenSize]),
      position_ids: new ort.Tensor('int64', positions, [1, newTokens]),
      attention_mask: new ort.Tensor('int64', this.maskOnes.subarray(0, total), [1, total]),
      ...this.cache.pastFeeds(),
      ...lora,
    };
    const out = await this.sessions.decoder.session.run(feeds);
    this.cache.append(out);
    const logits = out.logits;
    if (!logits || logits.type !== 'float32') throw new VistyleError('MODEL_INVALID', 'decoder did not return float32 logits');
    const data = logits.data as Float32Array;
    const vocab = logits.dims[logits.dims.length - 1] ?? data.length;
    // [B,V] normally; [B,T,V] when the model was built with allPositionLogits.
    return this.hasLogitsForAllPositions || data.length !== vocab ? data.subarray(data.length - vocab) : data;
  }
}

/** Writes one picture's feature rows over its run of image-token rows starting at `start` (bitwise copies). */
export function spliceImageRun(embeds: Float32Array, start: number, features: Float32Array, hidden: number): void {
  embeds.set(features, start * hidden);
}
