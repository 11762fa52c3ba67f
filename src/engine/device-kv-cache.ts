// The KV cache on the WebGPU device (the engine's KvCache interface, kv-cache.ts), for the device
// decoder (models/graphs/decoder-device.ts).
//
// Every cache tensor is a `gpu-buffer` tensor [rows, kvH, capacity, hd], keys and values of each
// layer. The decoder's present_* outputs are fed back as the next run's past_* inputs, so keys
// and values never leave the device; what crosses to the host per run is what the engine feeds
// (embeddings, LoRA rows), the position ids and per-row lengths this cache feeds, and the logits.
// None of it depends on the context length (`lastTraffic` counts it).
//
// Sequences: a sequence is prefilled alone in its own [1,...] buffers (GroupQueryAttention takes
// more than one new token per run only with batch 1), and joins the decode batch at its first
// decode step. Batch rows decode one token each per run with their own lengths (no padding, no
// attention mask). A batch row the engine does not ask for is a filler: it is fed its own length,
// GroupQueryAttention writes a throw-away key/value at its next free position (overwritten by its
// next real step) and its length does not move. Joining (Concat), leaving (Gather), snapshots of a
// prefix (Slice) and restoring one (Slice + Concat with zeros) are small device graphs
// (device-graphs.ts); nothing is copied through the host. Without rows to reuse, one sequence alone
// decodes in its own buffers (joining an empty batch copies nothing).
//
// Prefill chunks are at most `maxPrefillTokens` (the start-up attention check): a longer request
// gets a binding for fewer tokens, and the engine feeds `binding.newTokens` embeddings.
import * as ort from 'onnxruntime-node';
import { deviceCacheNames } from '../../models/graphs/decoder-device.js';
import { VistyleError } from '../errors.js';
import { disposeAll, type DeviceGraphs } from './device-graphs.js';
import { tensorBytes, type HostTraffic, type KvCache, type KvCacheSpec, type KvSnapshot, type SequenceId, type StepBinding } from './kv-cache.js';

/** Host bytes of a run: every host-memory input fed, every host-memory output returned. */
export function hostTraffic(feeds: Readonly<Record<string, ort.Tensor>>, outputs: Readonly<Record<string, ort.Tensor>>): HostTraffic {
  const count = (values: Iterable<ort.Tensor>): number => {
    let bytes = 0;
    for (const t of values) if (t.location === 'cpu' || t.location === undefined) bytes += tensorBytes(t);
    return bytes;
  };
  return { in: count(Object.values(feeds)), out: count(Object.values(outputs)) };
}

interface Sequence {
  id: SequenceId;
  length: number;
  /** Own [1,...] buffers while prefilling; null once in the batch. */
  tensors: ort.Tensor[] | null;
}

interface DeviceSnapshot extends KvSnapshot {
  readonly owner: DeviceKvCache;
  /** [1,kvH,length,hd]: k0, v0, k1, v1, ... */
  tensors: ort.Tensor[] | null;
}

interface DeviceBinding extends StepBinding {
  readonly serial: number;
}

export interface DeviceKvCacheOptions {
  /** Longest prefill chunk (GroupQueryAttention prefill is checked per adapter at start-up). */
  maxPrefillTokens?: number;
}

export class DeviceKvCache implements KvCache {
  readonly spec: KvCacheSpec;
  readonly maxPrefillTokens: number;
  lastTraffic: HostTraffic = { in: 0, out: 0 };
  private readonly graphs: DeviceGraphs;
  private readonly sequences = new Map<SequenceId, Sequence>();
  /** Sequence ids in batch-row order. */
  private batchOrder: SequenceId[] = [];
  private batch: ort.Tensor[] | null = null;
  private nextId = 1;
  private serial = 0;
  private freed = false;

  constructor(graphs: DeviceGraphs, spec: KvCacheSpec, options: DeviceKvCacheOptions = {}) {
    for (const [name, value] of [['capacity', spec.capacity], ['rows', spec.rows]] as const) {
      if (!Number.isInteger(value) || value <= 0) throw new VistyleError('CONFIG_INVALID', `KV cache ${name} must be a positive integer, got ${value}`);
    }
    this.graphs = graphs;
    this.spec = { ...spec };
    this.maxPrefillTokens = Math.max(1, Math.min(options.maxPrefillTokens ?? Number.MAX_SAFE_INTEGER, spec.capacity));
  }

  get freeRows(): number {
    return this.spec.rows - this.sequences.size;
  }

  private get tensorCount(): number {
    return 2 * this.spec.numLayers;
  }

  /** Device bytes of one sequence's buffers. */
  get rowBytes(): number {
    const { numKvHeads, headDim, capacity, dtype } = this.spec;
    return this.tensorCount * numKvHeads * capacity * headDim * (dtype === 'float16' ? 2 : 4);
  }

  /** Device bytes the rows hold now (snapshots are counted by whoever keeps them). */
  get deviceBytes(): number {
    let bytes = 0;
    for (const t of this.batch ?? []) bytes += tensorBytes(t);
    for (const s of this.sequences.values()) for (const t of s.tensors ?? []) bytes += tensorBytes(t);
    return bytes;
  }

  private assertUsable(): void {
    if (this.freed) throw new VistyleError('INTERNAL', 'device KV cache used after free()');
  }

  private sequence(id: SequenceId): Sequence {
    const s = this.sequences.get(id);
    if (!s) throw new VistyleError('INTERNAL', `no open sequence ${id} in the device KV cache`);
    return s;
  }

  length(id: SequenceId): number {
    return this.sequence(id).length;
  }

  async open(from?: { snapshot: KvSnapshot; length?: number }): Promise<SequenceId> {
    this.assertUsable();
    if (this.freeRows <= 0) throw new VistyleError('INTERNAL', `the device KV cache has no free row (${this.spec.rows} open)`);
    const { numKvHeads, headDim, capacity, dtype } = this.spec;
    let tensors: ort.Tensor[];
    let length = 0;
    if (from) {
      const snap = this.ownSnapshot(from.snapshot);
      length = from.length ?? snap.length;
      if (!Number.isInteger(length) || length < 1 || length > snap.length) {
        throw new VistyleError('INTERNAL', `open: ${length} positions of a ${snap.length}-position snapshot`);
      }
      tensors = await this.graphs.widen(snap.tensors!, capacity, length);
    } else {
      tensors = await this.graphs.zeros(dtype, [1, numKvHeads, capacity, headDim], this.tensorCount);
    }
    const id = this.nextId++;
    this.sequences.set(id, { id, length, tensors });
    return id;
  }

  private ownSnapshot(snapshot: KvSnapshot): DeviceSnapshot {
    const snap = snapshot as DeviceSnapshot;
    if (snap.owner !== this) throw new VistyleError('INTERNAL', 'a snapshot from another KV cache');
    if (!snap.tensors) throw new VistyleError('INTERNAL', 'a released snapshot');
    return snap;
  }

  private cacheFeeds(tensors: readonly ort.Tensor[]): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    for (let i = 0; i < this.spec.numLayers; i++) {
      const n = deviceCacheNames(i);
      feeds[n.pastKey] = tensors[2 * i]!;
      feeds[n.pastValue] = tensors[2 * i + 1]!;
    }
    return feeds;
  }

  private presents(outputs: Readonly<Record<string, ort.Tensor>>): ort.Tensor[] {
    const tensors: ort.Tensor[] = [];
    for (let i = 0; i < this.spec.numLayers; i++) {
      const n = deviceCacheNames(i);
      const k = outputs[n.presentKey];
      const v = outputs[n.presentValue];
      if (!k || !v) throw new VistyleError('MODEL_INVALID', `device decoder output ${n.presentKey}/${n.presentValue} is missing`);
      if (k.location !== 'gpu-buffer' || v.location !== 'gpu-buffer') {
        throw new VistyleError('INTERNAL', `device decoder returned ${n.presentKey} in ${k.location} memory; its session must keep present_* on the device`);
      }
      tensors.push(k, v);
    }
    return tensors;
  }

  private checkRoom(length: number, newTokens: number): void {
    if (length + newTokens > this.spec.capacity) {
      throw new VistyleError('PROMPT_TOO_LONG', `the conversation needs ${length + newTokens} positions; this engine holds ${this.spec.capacity}`, {
        details: { promptTokens: length + newTokens, capacity: this.spec.capacity },
      });
    }
  }

  /** lengths: each batch row's cached positions; every row gets `newTokens` new ones. */
  private stepFeeds(lengths: readonly number[], newTokens: number): Record<string, ort.Tensor> {
    const B = lengths.length;
    const positions = new BigInt64Array(B * newTokens);
    lengths.forEach((l, b) => {
      for (let t = 0; t < newTokens; t++) positions[b * newTokens + t] = BigInt(l + t);
    });
    return {
      position_ids: new ort.Tensor('int64', positions, [B, newTokens]),
      seqlens_k: new ort.Tensor('int32', Int32Array.from(lengths, (l) => l + newTokens - 1), [B]),
      total_sequence_length: new ort.Tensor('int32', Int32Array.from([Math.max(...lengths) + newTokens]), []),
    };
  }

  async bindPrefill(id: SequenceId, newTokens: number): Promise<StepBinding> {
    this.assertUsable();
    const s = this.sequence(id);
    if (!Number.isInteger(newTokens) || newTokens < 1) throw new VistyleError('INTERNAL', `prefill of ${newTokens} tokens`);
    if (!s.tensors) await this.detach(id);
    const tokens = Math.min(newTokens, this.maxPrefillTokens);
    this.checkRoom(s.length, newTokens);
    const binding: DeviceBinding = {
      kind: 'prefill',
      batch: [id],
      newTokens: tokens,
      feeds: { ...this.cacheFeeds(s.tensors!), ...this.stepFeeds([s.length], tokens) },
      serial: ++this.serial,
    };
    return binding;
  }

  async bindDecode(ids: readonly SequenceId[]): Promise<StepBinding> {
    this.assertUsable();
    if (ids.length === 0) throw new VistyleError('INTERNAL', 'a decode step for no sequence');
    const wanted = new Set(ids);
    if (wanted.size !== ids.length) throw new VistyleError('INTERNAL', 'a decode step asks for a sequence twice');
    for (const id of ids) this.checkRoom(this.sequence(id).length, 1);
    // rows not asked for stay as fillers, unless full (a filler writes at its next free position)
    const full = this.batchOrder.filter((id) => !wanted.has(id) && this.sequence(id).length >= this.spec.capacity);
    for (const id of full) await this.detach(id);
    for (const id of ids) if (this.sequence(id).tensors) await this.join(id);
    const lengths = this.batchOrder.map((id) => this.sequence(id).length);
    const binding: DeviceBinding = {
      kind: 'decode',
      batch: this.batchOrder.map((id) => (wanted.has(id) ? id : null)),
      newTokens: 1,
      feeds: { ...this.cacheFeeds(this.batch!), ...this.stepFeeds(lengths, 1) },
      serial: ++this.serial,
    };
    return binding;
  }

  commit(binding: StepBinding, feeds: Readonly<Record<string, ort.Tensor>>, outputs: Readonly<Record<string, ort.Tensor>>): void {
    this.assertUsable();
    if ((binding as DeviceBinding).serial !== this.serial) {
      throw new VistyleError('INTERNAL', 'commit of a binding that is not the last one bound (the cache moved since)');
    }
    const next = this.presents(outputs);
    if (binding.kind === 'prefill') {
      const s = this.sequence(binding.batch[0]!);
      if (!s.tensors) throw new VistyleError('INTERNAL', 'prefill commit for a sequence in the batch');
      disposeAll(s.tensors);
      s.tensors = next;
      s.length += binding.newTokens;
    } else {
      if (!this.batch) throw new VistyleError('INTERNAL', 'decode commit with an empty batch');
      disposeAll(this.batch);
      this.batch = next;
      for (const id of binding.batch) if (id !== null) this.sequence(id).length += 1;
    }
    this.serial++; // a binding is committed once
    this.lastTraffic = hostTraffic(feeds, outputs);
  }

  /** The sequence's own buffers become the batch's last row. */
  private async join(id: SequenceId): Promise<void> {
    const s = this.sequence(id);
    if (!s.tensors) return;
    if (this.batch === null) {
      this.batch = s.tensors; // alone: its buffers are the batch, nothing copied
    } else {
      const joined = await this.graphs.concatRows(this.batch, s.tensors);
      disposeAll(this.batch);
      disposeAll(s.tensors);
      this.batch = joined;
    }
    s.tensors = null;
    this.batchOrder.push(id);
  }

  /** A batch row back into its own buffers (to prefill more of it, or to leave a full row out). */
  private async detach(id: SequenceId): Promise<void> {
    const s = this.sequence(id);
    if (s.tensors) return;
    const index = this.batchOrder.indexOf(id);
    if (this.batchOrder.length === 1) {
      s.tensors = this.batch!;
    } else {
      const own = await this.graphs.gatherRows(this.batch!, [index]);
      const rest = await this.graphs.gatherRows(this.batch!, this.batchOrder.map((_, i) => i).filter((i) => i !== index));
      disposeAll(this.batch!);
      s.tensors = own;
      this.batch = rest;
    }
    this.batchOrder.splice(index, 1);
    if (this.batchOrder.length === 0) this.batch = null;
  }

  async snapshot(id: SequenceId, length?: number): Promise<KvSnapshot> {
    this.assertUsable();
    const s = this.sequence(id);
    const n = length ?? s.length;
    if (!Number.isInteger(n) || n < 1 || n > s.length) throw new VistyleError('INTERNAL', `snapshot of ${n} positions from a sequence of ${s.length}`);
    const tensors = s.tensors
      ? await this.graphs.takeRow(s.tensors, 0, n)
      : await this.graphs.takeRow(this.batch!, this.batchOrder.indexOf(id), n);
    const snapshot: DeviceSnapshot = { owner: this, length: n, bytes: tensors.reduce((sum, t) => sum + tensorBytes(t), 0), tensors };
    return snapshot;
  }

  releaseSnapshot(snapshot: KvSnapshot): void {
    const snap = snapshot as DeviceSnapshot;
    if (snap.owner !== this || !snap.tensors) return;
    disposeAll(snap.tensors);
    snap.tensors = null;
  }

  async close(ids: readonly SequenceId[]): Promise<void> {
    this.assertUsable();
    const leaving = new Set(ids.filter((id) => this.sequences.has(id)));
    if (leaving.size === 0) return;
    for (const id of leaving) disposeAll(this.sequence(id).tensors ?? []);
    const staying = this.batchOrder.filter((id) => !leaving.has(id));
    if (staying.length !== this.batchOrder.length) {
      if (staying.length === 0) {
        disposeAll(this.batch ?? []);
        this.batch = null;
      } else {
        const kept = await this.graphs.gatherRows(this.batch!, staying.map((id) => this.batchOrder.indexOf(id)));
        disposeAll(this.batch!);
        this.batch = kept;
      }
      this.batchOrder = staying;
    }
    for (const id of leaving) this.sequences.delete(id);
    this.serial++; // bindings made before this are stale
  }

  /** Sequences in the decode batch, in row order (tests, logs). */
  get batchRows(): readonly SequenceId[] {
    return this.batchOrder;
  }

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
