// TEMPORARY: the engine's cache interface as drafted on branch `engine` (src/engine/kv-cache.ts),
// mirrored so the device cache can be written against it before that branch is merged. Replaced
// by imports from kv-cache.ts at the merge; nothing else imports this file.
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

