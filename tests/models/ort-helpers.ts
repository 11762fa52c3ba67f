// Thin helpers to drive built graphs directly on onnxruntime sessions in tests: feeds for the
// fixed graph I/O (manifest.ts), "no adapter" LoRA inputs (a rank-1 zero), a KV cache in the
// decoder's window layout with per-row lengths, and a few-line greedy loop. Not the engine (its
// cache is src/engine/kv-host.ts): an independent, simple reading of the graph contract.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { float32ToHalf, halfToFloat32 } from '../../models/checkpoint/dtype.js';
import { ModelManifestSchema, MANIFEST_FILE, type ModelManifest } from '../../models/manifest.js';

export const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  logSeverityLevel: 3,
};

export interface LoraFeed {
  /** module -> A [r,in] and B [out,r] as float32 (converted for fp16 builds) */
  [module: string]: { A: Float32Array; B: Float32Array; r: number };
}

export class Graphs {
  readonly manifest: ModelManifest;
  private constructor(
    readonly dir: string,
    manifest: ModelManifest,
    readonly vision: ort.InferenceSession,
    readonly embed: ort.InferenceSession,
    readonly decoder: ort.InferenceSession,
  ) {
    this.manifest = manifest;
  }

  static async open(dir: string, options: ort.InferenceSession.SessionOptions = SESSION_OPTIONS): Promise<Graphs> {
    const manifest = ModelManifestSchema.parse(JSON.parse(readFileSync(join(dir, MANIFEST_FILE), 'utf8')));
    const [vision, embed, decoder] = await Promise.all([
      ort.InferenceSession.create(join(dir, manifest.graphs.vision), options),
      ort.InferenceSession.create(join(dir, manifest.graphs.embed), options),
      ort.InferenceSession.create(join(dir, manifest.graphs.decoder), options),
    ]);
    return new Graphs(dir, manifest, vision, embed, decoder);
  }

  async close(): Promise<void> {
    await Promise.all([this.vision.release(), this.embed.release(), this.decoder.release()]);
  }

  get fp16(): boolean {
    return this.manifest.kvCache.dtype === 'float16';
  }

  /** A float tensor in the build's compute type (cache, LoRA inputs). */
  computeTensor(values: Float32Array, dims: number[]): ort.Tensor {
    return this.fp16 ? new ort.Tensor('float16', float32ToHalf(values), dims) : new ort.Tensor('float32', values, dims);
  }

  toFloat32(t: ort.Tensor): Float32Array {
    return t.type === 'float16' ? halfToFloat32(t.data as Uint16Array) : (t.data as Float32Array);
  }

  /**
   * LoRA feeds for one graph: the given adapters, a rank-1 zero for every other target. The
   * decoder takes one adapter per batch row ([B,r,in] / [B,out,r]; the same adapters for every
   * row here), the vision graph [r,in] / [out,r].
   */
  loraFeeds(session: ort.InferenceSession, adapters: LoraFeed = {}, batch = 1): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const t of this.manifest.lora.targets) {
      if (!session.inputNames.includes(t.inputA)) continue;
      const a = adapters[t.module];
      const r = a?.r ?? 1;
      const A = a?.A ?? new Float32Array(t.inFeatures);
      const B = a?.B ?? new Float32Array(t.outFeatures);
      if (t.graph === 'decoder') {
        const stack = (one: Float32Array): Float32Array => {
          const out = new Float32Array(one.length * batch);
          for (let b = 0; b < batch; b++) out.set(one, b * one.length);
          return out;
        };
        feeds[t.inputA] = this.computeTensor(stack(A), [batch, r, t.inFeatures]);
        feeds[t.inputB] = this.computeTensor(stack(B), [batch, t.outFeatures, r]);
      } else {
        feeds[t.inputA] = this.computeTensor(A, [r, t.inFeatures]);
        feeds[t.inputB] = this.computeTensor(B, [t.outFeatures, r]);
      }
    }
    return feeds;
  }

  async runVision(pixels: Float32Array, batch = 1, adapters?: LoraFeed): Promise<Float32Array> {
    const S = this.manifest.vision.imageSize;
    const out = await this.vision.run({
      pixel_values: new ort.Tensor('float32', pixels, [batch, 3, S, S]),
      ...this.loraFeeds(this.vision, adapters),
    });
    return out.image_features!.data as Float32Array;
  }

  async runEmbed(ids: number[][]): Promise<Float32Array> {
    const T = ids[0]!.length;
    const out = await this.embed.run({
      input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.flat().map(BigInt)), [ids.length, T]),
    });
    return out.inputs_embeds!.data as Float32Array;
  }

  /** Embeddings with image-token rows replaced, row-major over (batch, position). */
  async mergedEmbeds(ids: number[][], imageFeatures: Float32Array): Promise<Float32Array> {
    const D = this.manifest.text.hiddenSize;
    const embeds = new Float32Array(await this.runEmbed(ids));
    let row = 0;
    ids.flat().forEach((id, i) => {
      if (id === this.manifest.tokens.imageTokenId) {
        embeds.set(imageFeatures.subarray(row * D, (row + 1) * D), i * D);
        row++;
      }
    });
    return embeds;
  }

  /** A cache of `rows` rows, each holding up to `window` positions. */
  emptyCache(rows: number, window = 160): KvCache {
    return new KvCache(this, rows, window);
  }

  /**
   * One decoder run over `rows` of the cache (default: all), each getting T = embeds/(rows*D) new
   * tokens at positions length..length+T-1; appends their keys/values. Returns logits (float32).
   */
  async step(cache: KvCache, embeds: Float32Array, options: { rows?: number[]; adapters?: LoraFeed } = {}): Promise<Float32Array> {
    const rows = options.rows ?? Array.from({ length: cache.rows }, (_, i) => i);
    const B = rows.length;
    const D = this.manifest.text.hiddenSize;
    const T = embeds.length / (B * D);
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor('float32', embeds, [B, T, D]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from(rows.flatMap((r) => Array.from({ length: T }, (_, i) => BigInt(cache.lengths[r]! + i)))), [B, T]),
      ...cache.feeds(rows),
      ...this.loraFeeds(this.decoder, options.adapters, B),
    };
    const out = await this.decoder.run(feeds);
    cache.append(rows, T, out);
    return out.logits!.data as Float32Array;
  }
}

/**
 * Per layer keys [rows,kvH,hd,W] and values [rows,kvH,W,hd] (float32 here; converted for fp16
 * builds when fed), with each row's own length; positions past a row's length are masked.
 */
export class KvCache {
  readonly lengths: number[];
  private readonly keys: Float32Array[];
  private readonly values: Float32Array[];
  private readonly kvH: number;
  private readonly hd: number;

  constructor(private readonly graphs: Graphs, readonly rows: number, readonly window: number) {
    const t = graphs.manifest.text;
    this.kvH = t.numKvHeads;
    this.hd = t.headDim;
    this.lengths = new Array(rows).fill(0);
    const size = rows * t.numKvHeads * t.headDim * window;
    this.keys = Array.from({ length: t.numLayers }, () => new Float32Array(size));
    this.values = Array.from({ length: t.numLayers }, () => new Float32Array(size));
  }

  /** Positions of the longest row. */
  get length(): number {
    return Math.max(...this.lengths);
  }

  private rowSize(): number {
    return this.kvH * this.hd * this.window;
  }

  feeds(rows: readonly number[]): Record<string, ort.Tensor> {
    const { kvH, hd, window: W } = this;
    const size = this.rowSize();
    const gather = (data: Float32Array): Float32Array => {
      const out = new Float32Array(rows.length * size);
      rows.forEach((r, b) => out.set(data.subarray(r * size, (r + 1) * size), b * size));
      return out;
    };
    const mask = new BigInt64Array(rows.length * W);
    rows.forEach((r, b) => mask.fill(1n, b * W, b * W + this.lengths[r]!));
    const feeds: Record<string, ort.Tensor> = { past_mask: new ort.Tensor('int64', mask, [rows.length, W]) };
    this.keys.forEach((k, i) => {
      feeds[`past_key.${i}`] = this.graphs.computeTensor(gather(k), [rows.length, kvH, hd, W]);
      feeds[`past_value.${i}`] = this.graphs.computeTensor(gather(this.values[i]!), [rows.length, kvH, W, hd]);
    });
    return feeds;
  }

  append(rows: readonly number[], T: number, out: ort.InferenceSession.OnnxValueMapType): void {
    const { kvH, hd, window: W } = this;
    rows.forEach((r, b) => {
      const at = this.lengths[r]!;
      if (at + T > W) throw new Error(`row ${r} needs ${at + T} positions, the test cache holds ${W}`);
      this.keys.forEach((k, i) => {
        const newKeys = this.graphs.toFloat32(out[`key.${i}`] as ort.Tensor); // [B,kvH,hd,T]
        const newValues = this.graphs.toFloat32(out[`value.${i}`] as ort.Tensor); // [B,kvH,T,hd]
        for (let h = 0; h < kvH; h++) {
          for (let d = 0; d < hd; d++) {
            const src = ((b * kvH + h) * hd + d) * T;
            k.set(newKeys.subarray(src, src + T), ((r * kvH + h) * hd + d) * W + at);
          }
          const src = (b * kvH + h) * T * hd;
          this.values[i]!.set(newValues.subarray(src, src + T * hd), ((r * kvH + h) * W + at) * hd);
        }
      });
      this.lengths[r] = at + T;
    });
  }

  /** Layer l's key at (row, kv head, position, dim). */
  key(l: number, row: number, h: number, p: number, d: number): number {
    return this.keys[l]![((row * this.kvH + h) * this.hd + d) * this.window + p]!;
  }

  /** Layer l's value at (row, kv head, position, dim). */
  value(l: number, row: number, h: number, p: number, d: number): number {
    return this.values[l]![((row * this.kvH + h) * this.window + p) * this.hd + d]!;
  }
}
export function argmax(values: ArrayLike<number>, offset = 0, length = values.length - offset): number {
  let best = 0;
  for (let i = 1; i < length; i++) if (values[offset + i]! > values[offset + best]!) best = i;
  return best;
}
