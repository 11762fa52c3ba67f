// The decoder's key/value cache and the batch of sequences that decode together: one interface
// for the host (typed arrays, CPU) and the device (WebGPU gpu-buffer tensors) implementations.
//
// What the engine does with it, and nothing more (the sampler, the decode loop and the scheduler
// never learn where the cache lives):
//
//   const id = await cache.open();                   // a sequence (batch row); or open({ snapshot, length })
//   const b = await cache.bindPrefill(id, 256);      // one chunk of one sequence's prompt (batch 1)
//   const out = await session.run({ ...b.feeds, inputs_embeds, ...lora }, b.fetches);
//   cache.commit(b, feeds, out);                     // the chunk's keys/values are now cached
//   const d = await cache.bindDecode([id, other]);   // one new token for each of these sequences
//   // d.batch says which sequence each batch index of the run computes (null: filler, ignore it)
//   ...run, commit...
//   const s = await cache.snapshot(id, n);           // the first n positions, kept apart (prefix reuse)
//   await cache.close([id]);                         // the row's space is reused at once
//
// Design constraints both implementations meet:
// - Sequences have their own lengths; position ids come from those lengths (`bindDecode` and
//   `bindPrefill` return them in `feeds`), so rows of different lengths decode in one run.
// - A decode step runs one decoder call over the sequences asked for. An implementation may pad
//   the batch with fillers (host: a free or prefilling row between busy ones) or compact it
//   (device: gather rows with a small graph when one leaves). `StepBinding.batch` tells the engine
//   the order it must lay inputs_embeds and the per-row LoRA inputs out in; a filler gets any
//   embedding and the zero LoRA row, and its outputs are ignored.
// - A prefill chunk is one sequence alone (batch 1), so prefills run between decode steps
//   without touching the batch: GroupQueryAttention (device) takes several new tokens only with
//   batch 1, and a host row is a contiguous view of its own.
// - Nothing here makes the engine copy the past from JS per step: the host feeds zero-copy views
//   of its buffers, the device feeds back the gpu-buffer outputs of the previous run. The host
//   cannot read or write a gpu-buffer from JS at all, which is why open (restore), close (row
//   moves), snapshot and joining the batch are async: the device does them with small graphs.
// - `lastTraffic` counts host-visible bytes of the last run (what was copied in and out of host
//   memory): on the device it must not grow with the context length (tests/webgpu checks it).
// - Snapshots are independent of rows: they survive the sequence they came from, know their byte
//   size (the prefix LRU is bounded in bytes) and must be released (device memory is not GC'd).
//
// The host implementation and the decoder layout it pairs with are in kv-host.ts and
// models/graphs/decoder.ts; the device ones in device-kv-cache.ts and models/graphs/decoder-device.ts.
import type * as ort from 'onnxruntime-node';

export type CacheDtype = 'float32' | 'float16';

/** A handle on one sequence in the cache (a batch row while it is open). */
export type SequenceId = number;

export interface KvCacheSpec {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /** Positions one sequence can hold (prompt + answer). */
  capacity: number;
  /** Sequences that can be open at once (the engine's slots). */
  rows: number;
  dtype: CacheDtype;
}

/** Host bytes that crossed for the last decoder run: fed from host memory, and returned to it. */
export interface HostTraffic {
  in: number;
  out: number;
}

/** The cache's part of one decoder run. */
export interface StepBinding {
  readonly kind: 'prefill' | 'decode';
  /** Sequence computed at each batch index of the run, in order; null is a filler. */
  readonly batch: readonly (SequenceId | null)[];
  /** New positions per batch row (1 for decode; the chunk length for prefill). */
  readonly newTokens: number;
  /** The cache's inputs: past keys/values, masks or lengths, position_ids. */
  readonly feeds: Readonly<Record<string, ort.Tensor>>;
  /** Outputs to fetch (names, or preallocated tensors); undefined fetches every output. */
  readonly fetches?: ort.InferenceSession.FetchesType;
}

/** The first `length` positions of a sequence, kept apart from the rows. */
export interface KvSnapshot {
  readonly length: number;
  /** Memory it holds (host or device), for the prefix cache's byte budget. */
  readonly bytes: number;
}

export interface KvCache {
  readonly spec: KvCacheSpec;
  /** Sequences that can still be opened. */
  readonly freeRows: number;
  /** Host-visible bytes of the last committed run. */
  readonly lastTraffic: HostTraffic;
  /**
   * A new sequence: empty, or holding the first `length` positions of a snapshot (default: all of
   * them). Throws INTERNAL when no row is free (the engine checks freeRows first).
   */
  open(from?: { snapshot: KvSnapshot; length?: number }): Promise<SequenceId>;
  /** Ends sequences; their rows are free at once. Unknown ids are ignored. */
  close(ids: readonly SequenceId[]): Promise<void>;
  /** Positions cached for a sequence. */
  length(id: SequenceId): number;
  /** Cache feeds for `newTokens` prompt tokens of one sequence (batch 1). PROMPT_TOO_LONG past capacity. */
  bindPrefill(id: SequenceId, newTokens: number): Promise<StepBinding>;
  /** Cache feeds for one new token of each of these sequences. PROMPT_TOO_LONG past capacity. */
  bindDecode(ids: readonly SequenceId[]): Promise<StepBinding>;
  /**
   * Takes the decoder's outputs for a bound run: the new positions become part of each sequence
   * (fillers excepted), and `lastTraffic` is set from `feeds` (everything the run was fed) and
   * `outputs`.
   */
  commit(binding: StepBinding, feeds: Readonly<Record<string, ort.Tensor>>, outputs: Readonly<Record<string, ort.Tensor>>): void;
  /** The first `length` positions of a sequence (default: all), as an independent snapshot. */
  snapshot(id: SequenceId, length?: number): Promise<KvSnapshot>;
  /** Frees a snapshot's memory; it cannot be used afterwards. */
  releaseSnapshot(snapshot: KvSnapshot): void;
  /** Frees everything; the cache cannot be used afterwards. */
  free(): void;
}

/** Bytes of a tensor's data. */
export function tensorBytes(tensor: ort.Tensor): number {
  const bytesPer = tensor.type === 'float16' || tensor.type === 'int16' || tensor.type === 'uint16' ? 2
    : tensor.type === 'int64' || tensor.type === 'uint64' || tensor.type === 'float64' ? 8
    : tensor.type === 'int8' || tensor.type === 'uint8' || tensor.type === 'bool' ? 1
    : 4;
  return tensor.dims.reduce((a, b) => a * b, 1) * bytesPer;
}

/** Bytes one position of one sequence takes in a cache of this spec (keys and values, every layer). */
export function bytesPerPosition(spec: Pick<KvCacheSpec, 'numLayers' | 'numKvHeads' | 'headDim' | 'dtype'>): number {
  return spec.numLayers * 2 * spec.numKvHeads * spec.headDim * (spec.dtype === 'float32' ? 4 : 2);
}

/** Bytes the rows of a cache of this spec can hold at most (every row full). */
export function kvCacheBytes(spec: KvCacheSpec): number {
  return bytesPerPosition(spec) * spec.capacity * spec.rows;
}

