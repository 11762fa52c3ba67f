// The KV cache on the WebGPU device, for the device decoder (models/graphs/decoder-device.ts).
//
// Every cache tensor is a `gpu-buffer` tensor [rows, kvH, capacity, hd] per layer for keys and
// values. The decoder's present_* outputs are fed back as the next run's past_* inputs, so the
// keys and values never leave the device; what crosses to the host per run is what the caller
// feeds (embeddings, position ids), the per-row lengths (seqlens_k, total_sequence_length) and the
// logits. None of it depends on the context length: `hostBytes` counts it for tests and logs.
//
// Sequences: a new sequence is prefilled alone in its own [1,...] buffers (GroupQueryAttention
// takes more than one new token per run only with batch 1), then joins the decode batch, whose
// rows decode one token each per run with their own lengths (no padding, no attention mask).
// Joining, leaving (a finished row), snapshots of a prefix (prefix reuse) and restoring one are
// small device graphs (device-graphs.ts); nothing is copied through the host.
import * as ort from 'onnxruntime-node';
import { deviceCacheNames } from '../../models/graphs/decoder-device.js';
import { VistyleError } from '../errors.js';
import { disposeAll, tensorBytes, type DeviceDtype, type DeviceGraphs } from './device-graphs.js';

export interface DeviceKvShape {
  numLayers: number;
  numKvHeads: number;
  headDim: number;
  /** Positions each sequence can hold (prompt + answer). */
  capacity: number;
  dtype: DeviceDtype;
}

/** A sequence's cached prefix kept on the device: [1,kvH,length,hd] per cache tensor. */
export interface DeviceSnapshot {
  readonly length: number;
  readonly bytes: number;
  /** @internal k0, v0, k1, v1, ... */
  readonly tensors: readonly ort.Tensor[];
}

/** Bytes of host memory fed to and returned by the last decoder run (the host-visible traffic). */
export interface HostTraffic {
  in: number;
  out: number;
}

/** Host bytes of a run: every CPU input fed, every CPU output returned. */
export function hostTraffic(feeds: Readonly<Record<string, ort.Tensor>>, outputs: Readonly<Record<string, ort.Tensor>>): HostTraffic {
  const count = (values: Iterable<ort.Tensor>): number => {
    let bytes = 0;
    for (const t of values) if (t.location === 'cpu' || t.location === undefined) bytes += tensorBytes(t);
    return bytes;
  };
  return { in: count(Object.values(feeds)), out: count(Object.values(outputs)) };
}

interface Sequence {
  id: number;
  length: number;
  /** Own [1,...] buffers while prefilling; null once in the batch. */
  tensors: ort.Tensor[] | null;
}

export class DeviceKvCache {
  readonly shape: DeviceKvShape;
  private readonly graphs: DeviceGraphs;
  private readonly sequences = new Map<number, Sequence>();
  /** Sequence ids in batch-row order. */
  private batchOrder: number[] = [];
  private batch: ort.Tensor[] | null = null;
  private nextId = 1;
  private freed = false;
  /** Host bytes of the last decoder run (set by the caller through recordTraffic). */
  lastTraffic: HostTraffic = { in: 0, out: 0 };

  constructor(graphs: DeviceGraphs, shape: DeviceKvShape) {
    if (!Number.isInteger(shape.capacity) || shape.capacity <= 0) {
      throw new VistyleError('CONFIG_INVALID', `KV cache capacity must be a positive integer, got ${shape.capacity}`);
    }
    this.graphs = graphs;
    this.shape = { ...shape };
  }

  private get tensorCount(): number {
    return 2 * this.shape.numLayers;
  }

  private assertUsable(): void {
    if (this.freed) throw new VistyleError('INTERNAL', 'device KV cache used after free()');
  }

  private sequence(id: number): Sequence {
    const s = this.sequences.get(id);
    if (!s) throw new VistyleError('INTERNAL', `no device cache sequence ${id}`);
    return s;
  }

  /** Bytes one sequence's buffers take on the device. */
  get rowBytes(): number {
    const { numKvHeads, headDim, capacity, dtype } = this.shape;
    return this.tensorCount * numKvHeads * capacity * headDim * (dtype === 'float16' ? 2 : 4);
  }

  /** Bytes the cache holds on the device now (batch and prefilling rows; snapshots are the caller's). */
  get deviceBytes(): number {
    let bytes = 0;
    for (const t of this.batch ?? []) bytes += tensorBytes(t);
    for (const s of this.sequences.values()) for (const t of s.tensors ?? []) bytes += tensorBytes(t);
    return bytes;
  }

  /** Sequences in the decode batch, in row order. */
  get batchRows(): readonly number[] {
    return this.batchOrder;
  }

  length(id: number): number {
    return this.sequence(id).length;
  }

  remaining(id: number): number {
    return this.shape.capacity - this.sequence(id).length;
  }

  /** A new sequence with empty buffers, or with a snapshot's prefix already in place. */
  async open(from?: DeviceSnapshot): Promise<number> {
    this.assertUsable();
    const { numKvHeads, headDim, capacity, dtype } = this.shape;
    let tensors: ort.Tensor[];
    if (from) {
      if (from.tensors.length !== this.tensorCount) throw new VistyleError('INTERNAL', 'snapshot of another model');
      tensors = await this.graphs.widen(from.tensors, capacity);
    } else {
      tensors = await this.graphs.zeros(dtype, [1, numKvHeads, capacity, headDim], this.tensorCount);
    }
    const id = this.nextId++;
    this.sequences.set(id, { id, length: from?.length ?? 0, tensors });
    return id;
  }

  private cacheFeeds(tensors: readonly ort.Tensor[]): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    for (let i = 0; i < this.shape.numLayers; i++) {
      const n = deviceCacheNames(i);
      feeds[n.pastKey] = tensors[2 * i]!;
      feeds[n.pastValue] = tensors[2 * i + 1]!;
    }
    return feeds;
  }

  private presents(outputs: Readonly<Record<string, ort.Tensor>>): ort.Tensor[] {
    const tensors: ort.Tensor[] = [];
    for (let i = 0; i < this.shape.numLayers; i++) {
      const n = deviceCacheNames(i);
      const k = outputs[n.presentKey];
      const v = outputs[n.presentValue];
      if (!k || !v) throw new VistyleError('MODEL_INVALID', `device decoder output ${n.presentKey}/${n.presentValue} is missing`);
      if (k.location !== 'gpu-buffer' || v.location !== 'gpu-buffer') {
        throw new VistyleError('INTERNAL', `device decoder returned ${n.presentKey} in ${k.location} memory; the session must keep present_* on the device`);
      }
      tensors.push(k, v);
    }
    return tensors;
  }

  private lengthFeeds(lengths: readonly number[], newTokens: number): Record<string, ort.Tensor> {
    return {
      seqlens_k: new ort.Tensor('int32', Int32Array.from(lengths, (l) => l + newTokens - 1), [lengths.length]),
      total_sequence_length: new ort.Tensor('int32', Int32Array.from([Math.max(...lengths) + newTokens]), []),
    };
  }

  private checkRoom(length: number, newTokens: number): void {
    if (length + newTokens > this.shape.capacity) {
      throw new VistyleError('PROMPT_TOO_LONG', `the conversation needs ${length + newTokens} positions; this engine holds ${this.shape.capacity}`, {
        details: { promptTokens: length + newTokens, capacity: this.shape.capacity },
      });
    }
  }

  /** Cache feeds for `newTokens` tokens of one prefilling sequence (batch 1). */
  prefillFeeds(id: number, newTokens: number): Record<string, ort.Tensor> {
    this.assertUsable();
    const s = this.sequence(id);
    if (!s.tensors) throw new VistyleError('INTERNAL', `sequence ${id} already decodes in the batch`);
    this.checkRoom(s.length, newTokens);
    return { ...this.cacheFeeds(s.tensors), ...this.lengthFeeds([s.length], newTokens) };
  }

  /** Takes the decoder's present_* for a prefill run; the old buffers are freed. */
  commitPrefill(id: number, outputs: Readonly<Record<string, ort.Tensor>>, newTokens: number): void {
    this.assertUsable();
    const s = this.sequence(id);
    if (!s.tensors) throw new VistyleError('INTERNAL', `sequence ${id} already decodes in the batch`);
    const next = this.presents(outputs);
    disposeAll(s.tensors);
    s.tensors = next;
    s.length += newTokens;
  }

  /** The prefilled sequence joins the decode batch (its buffers are appended as the last row). */
  async join(id: number): Promise<void> {
    this.assertUsable();
    const s = this.sequence(id);
    if (!s.tensors) return;
    if (this.batch === null) {
      this.batch = s.tensors; // alone: the row's buffers are the batch, nothing copied
    } else {
      const joined = await this.graphs.concatRows(this.batch, s.tensors);
      disposeAll(this.batch);
      disposeAll(s.tensors);
      this.batch = joined;
    }
    s.tensors = null;
    this.batchOrder.push(id);
  }

  /** Cache feeds for one decode step: one new token for every sequence in the batch, in row order. */
  decodeFeeds(): Record<string, ort.Tensor> {
    this.assertUsable();
    if (!this.batch) throw new VistyleError('INTERNAL', 'decode step with an empty batch');
    const lengths = this.batchOrder.map((id) => this.sequence(id).length);
    lengths.forEach((l) => this.checkRoom(l, 1));
    return { ...this.cacheFeeds(this.batch), ...this.lengthFeeds(lengths, 1) };
  }

  commitDecode(outputs: Readonly<Record<string, ort.Tensor>>): void {
    this.assertUsable();
    if (!this.batch) throw new VistyleError('INTERNAL', 'decode step with an empty batch');
    const next = this.presents(outputs);
    disposeAll(this.batch);
    this.batch = next;
    for (const id of this.batchOrder) this.sequence(id).length += 1;
  }

  /** A snapshot of the first `length` positions of a sequence (prefilling or in the batch). */
  async snapshot(id: number, length = this.length(id)): Promise<DeviceSnapshot> {
    this.assertUsable();
    const s = this.sequence(id);
    if (length <= 0 || length > s.length) throw new VistyleError('INTERNAL', `snapshot of ${length} positions from a sequence of ${s.length}`);
    const tensors = s.tensors
      ? await this.graphs.takeRow(s.tensors, 0, length)
      : await this.graphs.takeRow(this.batch!, this.batchOrder.indexOf(id), length);
    return { length, tensors, bytes: tensors.reduce((sum, t) => sum + tensorBytes(t), 0) };
  }

  /** Forgets sequences; the batch keeps the others in order. */
  async close(ids: readonly number[]): Promise<void> {
    this.assertUsable();
    const leaving = new Set(ids.filter((id) => this.sequences.has(id)));
    if (leaving.size === 0) return;
    for (const id of leaving) {
      const s = this.sequence(id);
      if (s.tensors) disposeAll(s.tensors);
    }
    const staying = this.batchOrder.filter((id) => !leaving.has(id));
    if (staying.length !== this.batchOrder.length) {
      if (staying.length === 0) {
        disposeAll(this.batch ?? []);
        this.batch = null;
      } else {
        const keep = staying.map((id) => this.batchOrder.indexOf(id));
        const kept = await this.graphs.gatherRows(this.batch!, keep);
        disposeAll(this.batch!);
        this.batch = kept;
      }
      this.batchOrder = staying;
    }
    for (const id of leaving) this.sequences.delete(id);
  }

  /** Frees every device buffer; the cache cannot be used afterwards. */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    disposeAll(this.batch ?? []);
    this.batch = null;
    for (const s of this.sequences.values()) disposeAll(s.tensors ?? []);
    this.sequences.clear();
    this.batchOrder = [];
  }
}

export function disposeSnapshot(snapshot: DeviceSnapshot): void {
  disposeAll(snapshot.tensors);
}
