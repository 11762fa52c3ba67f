// The engine's side of the KV cache interface, reduced to what graph-level tests need: bind, run
// the decoder, commit. Prefill follows binding.newTokens (the cache may bind fewer tokens than
// asked), decode lays embeddings out in binding.batch order (fillers get zeros).
import * as ort from 'onnxruntime-node';
import type { KvCache, SequenceId } from '../../src/engine/kv-cache.js';

export class CacheDriver {
  constructor(
    readonly session: ort.InferenceSession,
    readonly cache: KvCache,
    readonly hidden: number,
    private readonly lora: Record<string, ort.Tensor> = {},
  ) {}

  private logitsRows(out: ort.InferenceSession.OnnxValueMapType): Float32Array[] {
    const logits = out.logits as ort.Tensor;
    const data = logits.data as Float32Array;
    const V = logits.dims.at(-1)!;
    const rows = logits.dims[0]!;
    const per = data.length / rows;
    return Array.from({ length: rows }, (_, r) => data.slice((r + 1) * per - V, (r + 1) * per));
  }

  /** Feeds `tokens` embeddings of one sequence; the logits of its last position. */
  async prefill(id: SequenceId, embeds: Float32Array, tokens: number): Promise<Float32Array> {
    const D = this.hidden;
    let last: Float32Array | undefined;
    for (let done = 0; done < tokens;) {
      const binding = await this.cache.bindPrefill(id, tokens - done);
      const T = binding.newTokens;
      const feeds = { ...binding.feeds, ...this.lora, inputs_embeds: new ort.Tensor('float32', embeds.slice(done * D, (done + T) * D), [1, T, D]) };
      const out = await this.session.run(feeds);
      this.cache.commit(binding, feeds, out as Record<string, ort.Tensor>);
      last = this.logitsRows(out)[0]!;
      done += T;
    }
    return last!;
  }

  /** One decode step; embeddings and logits by sequence. */
  async decode(ids: readonly SequenceId[], embeds: ReadonlyMap<SequenceId, Float32Array>): Promise<Map<SequenceId, Float32Array>> {
    const D = this.hidden;
    const binding = await this.cache.bindDecode(ids);
    const B = binding.batch.length;
    const x = new Float32Array(B * D);
    binding.batch.forEach((id, b) => {
      if (id !== null) x.set(embeds.get(id)!, b * D);
    });
    const feeds = { ...binding.feeds, ...this.lora, inputs_embeds: new ort.Tensor('float32', x, [B, 1, D]) };
    const out = await this.session.run(feeds);
    this.cache.commit(binding, feeds, out as Record<string, ort.Tensor>);
    const rows = this.logitsRows(out);
    const result = new Map<SequenceId, Float32Array>();
    binding.batch.forEach((id, b) => {
      if (id !== null) result.set(id, rows[b]!);
    });
    return result;
  }
}
