// The host (CPU) implementation of the KV cache (kv-cache.ts), paired with the decoder's window
// layout (models/graphs/decoder.ts):
//
//   keys   one buffer per layer, [rows, kvH, hd, W]   (keys after RoPE, transposed)
//   values one buffer per layer, [rows, kvH, W, hd]
//
// W, the window, is a stride common to every row: a multiple of `block` positions, room for the
// longest open sequence and the positions the next run adds to it. A decode step over rows
// 0..n-1 feeds the first n rows of each buffer as zero-copy views ([n,kvH,hd,W]); the decoder's
// MatMuls read them in place and mask the positions a row does not have (past_mask), so nothing
// is copied per step but the new positions the decoder returns, written after each row's length.
// A decode step over rows that are not 0..n-1 gives the rows in between (free, or prefilling) to
// the batch as fillers: their outputs are ignored. A prefill chunk (one row) reads exactly the
// row's cached positions instead: nothing for a first chunk (one masked position), a compact
// copy after a restored prefix or an earlier chunk, so that hundreds of new tokens do not also
// score a window of masked positions. When a sequence outgrows W, every row is moved to the
// wider stride in place (copyWithin, once per `block` tokens of the longest row); when the
// longest leaves, W shrinks back.
//
// Buffers are allocated for every row at full capacity up front; the operating system maps the
// pages only as positions are written, so memory grows with what is cached.
import * as ort from 'onnxruntime-node';
import { VistyleError } from '../errors.js';
import { tensorBytes, type HostTraffic, type KvCache, type KvCacheSpec, type KvSnapshot, type SequenceId, type StepBinding } from './kv-cache.js';

type CacheArray = Float32Array | Uint16Array;

/** Default window granularity (positions). */
export const DEFAULT_WINDOW_BLOCK = 64;

export const pastKeyName = (layer: number): string => `past_key.${layer}`;
export const pastValueName = (layer: number): string => `past_value.${layer}`;
export const newKeyName = (layer: number): string => `key.${layer}`;
export const newValueName = (layer: number): string => `value.${layer}`;

class HostSnapshot implements KvSnapshot {
  released = false;
  constructor(
    readonly length: number,
    /** Per layer: keys [kvH,hd,length], values [kvH,length,hd]. */
    readonly keys: CacheArray[],
    readonly values: CacheArray[],
    readonly bytes: number,
  ) {}
}

interface HostBinding extends StepBinding {
  /** Row of each batch index (fillers included), and each row's length when bound. */
  readonly rows: readonly number[];
  readonly starts: readonly number[];
  readonly window: number;
  /** Bytes copied into the feeds (a prefill's compact past). */
  readonly copiedBytes?: number;
}

export interface HostKvCacheOptions {
  spec: KvCacheSpec;
  /** Window granularity in positions (default 64). */
  block?: number;
}

export class HostKvCache implements KvCache {
  readonly spec: KvCacheSpec;
  private readonly block: number;
  private readonly keys: CacheArray[];
  private readonly values: CacheArray[];
  /** Length of each row's sequence; -1 when the row is free. */
  private readonly lengths: number[];
  private readonly rowOf = new Map<SequenceId, number>();
  private readonly idOf: (SequenceId | undefined)[];
  private window: number;
  private zeros: CacheArray | undefined;
  private nextId = 1;
  private freed = false;
  lastTraffic: HostTraffic = { in: 0, out: 0 };
  /** Times the rows were moved to another window (for tests and logs). */
  restrides = 0;

  constructor(options: HostKvCacheOptions) {
    const spec = options.spec;
    if (!Number.isInteger(spec.capacity) || spec.capacity <= 0) {
      throw new VistyleError('CONFIG_INVALID', `KV cache capacity must be a positive integer, got ${spec.capacity}`);
    }
    if (!Number.isInteger(spec.rows) || spec.rows <= 0) {
      throw new VistyleError('CONFIG_INVALID', `KV cache rows must be a positive integer, got ${spec.rows}`);
    }
    this.spec = { ...spec };
    this.block = options.block ?? DEFAULT_WINDOW_BLOCK;
    const maxWindow = this.roundUp(spec.capacity);
    const size = spec.rows * spec.numKvHeads * spec.headDim * maxWindow;
    const make = (): CacheArray => (spec.dtype === 'float32' ? new Float32Array(size) : new Uint16Array(size));
    this.keys = Array.from({ length: spec.numLayers }, make);
    this.values = Array.from({ length: spec.numLayers }, make);
    this.lengths = new Array(spec.rows).fill(-1);
    this.idOf = new Array(spec.rows).fill(undefined);
    this.window = this.block;
  }

  private roundUp(positions: number): number {
    return Math.max(this.block, Math.ceil(positions / this.block) * this.block);
  }

  private assertUsable(): void {
    if (this.freed) throw new VistyleError('INTERNAL', 'KV cache used after free()');
  }

  private row(id: SequenceId): number {
    const row = this.rowOf.get(id);
    if (row === undefined) throw new VistyleError('INTERNAL', `no KV cache sequence ${id}`);
    return row;
  }

  /** The window the rows are laid out at now. */
  get currentWindow(): number {
    return this.window;
  }

  get freeRows(): number {
    return this.lengths.filter((l) => l < 0).length;
  }

  length(id: SequenceId): number {
    return this.lengths[this.row(id)]!;
  }

  /** Row index of a sequence (for tests). */
  rowIndex(id: SequenceId): number {
    return this.row(id);
  }

  async open(from?: { snapshot: KvSnapshot; length?: number }): Promise<SequenceId> {
    this.assertUsable();
    const row = this.lengths.findIndex((l) => l < 0);
    if (row < 0) throw new VistyleError('INTERNAL', `every one of the ${this.spec.rows} KV cache rows is in use`);
    let length = 0;
    let snapshot: HostSnapshot | undefined;
    if (from) {
      if (!(from.snapshot instanceof HostSnapshot) || from.snapshot.released) throw new VistyleError('INTERNAL', 'not a live host KV snapshot');
      snapshot = from.snapshot;
      length = from.length ?? snapshot.length;
      if (!Number.isInteger(length) || length < 0 || length > snapshot.length || length > this.spec.capacity) {
        throw new VistyleError('INTERNAL', `restoring ${length} positions of a ${snapshot.length}-position snapshot`);
      }
    }
    const id = this.nextId++;
    this.lengths[row] = 0;
    this.rowOf.set(id, row);
    this.idOf[row] = id;
    if (snapshot && length > 0) {
      this.fitWindow(Math.max(length, this.longest()));
      this.restore(row, snapshot, length);
      this.lengths[row] = length;
    }
    return id;
  }

  async close(ids: readonly SequenceId[]): Promise<void> {
    this.assertUsable();
    for (const id of ids) {
      const row = this.rowOf.get(id);
      if (row === undefined) continue;
      this.rowOf.delete(id);
      this.idOf[row] = undefined;
      this.lengths[row] = -1;
    }
    // the longest sequence left: narrow the window again (with a block of slack, so that a row
    // near a block boundary does not move back and forth)
    const fit = this.roundUp(this.longest());
    if (fit + this.block < this.window) this.moveTo(fit);
  }

  private longest(): number {
    return Math.max(0, ...this.lengths);
  }

  /** Grows the window to hold `positions` (never shrinks). */
  private fitWindow(positions: number): void {
    const needed = this.roundUp(positions);
    if (needed > this.window) this.moveTo(needed);
  }

  /** Moves every open row to stride `next`, in place. */
  private moveTo(next: number): void {
    const prev = this.window;
    if (next === prev) return;
    const { rows, numKvHeads: kvH, headDim: hd } = this.spec;
    const grow = next > prev;
    // Growing moves data to higher offsets: go from the last block down so nothing is
    // overwritten before it moved; shrinking goes the other way.
    const order = (n: number): number[] => (grow ? Array.from({ length: n }, (_, i) => n - 1 - i) : Array.from({ length: n }, (_, i) => i));
    for (let layer = 0; layer < this.spec.numLayers; layer++) {
      const K = this.keys[layer]!;
      const V = this.values[layer]!;
      for (const r of order(rows)) {
        const len = this.lengths[r]!;
        if (len <= 0) continue;
        for (const h of order(kvH)) {
          for (const d of order(hd)) {
            const line = (r * kvH + h) * hd + d;
            K.copyWithin(line * next, line * prev, line * prev + len);
          }
          const block = r * kvH + h;
          V.copyWithin(block * next * hd, block * prev * hd, (block * prev + len) * hd);
        }
      }
    }
    this.window = next;
    this.restrides++;
  }

  private checkRoom(id: SequenceId, length: number, newTokens: number): void {
    if (length + newTokens > this.spec.capacity) {
      throw new VistyleError('PROMPT_TOO_LONG', `the conversation needs ${length + newTokens} positions; this engine holds ${this.spec.capacity}`, {
        details: { promptTokens: length + newTokens, capacity: this.spec.capacity, sequence: id },
      });
    }
  }

  private views(fromRow: number, count: number): Record<string, ort.Tensor> {
    const { numKvHeads: kvH, headDim: hd, dtype } = this.spec;
    const W = this.window;
    const rowSize = kvH * hd * W;
    const feeds: Record<string, ort.Tensor> = {};
    for (let layer = 0; layer < this.spec.numLayers; layer++) {
      const k = this.keys[layer]!.subarray(fromRow * rowSize, (fromRow + count) * rowSize);
      const v = this.values[layer]!.subarray(fromRow * rowSize, (fromRow + count) * rowSize);
      feeds[pastKeyName(layer)] = new ort.Tensor(dtype, k, [count, kvH, hd, W]);
      feeds[pastValueName(layer)] = new ort.Tensor(dtype, v, [count, kvH, W, hd]);
    }
    return feeds;
  }

  async bindPrefill(id: SequenceId, newTokens: number): Promise<StepBinding> {
    this.assertUsable();
    const row = this.row(id);
    const length = this.lengths[row]!;
    if (!Number.isInteger(newTokens) || newTokens < 1) throw new VistyleError('INTERNAL', `prefill of ${newTokens} tokens`);
    this.checkRoom(id, length, newTokens);
    // the new positions are written after the cached ones, inside the row's stride
    this.fitWindow(Math.max(this.longest(), length + newTokens));
    const positions = BigInt64Array.from({ length: newTokens }, (_, i) => BigInt(length + i));
    // A prefill attends to exactly the cached positions: a view of the row's window would make
    // every new token score the whole window too (at least the chunk's own positions, masked).
    // Nothing cached (the usual first chunk): one masked position. Otherwise a compact copy of
    // the cached positions, once per chunk (a chunk is hundreds of tokens of compute).
    const past = length === 0 ? this.emptyPast() : this.compactPast(row, length);
    const binding: HostBinding = {
      kind: 'prefill',
      batch: [id],
      newTokens,
      rows: [row],
      starts: [length],
      window: this.window,
      copiedBytes: past.copied,
      feeds: {
        position_ids: new ort.Tensor('int64', positions, [1, newTokens]),
        past_mask: new ort.Tensor('int64', new BigInt64Array(Math.max(1, length)).fill(length === 0 ? 0n : 1n), [1, Math.max(1, length)]),
        ...past.feeds,
      },
    };
    return binding;
  }

  private emptyPast(): { feeds: Record<string, ort.Tensor>; copied: number } {
    const { numKvHeads: kvH, headDim: hd, dtype } = this.spec;
    this.zeros ??= dtype === 'float32' ? new Float32Array(kvH * hd) : new Uint16Array(kvH * hd);
    const feeds: Record<string, ort.Tensor> = {};
    for (let layer = 0; layer < this.spec.numLayers; layer++) {
      feeds[pastKeyName(layer)] = new ort.Tensor(dtype, this.zeros, [1, kvH, hd, 1]);
      feeds[pastValueName(layer)] = new ort.Tensor(dtype, this.zeros, [1, kvH, 1, hd]);
    }
    return { feeds, copied: 0 };
  }

  private compactPast(row: number, n: number): { feeds: Record<string, ort.Tensor>; copied: number } {
    const { numKvHeads: kvH, headDim: hd, dtype } = this.spec;
    const { keys, values } = this.copyRow(row, n);
    const feeds: Record<string, ort.Tensor> = {};
    keys.forEach((k, layer) => {
      feeds[pastKeyName(layer)] = new ort.Tensor(dtype, k, [1, kvH, hd, n]);
      feeds[pastValueName(layer)] = new ort.Tensor(dtype, values[layer]!, [1, kvH, n, hd]);
    });
    return { feeds, copied: keys.reduce((sum, k) => sum + k.byteLength, 0) * 2 };
  }

  async bindDecode(ids: readonly SequenceId[]): Promise<StepBinding> {
    this.assertUsable();
    if (ids.length === 0) throw new VistyleError('INTERNAL', 'decode step with no sequences');
    const wanted = new Set(ids.map((id) => this.row(id)));
    for (const id of ids) this.checkRoom(id, this.length(id), 1);
    this.fitWindow(this.longest() + 1);
    const W = this.window;
    const B = Math.max(...wanted) + 1;
    const mask = new BigInt64Array(B * W);
    const positions = new BigInt64Array(B);
    const batch: (SequenceId | null)[] = [];
    const rows: number[] = [];
    const starts: number[] = [];
    for (let r = 0; r < B; r++) {
      rows.push(r);
      const length = Math.max(0, this.lengths[r]!);
      starts.push(length);
      if (wanted.has(r)) {
        batch.push(this.idOf[r]!);
        mask.fill(1n, r * W, r * W + length);
        positions[r] = BigInt(length);
      } else {
        batch.push(null); // a filler: sees nothing cached, writes nothing
      }
    }
    const binding: HostBinding = {
      kind: 'decode',
      batch,
      newTokens: 1,
      rows,
      starts,
      window: W,
      feeds: {
        position_ids: new ort.Tensor('int64', positions, [B, 1]),
        past_mask: new ort.Tensor('int64', mask, [B, W]),
        ...this.views(0, B),
      },
    };
    return binding;
  }

  commit(binding: StepBinding, feeds: Readonly<Record<string, ort.Tensor>>, outputs: Readonly<Record<string, ort.Tensor>>): void {
    this.assertUsable();
    const b = binding as HostBinding;
    if (b.window !== this.window) throw new VistyleError('INTERNAL', 'KV cache binding committed after the window moved');
    const { numKvHeads: kvH, headDim: hd, dtype } = this.spec;
    const W = this.window;
    const T = b.newTokens;
    for (let layer = 0; layer < this.spec.numLayers; layer++) {
      const keyOut = outputs[newKeyName(layer)];
      const valueOut = outputs[newValueName(layer)];
      if (!keyOut || !valueOut) throw new VistyleError('MODEL_INVALID', `decoder output ${newKeyName(layer)}/${newValueName(layer)} is missing`);
      if (keyOut.type !== dtype || valueOut.type !== dtype) {
        throw new VistyleError('MODEL_INVALID', `decoder output ${newKeyName(layer)} is ${keyOut.type}, the cache is ${dtype}`);
      }
      const expected = b.batch.length * kvH * hd * T;
      if ((keyOut.data as CacheArray).length !== expected || (valueOut.data as CacheArray).length !== expected) {
        throw new VistyleError('MODEL_INVALID', `decoder output ${newKeyName(layer)} has shape [${keyOut.dims.join(',')}], expected [${b.batch.length},${kvH},${hd},${T}]`);
      }
      const newKeys = keyOut.data as CacheArray; // [B,kvH,hd,T]
      const newValues = valueOut.data as CacheArray; // [B,kvH,T,hd]
      const K = this.keys[layer]!;
      const V = this.values[layer]!;
      b.batch.forEach((id, i) => {
        if (id === null || this.rowOf.get(id) !== b.rows[i]) return; // filler, or closed meanwhile
        const r = b.rows[i]!;
        const at = b.starts[i]!;
        for (let h = 0; h < kvH; h++) {
          const lineBase = (r * kvH + h) * hd;
          const srcBase = (i * kvH + h) * hd;
          if (T === 1) {
            for (let d = 0; d < hd; d++) K[(lineBase + d) * W + at] = newKeys[srcBase + d]!;
          } else {
            for (let d = 0; d < hd; d++) K.set(newKeys.subarray((srcBase + d) * T, (srcBase + d + 1) * T), (lineBase + d) * W + at);
          }
          V.set(newValues.subarray((i * kvH + h) * T * hd, (i * kvH + h + 1) * T * hd), ((r * kvH + h) * W + at) * hd);
        }
      });
    }
    b.batch.forEach((id, i) => {
      if (id !== null && this.rowOf.get(id) === b.rows[i]) this.lengths[b.rows[i]!] = b.starts[i]! + T;
    });
    // Host-visible bytes: everything fed but the zero-copy cache views, everything returned.
    let bytesIn = b.copiedBytes ?? 0;
    for (const [name, tensor] of Object.entries(feeds)) if (!name.startsWith('past_key.') && !name.startsWith('past_value.')) bytesIn += tensorBytes(tensor);
    let bytesOut = 0;
    for (const tensor of Object.values(outputs)) bytesOut += tensorBytes(tensor);
    this.lastTraffic = { in: bytesIn, out: bytesOut };
  }

  async snapshot(id: SequenceId, length?: number): Promise<KvSnapshot> {
    this.assertUsable();
    const row = this.row(id);
    const n = length ?? this.lengths[row]!;
    if (!Number.isInteger(n) || n <= 0 || n > this.lengths[row]!) {
      throw new VistyleError('INTERNAL', `snapshot of ${n} positions from a sequence of ${this.lengths[row]}`);
    }
    const { keys, values } = this.copyRow(row, n);
    const bytes = keys.reduce((s, a) => s + a.byteLength, 0) * 2;
    return new HostSnapshot(n, keys, values, bytes);
  }

  /** The first n positions of a row, compact: per layer keys [kvH,hd,n], values [kvH,n,hd]. */
  private copyRow(row: number, n: number): { keys: CacheArray[]; values: CacheArray[] } {
    const { numKvHeads: kvH, headDim: hd, dtype } = this.spec;
    const W = this.window;
    const make = (): CacheArray => (dtype === 'float32' ? new Float32Array(kvH * hd * n) : new Uint16Array(kvH * hd * n));
    const keys: CacheArray[] = [];
    const values: CacheArray[] = [];
    for (let layer = 0; layer < this.spec.numLayers; layer++) {
      const K = this.keys[layer]!;
      const V = this.values[layer]!;
      const k = make();
      const v = make();
      for (let h = 0; h < kvH; h++) {
        for (let d = 0; d < hd; d++) {
          const line = (row * kvH + h) * hd + d;
          k.set(K.subarray(line * W, line * W + n), (h * hd + d) * n);
        }
        const block = row * kvH + h;
        v.set(V.subarray(block * W * hd, (block * W + n) * hd), h * n * hd);
      }
      keys.push(k);
      values.push(v);
    }
    return { keys, values };
  }

  private restore(row: number, snapshot: HostSnapshot, n: number): void {
    const { numKvHeads: kvH, headDim: hd } = this.spec;
    const W = this.window;
    const L = snapshot.length;
    for (let layer = 0; layer < this.spec.numLayers; layer++) {
      const K = this.keys[layer]!;
      const V = this.values[layer]!;
      const k = snapshot.keys[layer]!;
      const v = snapshot.values[layer]!;
      for (let h = 0; h < kvH; h++) {
        for (let d = 0; d < hd; d++) {
          const line = (row * kvH + h) * hd + d;
          K.set(k.subarray((h * hd + d) * L, (h * hd + d) * L + n), line * W);
        }
        V.set(v.subarray(h * L * hd, (h * L + n) * hd), (row * kvH + h) * W * hd);
      }
    }
  }

  releaseSnapshot(snapshot: KvSnapshot): void {
    if (snapshot instanceof HostSnapshot) snapshot.released = true; // the garbage collector frees it
  }

  free(): void {
    this.freed = true;
    this.rowOf.clear();
    this.lengths.fill(-1);
  }
}
