// LoRA inputs for one decoder run with an adapter per batch row, the way multi-LoRA servers
// (Punica, S-LoRA) batch them: for each target, A stacked [rows, r, in] and B [rows, out, r],
// r the largest rank in the batch (smaller adapters zero-padded), a zero row for a row without
// an adapter (or a filler). Zero rows and zero padding add exactly 0 to the base projection.
// "No adapter" anywhere is a rank-1 zero, never a zero-size tensor (see models/graphs/common.ts).
// The vision graph runs one picture at a time and takes [r, in] / [out, r].
//
// Stacked feeds are kept for the last few batch compositions, so a steady batch builds them once.
import * as ort from 'onnxruntime-node';
import type { LoraTarget, ModelManifest } from '../../models/manifest.js';
import type { LoadedLora } from './generation-parts.js';
import { LruCache } from './lru.js';
import type { InputTypes } from './session.js';

type LoraArray = Float32Array | Uint16Array;

function elementType(types: InputTypes, name: string, fallback: 'float32' | 'float16'): 'float32' | 'float16' {
  const type = types.get(name);
  return type === 'float16' || type === 'float32' ? type : fallback;
}

export class LoraFeeds {
  private readonly decoderTargets: LoraTarget[];
  private readonly visionTargets: LoraTarget[];
  private readonly fallback: 'float32' | 'float16';
  private readonly stacked = new LruCache<string, Record<string, ort.Tensor>>(8);
  private readonly visionZero: Record<string, ort.Tensor>;

  constructor(
    manifest: ModelManifest,
    private readonly decoderTypes: InputTypes,
    visionTypes: InputTypes,
  ) {
    this.decoderTargets = manifest.lora.targets.filter((t) => t.graph === 'decoder');
    this.visionTargets = manifest.lora.targets.filter((t) => t.graph === 'vision');
    this.fallback = manifest.lora.dtype ?? (manifest.dtype === 'fp16' ? 'float16' : 'float32');
    this.visionZero = {};
    for (const t of this.visionTargets) {
      const type = elementType(visionTypes, t.inputA, this.fallback);
      this.visionZero[t.inputA] = zeros(type, [1, t.inFeatures]);
      this.visionZero[t.inputB] = zeros(type, [t.outFeatures, 1]);
    }
  }

  /** Whether an adapter changes what the vision graph computes. */
  touchesVision(lora: LoadedLora | null | undefined): boolean {
    return !!lora && this.visionTargets.some((t) => lora.feeds.has(t.inputA));
  }

  /** Vision LoRA inputs for one picture: the adapter's, "no adapter" elsewhere. */
  vision(lora: LoadedLora | null | undefined): Record<string, ort.Tensor> {
    if (!lora) return this.visionZero;
    const feeds = { ...this.visionZero };
    for (const t of this.visionTargets) {
      const a = lora.feeds.get(t.inputA);
      const b = lora.feeds.get(t.inputB);
      if (a && b) {
        feeds[t.inputA] = a;
        feeds[t.inputB] = b;
      }
    }
    return feeds;
  }

  /** Decoder LoRA inputs for a batch: entry i is batch row i's adapter (null: none, or a filler). */
  decoder(batch: readonly (LoadedLora | null)[]): Record<string, ort.Tensor> {
    const key = batch.map((lora) => lora?.key ?? '').join('\u0000');
    const cached = this.stacked.get(key);
    if (cached) return cached;
    const feeds: Record<string, ort.Tensor> = {};
    const rows = batch.length;
    for (const t of this.decoderTargets) {
      const type = elementType(this.decoderTypes, t.inputA, this.fallback);
      const parts = batch.map((lora) => {
        const a = lora?.feeds.get(t.inputA);
        const b = lora?.feeds.get(t.inputB);
        return a && b ? { a: a.data as LoraArray, b: b.data as LoraArray, r: a.dims[0]! } : null;
      });
      const r = Math.max(1, ...parts.map((p) => p?.r ?? 0));
      const A = type === 'float16' ? new Uint16Array(rows * r * t.inFeatures) : new Float32Array(rows * r * t.inFeatures);
      const B = type === 'float16' ? new Uint16Array(rows * t.outFeatures * r) : new Float32Array(rows * t.outFeatures * r);
      parts.forEach((part, row) => {
        if (!part) return;
        // A [r_i, in] fills the first r_i rank rows; B [out, r_i] the first r_i columns of each row
        A.set(part.a, row * r * t.inFeatures);
        for (let o = 0; o < t.outFeatures; o++) {
          B.set(part.b.subarray(o * part.r, (o + 1) * part.r), (row * t.outFeatures + o) * r);
        }
      });
      feeds[t.inputA] = new ort.Tensor(type, A, [rows, r, t.inFeatures]);
      feeds[t.inputB] = new ort.Tensor(type, B, [rows, t.outFeatures, r]);
    }
    this.stacked.set(key, feeds);
    return feeds;
  }

  clear(): void {
    this.stacked.clear();
  }
}

function zeros(type: 'float32' | 'float16', dims: number[]): ort.Tensor {
  const n = dims.reduce((a, b) => a * b, 1);
  return type === 'float16' ? new ort.Tensor('float16', new Uint16Array(n), dims) : new ort.Tensor('float32', new Float32Array(n), dims);
}
