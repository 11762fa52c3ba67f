// Continuous batching: up to `slots` requests are in the engine at once, each a sequence in the KV
// cache. One loop drives them all:
//
//   1. admit waiting requests while a slot is free; each is prepared on its own (prompt ids,
//      prefix-cache lookup, pictures -> features, embeddings of what is not cached yet);
//   2. run one prefill chunk of the oldest prepared request (alone, batch 1; the whole rest of its
//      prompt when nobody is decoding, else `prefillChunk` tokens, so that the others' streams
//      pause for one chunk at a time, not for a whole prompt);
//   3. run one decode step over every decoding request: one decoder call, a batch row each,
//      every row with its own length, position and LoRA adapter;
//   4. a finished or cancelled request leaves at once: its row is free for the next one, and its
//      sequence (prompt + answer) goes to the prefix cache for the follow-up.
//
// onnxruntime's run() occupies this thread while it runs, so the steps simply alternate; the
// picture decoding (sharp) of a request being prepared overlaps them on libuv's threads, its
// vision graph run sits between two steps. Everything that touches the KV cache (opening a
// sequence, binding and committing a run, snapshots, closing) happens in the loop itself, one
// thing at a time: a preparation only finds the prefix to restore (pinned until the loop opens it).
import { createHash } from 'node:crypto';
import * as ort from 'onnxruntime-node';
import { VistyleError } from '../errors.js';
import type { ModelManifest } from '../../models/manifest.js';
import { Answer, type AnswerHooks } from './answer.js';
import type { EncodedPrompt, LoadedLora, TextParts } from './generation-parts.js';
import type { KvCache, SequenceId } from './kv-cache.js';
import type { LoraFeeds } from './lora-batch.js';
import type { LruCache } from './lru.js';
import type { ImageSpan, PrefixCache, PrefixMatch } from './prefix-cache.js';
import type { ModelSessions } from './session.js';
import { cancelledResult } from './stream.js';
import type { ChatMessage, GenerationResult, SamplingOptions } from './types.js';

const now = (): number => performance.now();

/** Longest prefill chunk while other requests decode. */
export const INTERLEAVED_CHUNK = 128;

/** A style prefix shorter than this is not worth an entry of its own. */
const MIN_SHARED_PREFIX = 16;

export interface JobInput {
  images: readonly Uint8Array[];
  messages: ChatMessage[];
  sampling: SamplingOptions;
  lora: LoadedLora | null;
}

export interface JobHooks extends AnswerHooks {
  signal?: AbortSignal | undefined;
}

export interface BatchEngineOptions {
  sessions: ModelSessions;
  manifest: ModelManifest;
  text: TextParts;
  cache: KvCache;
  /** Per-row LoRA inputs; the device cache's feeds come from the GPU (device-lora.ts), hence a promise. */
  lora: Pick<LoraFeeds, 'touchesVision' | 'vision'> & {
    decoder(batch: readonly (LoadedLora | null)[]): Record<string, ort.Tensor> | Promise<Record<string, ort.Tensor>>;
  };
  prefix: PrefixCache;
  /** Image features by picture hash (+ vision adapter): a picture seen before skips the vision graph. */
  featureCache?: LruCache<string, Float32Array> | undefined;
  /**
   * Longest prefill chunk (bounds the working memory of a prefill). While other requests decode,
   * chunks are at most INTERLEAVED_CHUNK tokens, so their streams pause for one short chunk at a time.
   */
  prefillChunk: number;
  /** Loop guard for sampled answers (greedy runs are left exactly as the model decides). */
  loopGuard?: boolean;
}

type JobState = 'waiting' | 'preparing' | 'prefill' | 'decode' | 'done';

interface Job {
  readonly prepare: () => Promise<JobInput>;
  readonly hooks: JobHooks;
  readonly startedAt: number;
  readonly settle: (outcome: { ok: true; result: GenerationResult } | { ok: false; error: unknown }) => void;
  state: JobState;
  input?: JobInput;
  prompt?: EncodedPrompt;
  spans: ImageSpan[];
  loraKey: string;
  seq: SequenceId | null;
  /** The prefix to restore when the loop opens the sequence (pinned in the prefix cache). */
  match: PrefixMatch | null;
  /** The outcome, once ended; the loop releases the row, then settles. */
  outcome?: { ok: true; result: GenerationResult } | { ok: false; error: unknown };
  answer?: Answer;
  /** Prompt embeddings still to prefill ([remaining*D]) and how far the prefill got. */
  embeds?: Float32Array;
  prefilled: number;
  cached: number;
  /** Ids whose keys/values the sequence holds (prompt, then every token fed). */
  fed: number[];
  nextToken: number;
}

function cancelled(error: unknown, signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true && !(error instanceof VistyleError && error.code !== 'CANCELLED');
}

export class BatchEngine {
  private readonly o: BatchEngineOptions;
  private readonly jobs: Job[] = [];
  private readonly endIds: ReadonlySet<number>;
  private readonly hidden: number;
  private readonly vocab: number;
  private pumping = false;
  private wakeUp: (() => void) | null = null;
  private woken = false;
  private idleWaiters: Array<() => void> = [];
  private closed = false;
  /** Decode steps run and rows they carried (for logs and tests). */
  readonly stats = { decodeSteps: 0, decodeRows: 0, prefillChunks: 0, maxBatch: 0 };

  constructor(options: BatchEngineOptions) {
    this.o = { loopGuard: true, ...options };
    this.endIds = new Set([...options.manifest.tokens.eosTokenIds, ...(options.text.endTokenIds ?? [])]);
    this.hidden = options.manifest.text.hiddenSize;
    this.vocab = options.manifest.text.vocabSize;
  }

  /** Ids that end an answer (the model's EOS ids first). */
  get endTokenIds(): number[] {
    return [...this.endIds];
  }

  get capacity(): number {
    return this.o.cache.spec.capacity;
  }

  get slots(): number {
    return this.o.cache.spec.rows;
  }

  /** Requests waiting for a slot. */
  get waiting(): number {
    return this.jobs.filter((j) => j.state === 'waiting').length;
  }

  /** Requests in the engine (being prepared, prefilled or decoded, or leaving). */
  get active(): number {
    return this.jobs.filter((j) => j.state !== 'waiting').length;
  }

  /**
   * Runs a request: waits for a slot, then `prepare` resolves its input (sampling, adapter), and it
   * joins the batch. Resolves with the result (finishReason 'cancelled' when hooks.signal
   * aborted); rejects with a VistyleError.
   */
  run(prepare: () => Promise<JobInput>, hooks: JobHooks = {}): Promise<GenerationResult> {
    return new Promise<GenerationResult>((resolve, reject) => {
      const job: Job = {
        prepare,
        hooks,
        startedAt: now(),
        settle: (outcome) => (outcome.ok ? resolve(outcome.result) : reject(outcome.error)),
        state: 'waiting',
        spans: [],
        loraKey: '',
        seq: null,
        match: null,
        prefilled: 0,
        cached: 0,
        fed: [],
        nextToken: 0,
      };
      if (this.closed) {
        reject(new VistyleError('SHUTTING_DOWN', 'the engine is closed'));
        return;
      }
      this.jobs.push(job);
      hooks.signal?.addEventListener('abort', () => this.notify(), { once: true });
      this.notify();
      void this.pump();
    });
  }

  /** Wakes the loop (or makes its next sleep return at once: a wake-up is never lost). */
  private notify(): void {
    const wake = this.wakeUp;
    this.wakeUp = null;
    if (wake) wake();
    else this.woken = true;
  }

  private sleep(): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => (this.wakeUp = resolve));
  }

  /** Resolves when every request has ended. */
  drain(): Promise<void> {
    if (this.jobs.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  close(): void {
    this.closed = true;
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (;;) {
        await this.release();
        this.admit();
        await this.endCancelled();
        const prefill = this.jobs.find((j) => j.state === 'prefill');
        const decodingBefore = this.jobs.some((j) => j.state === 'decode');
        if (prefill) await this.prefillChunk(prefill, decodingBefore);
        const decoding = this.jobs.filter((j) => j.state === 'decode' && !j.hooks.signal?.aborted);
        if (decoding.length > 0) await this.decodeStep(decoding);
        if (!prefill && decoding.length === 0) {
          if (this.jobs.length === 0) return;
          if (this.jobs.some((j) => j.state === 'decode' || j.state === 'prefill' || j.state === 'done')) continue;
          await this.sleep();
        }
      }
    } finally {
      this.pumping = false;
      // a request that arrived while the loop was ending
      if (this.jobs.length > 0) void this.pump();
    }
  }

  private admit(): void {
    for (const job of this.jobs) {
      if (job.state !== 'waiting') continue;
      if (job.hooks.signal?.aborted) {
        this.settleCancelled(job);
        continue;
      }
      if (this.active >= this.slots) break;
      job.state = 'preparing';
      void this.prepare(job);
    }
  }

  private settleCancelled(job: Job): void {
    const answer = job.answer;
    if (answer) {
      answer.end('cancelled');
      this.finish(job, { ok: true, result: this.resultOf(job) });
    } else {
      this.finish(job, { ok: true, result: cancelledResult('', now() - job.startedAt) });
    }
  }

  private async endCancelled(): Promise<void> {
    for (const job of [...this.jobs]) {
      if ((job.state === 'prefill' || job.state === 'decode') && job.hooks.signal?.aborted) this.settleCancelled(job);
    }
  }

  /** Ends a request; the loop frees its row (after the prefix cache took its sequence) and settles it. */
  private finish(job: Job, outcome: { ok: true; result: GenerationResult } | { ok: false; error: unknown }): void {
    if (job.state === 'done') return;
    job.state = 'done';
    job.outcome = outcome;
    job.embeds = undefined;
    this.notify();
  }

  /** Frees the rows of ended requests and settles them. */
  private async release(): Promise<void> {
    for (const job of this.jobs.filter((j) => j.state === 'done')) {
      const outcome = job.outcome!;
      if (job.match) {
        this.o.prefix.unpin(job.match.entry);
        job.match = null;
      }
      const seq = job.seq;
      job.seq = null;
      if (seq !== null) {
        const reason = job.answer?.finishReason;
        if (outcome.ok && (reason === 'eos' || reason === 'stop' || reason === 'length')) {
          try {
            await this.remember(job, seq);
          } catch {
            // the prefix cache is an optimisation: the answer stands
          }
        }
        await this.o.cache.close([seq]);
      }
      this.jobs.splice(this.jobs.indexOf(job), 1);
      job.settle(outcome);
    }
    if (this.jobs.length === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private resultOf(job: Job): GenerationResult {
    return job.answer!.result({
      promptTokens: job.prompt?.ids.length ?? 0,
      cachedPromptTokens: job.cached,
      imageCount: job.prompt?.imageRuns.length ?? 0,
      droppedMessages: job.prompt?.droppedMessages ?? 0,
    });
  }

  private fail(job: Job, error: unknown): void {
    if (cancelled(error, job.hooks.signal)) this.settleCancelled(job);
    else this.finish(job, { ok: false, error });
  }

  // ------------------------------------------------------------------------------ preparation

  private async prepare(job: Job): Promise<void> {
    const { signal } = job.hooks;
    const check = (): void => {
      if (signal?.aborted) throw new VistyleError('CANCELLED', 'the request was cancelled');
    };
    try {
      const input = await job.prepare();
      job.input = input;
      check();
      const sampling = input.sampling;
      const capacity = this.capacity;
      // Leave room for the answer: up to maxNewTokens, but never more than a quarter of the cache.
      const answerRoom = Math.max(1, Math.min(sampling.maxNewTokens, Math.floor(capacity / 4)));
      const prompt = this.o.text.encodePrompt(input.messages, { imageCount: input.images.length, maxPromptTokens: capacity - answerRoom, capacity });
      job.prompt = prompt;
      const L = prompt.ids.length;
      if (L >= capacity) {
        throw new VistyleError('PROMPT_TOO_LONG', `the conversation is ${L} tokens; this engine holds at most ${capacity} (prompt and answer together)`, {
          details: { promptTokens: L, capacity, imageTokens: this.o.manifest.vision.imageTokens, maxImages: 0 },
        });
      }
      job.answer = new Answer({
        sampling,
        sampler: this.o.text.createSampler(sampling, prompt.ids),
        detokenizer: this.o.text.createDetokenizer(),
        endIds: this.endIds,
        loopGuard: this.o.loopGuard ?? true,
        hooks: job.hooks,
        startedAt: job.startedAt,
      });

      // What each picture's features come from (the same bytes twice: the same features).
      const lora = input.lora;
      const visionKey = this.o.lora.touchesVision(lora) ? lora!.key : '';
      const imageKeys = new Map<number, string>();
      for (const run of prompt.imageRuns) {
        if (!imageKeys.has(run.image)) imageKeys.set(run.image, `${createHash('sha256').update(input.images[run.image]!).digest('hex')}|${visionKey}`);
      }
      const N = this.o.manifest.vision.imageTokens;
      job.spans = prompt.imageRuns.map((run) => ({ start: run.start, end: run.start + N, key: imageKeys.get(run.image)! }));
      job.loraKey = lora?.key ?? '';

      // Prefix reuse: the longest cached prefix (at least the last token is computed again), pinned
      // until the loop restores it.
      const match = this.o.prefix.enabled ? this.o.prefix.lookup(prompt.ids, job.spans, job.loraKey, L - 1) : null;
      job.match = match;
      job.cached = match?.length ?? 0;
      check();

      // Features of the pictures in the part still to compute, then its embeddings.
      const hidden = this.hidden;
      const todo = prompt.imageRuns.filter((run) => run.start >= job.cached);
      const features = new Map<number, Float32Array>();
      for (const run of todo) {
        if (features.has(run.image)) continue;
        features.set(run.image, await this.features(job, input.images[run.image]!, imageKeys.get(run.image)!, lora));
        check();
      }
      const t0 = now();
      const embeds = await this.embed(prompt.ids.slice(job.cached));
      for (const run of todo) embeds.set(features.get(run.image)!, (run.start - job.cached) * hidden);
      job.answer.timings.prefillMs += now() - t0;
      job.embeds = embeds;
      job.fed = prompt.ids.slice(0, job.cached);
      check();
      job.state = 'prefill';
    } catch (error) {
      this.fail(job, error);
    } finally {
      this.notify();
    }
  }

  private async features(job: Job, image: Uint8Array, key: string, lora: LoadedLora | null): Promise<Float32Array> {
    const cached = this.o.featureCache?.get(key);
    if (cached) return cached;
    const t0 = now();
    const pixels = await this.o.text.preprocessImage(image);
    const t1 = now();
    const features = await this.encodeImage(pixels, lora);
    const timings = job.answer!.timings;
    timings.imageMs += t1 - t0;
    timings.visionMs += now() - t1;
    this.o.featureCache?.set(key, features);
    return features;
  }

  /** Runs the vision graph on one picture's pixel values; returns its features [N*D]. */
  async encodeImage(pixels: Float32Array, lora?: LoadedLora | null): Promise<Float32Array> {
    const size = this.o.manifest.vision.imageSize;
    const pixelValues = new ort.Tensor('float32', pixels, [1, 3, size, size]);
    const out = await this.o.sessions.vision.session.run({ pixel_values: pixelValues, ...this.o.lora.vision(lora) });
    const features = out.image_features;
    const expected = this.o.manifest.vision.imageTokens * this.hidden;
    if (!features || features.type !== 'float32' || (features.data as Float32Array).length !== expected) {
      throw new VistyleError('MODEL_INVALID', `vision graph returned image_features of shape [${features?.dims.join(',')}], expected [1,${this.o.manifest.vision.imageTokens},${this.hidden}]`);
    }
    return features.data as Float32Array;
  }

  /** Runs the embed graph for these ids ([rows][1] when `rows`); returns [T*D]. */
  private async embed(ids: readonly number[], rows = 1): Promise<Float32Array> {
    const inputIds = new ort.Tensor('int64', BigInt64Array.from(ids, (id) => BigInt(id)), [rows, ids.length / rows]);
    const out = await this.o.sessions.embed.session.run({ input_ids: inputIds });
    const embeds = out.inputs_embeds;
    if (!embeds || embeds.type !== 'float32') throw new VistyleError('MODEL_INVALID', 'embed graph did not return float32 inputs_embeds');
    return embeds.data as Float32Array;
  }

  // ------------------------------------------------------------------------------ the steps

  /** Runs the decoder over a bound step; returns each batch row's last-position logits. */
  private async runDecoder(binding: Awaited<ReturnType<KvCache['bindDecode']>>, embeds: Float32Array, lora: Record<string, ort.Tensor>): Promise<Float32Array[]> {
    const B = binding.batch.length;
    const T = binding.newTokens;
    const feeds: Record<string, ort.Tensor> = {
      ...binding.feeds,
      inputs_embeds: new ort.Tensor('float32', embeds, [B, T, this.hidden]),
      ...lora,
    };
    const session = this.o.sessions.decoder.session;
    const out = binding.fetches === undefined ? await session.run(feeds) : await session.run(feeds, binding.fetches);
    this.o.cache.commit(binding, feeds, out as Record<string, ort.Tensor>);
    const logits = out.logits as ort.Tensor | undefined;
    if (!logits || logits.type !== 'float32') throw new VistyleError('MODEL_INVALID', 'decoder did not return float32 logits');
    const data = logits.data as Float32Array;
    const V = this.vocab;
    const perRow = data.length / B; // V, or T*V with allPositionLogits
    return Array.from({ length: B }, (_, b) => data.subarray((b + 1) * perRow - V, (b + 1) * perRow));
  }

  private async prefillChunk(job: Job, othersDecoding: boolean): Promise<void> {
    try {
      if (job.seq === null) {
        const match = job.match;
        job.seq = await this.o.cache.open(match ? { snapshot: match.entry.snapshot, length: match.length } : undefined);
        job.match = null;
        if (match) this.o.prefix.unpin(match.entry);
      }
      const embeds = job.embeds!;
      const total = embeds.length / this.hidden;
      const remaining = total - job.prefilled;
      const T = Math.min(othersDecoding ? Math.min(this.o.prefillChunk, INTERLEAVED_CHUNK) : this.o.prefillChunk, remaining);
      const t0 = now();
      const binding = await this.o.cache.bindPrefill(job.seq!, T);
      const chunk = embeds.subarray(job.prefilled * this.hidden, (job.prefilled + T) * this.hidden);
      const [logits] = await this.runDecoder(binding, chunk, await this.o.lora.decoder([job.input!.lora]));
      this.stats.prefillChunks++;
      job.fed.push(...job.prompt!.ids.slice(job.cached + job.prefilled, job.cached + job.prefilled + T));
      job.prefilled += T;
      const answer = job.answer!;
      answer.timings.prefillMs += now() - t0;
      if (job.prefilled < total) return;
      job.embeds = undefined;
      await this.shareStylePrefix(job);
      this.afterLogits(job, logits!);
    } catch (error) {
      this.fail(job, error);
    }
  }

  /** Samples a row's next token; the job decodes on, or ends. */
  private afterLogits(job: Job, logits: Float32Array): void {
    if (job.hooks.signal?.aborted) {
      this.settleCancelled(job);
      return;
    }
    const room = this.o.cache.length(job.seq!) < this.capacity;
    const token = job.answer!.next(logits, room);
    if (token === null || job.hooks.signal?.aborted) {
      if (job.hooks.signal?.aborted) job.answer!.end('cancelled');
      this.finish(job, { ok: true, result: this.resultOf(job) });
      return;
    }
    job.nextToken = token;
    job.state = 'decode';
  }

  private async decodeStep(decoding: Job[]): Promise<void> {
    const bySeq = new Map(decoding.map((job) => [job.seq!, job]));
    try {
      const binding = await this.o.cache.bindDecode(decoding.map((job) => job.seq!));
      const rows = binding.batch.map((seq) => (seq === null ? undefined : bySeq.get(seq)));
      const embeds = await this.embed(rows.map((job) => job?.nextToken ?? 0), rows.length);
      const lora = await this.o.lora.decoder(rows.map((job) => job?.input?.lora ?? null));
      const logits = await this.runDecoder(binding, embeds, lora);
      this.stats.decodeSteps++;
      this.stats.decodeRows += decoding.length;
      this.stats.maxBatch = Math.max(this.stats.maxBatch, decoding.length);
      rows.forEach((job, b) => {
        if (!job || job.state !== 'decode') return;
        job.fed.push(job.nextToken);
        this.afterLogits(job, logits[b]!);
      });
    } catch (error) {
      for (const job of decoding) this.fail(job, error);
    }
  }

  // ------------------------------------------------------------------------------ prefix cache

  /** The text before a prompt's first picture (a style's system prompt and examples), shared. */
  private async shareStylePrefix(job: Job): Promise<void> {
    const prefix = this.o.prefix;
    const first = job.spans[0];
    if (!prefix.enabled || !first || first.start < MIN_SHARED_PREFIX) return;
    const ids = job.prompt!.ids.slice(0, first.start);
    if (prefix.covers(ids, [], job.loraKey, { sharedOnly: true })) return;
    const snapshot = await this.o.cache.snapshot(job.seq!, first.start);
    prefix.add({ ids, images: [], loraKey: job.loraKey, snapshot, shared: true });
  }

  /** A finished answer's sequence (prompt + answer): the follow-up question starts with it. */
  private async remember(job: Job, seq: SequenceId): Promise<void> {
    const prefix = this.o.prefix;
    if (!prefix.enabled) return;
    const length = this.o.cache.length(seq);
    const ids = job.fed.slice(0, length);
    if (ids.length !== length || length <= 0) return;
    if (prefix.covers(ids, job.spans, job.loraKey)) return;
    const snapshot = await this.o.cache.snapshot(seq, length);
    prefix.add({ ids, images: job.spans, loraKey: job.loraKey, snapshot, shared: false });
  }
}

