// Thin helpers to drive built graphs directly on onnxruntime sessions in tests: feeds for the
// fixed graph I/O (manifest.ts), empty LoRA inputs (r = 0), a growing seq-major KV cache, and a
// few-line greedy loop. Not an engine: just enough to check the graphs.
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

  /** LoRA feeds for one graph: the given adapters, r = 0 for every other target. */
  loraFeeds(session: ort.InferenceSession, adapters: LoraFeed = {}): Record<string, ort.Tensor> {
    const feeds: Record<string, ort.Tensor> = {};
    for (const t of this.manifest.lora.targets) {
      if (!session.inputNames.includes(t.inputA)) continue;
      const a = adapters[t.module];
      const r = a?.r ?? 0;
      feeds[t.inputA] = this.computeTensor(a?.A ?? new Float32Array(0), [r, t.inFeatures]);
      feeds[t.inputB] = this.computeTensor(a?.B ?? new Float32Array(0), [t.outFeatures, r]);
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

  emptyCache(batch: number): KvCache {
    return new KvCache(this, batch);
  }

  /** One decoder run; appends the new keys/values to `cache`. Returns logits (float32). */
  async step(cache: KvCache, embeds: Float32Array, positions: number[][], mask: number[][], adapters?: LoraFeed): Promise<Float32Array> {
    const B = positions.length;
    const T = positions[0]!.length;
    const D = this.manifest.text.hiddenSize;
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor('float32', embeds, [B, T, D]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from(positions.flat().map(BigInt)), [B, T]),
      attention_mask: new ort.Tensor('int64', BigInt64Array.from(mask.flat().map(BigInt)), [B, mask[0]!.length]),
      ...cache.feeds(),
      ...this.loraFeeds(this.decoder, adapters),
    };
    const out = await this.decoder.run(feeds);
    cache.append(out);
    return out.logits!.data as Float32Array;
  }
}

/** Seq-major cache [P,2,B,kvH,hd] per layer, grown by appending each run's present.<i>. */
export class KvCache {
  length = 0;
  private layers: Float32Array[];
  private readonly rowSize: number;

  constructor(private readonly graphs: Graphs, readonly batch: number) {
    const t = graphs.manifest.text;
    this.rowSize = 2 * batch * t.numKvHeads * t.headDim;
    this.layers = Array.from({ length: t.numLayers }, () => new Float32Array(0));
  }

  feeds(): Record<string, ort.Tensor> {
    const t = this.graphs.manifest.text;
    const feeds: Record<string, ort.Tensor> = {};
    this.layers.forEach((data, i) => {
      feeds[`past.${i}`] = this.graphs.computeTensor(data, [this.length, 2, this.batch, t.numKvHeads, t.headDim]);
    });
    return feeds;
  }

  append(out: ort.InferenceSession.OnnxValueMapType): void {
    let added = 0;
    this.layers = this.layers.map((data, i) => {
      const present = out[`present.${i}`] as ort.Tensor;
      const values = this.graphs.toFloat32(present);
      added = present.dims[0]!;
      const grown = new Float32Array(data.length + values.length);
      grown.set(data);
      grown.set(values, data.length);
      return grown;
    });
    this.length += added;
  }

  /** Layer i's cache as [P,2,B,kvH,hd] float32. */
  layer(i: number): Float32Array {
    return this.layers[i]!;
  }

  get positionStride(): number {
    return this.rowSize;
  }
}

export function argmax(values: ArrayLike<number>, offset = 0, length = values.length - offset): number {
  let best = 0;
  for (let i = 1; i < length; i++) if (values[offset + i]! > values[offset + best]!) best = i;
  return best;
}
