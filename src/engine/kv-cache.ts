// The decoder's key/value cache, owned by TypeScript.
//
// Layout per layer: [maxLen, 2, B, kvH, hd] (sequence-major), so the filled part of the buffer is
// a contiguous prefix. onnxruntime-node passes CPU inputs as zero-copy views of JS memory, so
// `past.<i>` is fed as a view (subarray) of that prefix; the decoder returns only the new
// positions (`present.<i>` [T, 2, B, kvH, hd]) and append() writes them in place after it. Per-step
// host work is therefore proportional to the new tokens, never to the sequence length.
//
// The generator only sees the KvCache interface, so a device-resident backend (WebGPU
// `gpu-buffer` outputs kept with preferredOutputLocation) can implement it without touching the
// sampler or the decode loop.
import * as ort from 'onnxruntime-node';
import { VistyleError } from '../errors.js';

export type CacheDtype = 'float32' | 'float16';

export interface KvCacheShape {
  numLayers: number;
  /** Batch rows (the engine uses 1). */
  batch: number;
  numKvHeads: number;
  headDim: number;
  /** Positions the buffers hold. */
  capacity: number;
  dtype: CacheDtype;
}

export interface KvCache {
  readonly shape: KvCacheShape;
  /** Positions filled so far. */
  readonly length: number;
  /** Positions still free. */
  readonly remaining: number;
  /** `past.<i>` feeds for the next decoder run: views of the filled prefix. */
  pastFeeds(): Record<string, ort.Tensor>;
  /** Writes the decoder's `present.<i>` outputs (the new positions only) after the filled prefix. */
  append(outputs: Readonly<Record<string, ort.Tensor>>): void;
  /** Forgets every position (the buffers stay allocated for the next request). */
  reset(): void;
  /** Releases the buffers; the cache cannot be used afterwards. */
  free(): void;
}

type CacheArray = Float32Array | Uint16Array;

/** Bytes one cache of this shape holds, for logging and for choosing maxContextTokens. */
export function kvCacheBytes(shape: KvCacheShape): number {
  const bytesPerValue = shape.dtype === 'float32' ? 4 : 2;
  return shape.numLayers * shape.capacity * 2 * shape.batch * shape.numKvHeads * shape.headDim * bytesPerValue;
}

/** The CPU (host memory) cache: one preallocated typed array per layer. */
export class HostKvCache implements KvCache {
  readonly shape: KvCacheShape;
  private buffers: CacheArray[];
  private filled = 0;
  private freed = false;
  /** Values per position: 2 * B * kvH * hd. */
  private readonly rowSize: number;

  constructor(shape: KvCacheShape) {
    if (!Number.isInteger(shape.capacity) || shape.capacity <= 0) {
      throw new VistyleError('CONFIG_INVALID', `KV cache capacity must be a positive integer, got ${shape.capacity}`);
    }
    this.shape = { ...shape };
    this.rowSize = 2 * shape.batch * shape.numKvHeads * shape.headDim;
    const size = shape.capacity * this.rowSize;
    this.buffers = Array.from({ length: shape.numLayers }, () =>
      shape.dtype === 'float32' ? new Float32Array(size) : new Uint16Array(size),
    );
  }

  get length(): number {
    return this.filled;
  }

  get remaining(): number {
    return this.shape.capacity - this.filled;
  }

  private assertUsable(): void {
    if (this.freed) throw new VistyleError('INTERNAL', 'KV cache used after free()');
  }

  pastFeeds(): Record<string, ort.Tensor> {
    this.assertUsable();
    const { batch, numKvHeads, headDim, dtype } = this.shape;
    const dims = [this.filled, 2, batch, numKvHeads, headDim];
    const end = this.filled * this.rowSize;
    const feeds: Record<string, ort.Tensor> = {};
    this.buffers.forEach((buffer, layer) => {
      feeds[`past.${layer}`] = new ort.Tensor(dtype, buffer.subarray(0, end), dims);
    });
    return feeds;
  }

  append(outputs: Readonly<Record<string, ort.Tensor>>): void {
    this.assertUsable();
    let added: number | undefined;
    this.buffers.forEach((buffer, layer) => {
      const present = outputs[`present.${layer}`];
      if (!present) throw new VistyleError('INTERNAL', `decoder output present.${layer} is missing`);
      if (present.type !== this.shape.dtype) {
        throw new VistyleError('MODEL_INVALID', `decoder output present.${layer} is ${present.type}, the cache is ${this.shape.dtype}`);
      }
      const values = present.data as CacheArray;
      const positions = present.dims[0] ?? 0;
      if (values.length !== positions * this.rowSize) {
        throw new VistyleError('MODEL_INVALID', `decoder output present.${layer} has shape [${present.dims.join(',')}], expected [T,2,${this.shape.batch},${this.shape.numKvHeads},${this.shape.headDim}]`);
      }
      if (added !== undefined && positions !== added) {
        throw new VistyleError('MODEL_INVALID', `decoder outputs disagree on the number of new positions (${added} vs ${positions})`);
      }
      added = positions;
      if (this.filled + positions > this.shape.capacity) {
        throw new VistyleError('PROMPT_TOO_LONG', `the conversation needs more than the ${this.shape.capacity} positions the KV cache holds`);
      }
      // Contiguous copy of only the new rows.
      buffer.set(values, this.filled * this.rowSize);
    });
    this.filled += added ?? 0;
  }

  /**
   * Pre-allocated `present.<i>` fetches: views of the `newTokens` rows right after the filled
   * prefix, for onnxruntime to write into (then commit(newTokens) marks them filled without a
   * copy). onnxruntime-node honours pre-allocated fetches, but still copies each output into a new
   * ArrayBuffer for the result it returns, so this saves no copy; bench/ measures it against
   * append(). Not used by the generator.
   */
  presentFetches(newTokens: number): Record<string, ort.Tensor> {
    this.assertUsable();
    if (this.filled + newTokens > this.shape.capacity) {
      throw new VistyleError('PROMPT_TOO_LONG', `the conversation needs more than the ${this.shape.capacity} positions the KV cache holds`);
    }
    const { batch, numKvHeads, headDim, dtype } = this.shape;
    const start = this.filled * this.rowSize;
    const end = start + newTokens * this.rowSize;
    const fetches: Record<string, ort.Tensor> = {};
    this.buffers.forEach((buffer, layer) => {
      fetches[`present.${layer}`] = new ort.Tensor(dtype, buffer.subarray(start, end), [newTokens, 2, batch, numKvHeads, headDim]);
    });
    return fetches;
  }

  /** Marks rows written through presentFetches() as filled. */
  commit(newTokens: number): void {
    this.assertUsable();
    if (this.filled + newTokens > this.shape.capacity) throw new VistyleError('INTERNAL', 'KV cache commit past its capacity');
    this.filled += newTokens;
  }

  reset(): void {
    this.filled = 0;
  }

  free(): void {
    this.filled = 0;
    this.freed = true;
    this.buffers = [];
  }
}
