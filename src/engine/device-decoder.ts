// Runs the device decoder (decoder-device.onnx) over a DeviceKvCache: chunked prefill of one
// sequence, and decode steps over the batch. Builds the per-run host inputs (embeddings, position
// ids, per-row lengths), keeps the cache on the device and returns only logits.
import * as ort from 'onnxruntime-node';
import { VistyleError } from '../errors.js';
import { hostTraffic, type DeviceKvCache, type HostTraffic } from './device-kv-cache.js';

export interface DeviceDecoderOptions {
  session: ort.InferenceSession;
  cache: DeviceKvCache;
  hiddenSize: number;
  /** Longest prefill chunk this adapter runs correctly (device-attention-check.ts). */
  maxChunk: number;
}

/** Output locations for the device decoder's session: logits to the host, the cache stays. */
export function deviceDecoderOutputLocations(numLayers: number): Record<string, 'cpu' | 'gpu-buffer'> {
  const locations: Record<string, 'cpu' | 'gpu-buffer'> = { logits: 'cpu' };
  for (let i = 0; i < numLayers; i++) {
    locations[`present_key.${i}`] = 'gpu-buffer';
    locations[`present_value.${i}`] = 'gpu-buffer';
  }
  return locations;
}

export class DeviceDecoder {
  readonly cache: DeviceKvCache;
  private readonly session: ort.InferenceSession;
  private readonly hidden: number;
  readonly maxChunk: number;
  /** Host bytes of the last run (in: fed, out: returned). */
  lastTraffic: HostTraffic = { in: 0, out: 0 };

  constructor(options: DeviceDecoderOptions) {
    if (!(options.maxChunk >= 1)) throw new VistyleError('INTERNAL', `prefill chunk must be at least 1, got ${options.maxChunk}`);
    this.session = options.session;
    this.cache = options.cache;
    this.hidden = options.hiddenSize;
    this.maxChunk = options.maxChunk;
  }

  private async run(feeds: Record<string, ort.Tensor>): Promise<ort.InferenceSession.OnnxValueMapType> {
    const out = await this.session.run(feeds);
    this.lastTraffic = hostTraffic(feeds, out as Record<string, ort.Tensor>);
    return out;
  }

  private logitsOf(out: ort.InferenceSession.OnnxValueMapType, rows: number): Float32Array {
    const logits = out.logits as ort.Tensor | undefined;
    if (!logits || logits.type !== 'float32' || logits.location !== 'cpu') {
      throw new VistyleError('MODEL_INVALID', 'device decoder did not return float32 logits in host memory');
    }
    const data = logits.data as Float32Array;
    const vocab = logits.dims[logits.dims.length - 1]!;
    // [B,V]; [B,T,V] in allPositionLogits builds: keep each row's last position
    if (data.length === rows * vocab) return data;
    const perRow = data.length / rows;
    const last = new Float32Array(rows * vocab);
    for (let r = 0; r < rows; r++) last.set(data.subarray((r + 1) * perRow - vocab, (r + 1) * perRow), r * vocab);
    return last;
  }

  /**
   * Feeds `tokens` embeddings ([tokens*D] float32) of one prefilling sequence, in chunks;
   * returns the logits of its last position. `lora` are the LoRA inputs (rank >= 1 on WebGPU).
   */
  async prefill(id: number, embeds: Float32Array, tokens: number, lora: Readonly<Record<string, ort.Tensor>> = {}): Promise<Float32Array> {
    const D = this.hidden;
    if (tokens <= 0 || embeds.length !== tokens * D) throw new VistyleError('INTERNAL', `prefill of ${tokens} tokens with ${embeds.length / D} embeddings`);
    let logits: Float32Array | undefined;
    for (let done = 0; done < tokens;) {
      const T = Math.min(this.maxChunk, tokens - done);
      const past = this.cache.length(id);
      const feeds: Record<string, ort.Tensor> = {
        inputs_embeds: new ort.Tensor('float32', embeds.subarray(done * D, (done + T) * D), [1, T, D]),
        position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(past + i)), [1, T]),
        ...this.cache.prefillFeeds(id, T),
        ...lora,
      };
      const out = await this.run(feeds);
      this.cache.commitPrefill(id, out as Record<string, ort.Tensor>, T);
      logits = this.logitsOf(out, 1);
      done += T;
    }
    return logits!;
  }

  /**
   * One decode step for every sequence in the batch: `embeds` [B*D] in batch-row order
   * (cache.batchRows). Returns the logits [B*V] in the same order.
   */
  async decode(embeds: Float32Array, lora: Readonly<Record<string, ort.Tensor>> = {}): Promise<Float32Array> {
    const rows = this.cache.batchRows;
    const B = rows.length;
    if (embeds.length !== B * this.hidden) throw new VistyleError('INTERNAL', `decode step for ${B} rows with ${embeds.length / this.hidden} embeddings`);
    const feeds: Record<string, ort.Tensor> = {
      inputs_embeds: new ort.Tensor('float32', embeds, [B, 1, this.hidden]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from(rows, (id) => BigInt(this.cache.length(id))), [B, 1]),
      ...this.cache.decodeFeeds(),
      ...lora,
    };
    const out = await this.run(feeds);
    this.cache.commitDecode(out as Record<string, ort.Tensor>);
    return this.logitsOf(out, B);
  }
}
