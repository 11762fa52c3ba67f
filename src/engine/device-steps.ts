// One sequence through a KvCache-backed decoder (the engine's bind -> run -> commit protocol):
// a prompt prefilled in the chunks the cache binds (binding.newTokens may be fewer than asked),
// then one token per decode step. Used by the generator when the cache lives on the device;
// LoRA inputs for the device decoder are uploaded once and fed from the device on every step.
import * as ort from 'onnxruntime-node';
import { VistyleError } from '../errors.js';
import type { DeviceGraphs } from './device-graphs.js';
import { disposeAll } from './device-graphs.js';
import type { KvCache, SequenceId } from './kv-cache.js';

function lastRowLogits(out: ort.InferenceSession.OnnxValueMapType, row: number, rows: number): Float32Array {
  const logits = out.logits as ort.Tensor | undefined;
  if (!logits || logits.type !== 'float32' || logits.location !== 'cpu') {
    throw new VistyleError('MODEL_INVALID', 'the decoder did not return float32 logits in host memory');
  }
  const data = logits.data as Float32Array;
  const vocab = logits.dims[logits.dims.length - 1]!;
  const per = data.length / rows; // [B,V], or [B,T,V] in allPositionLogits builds
  return data.subarray((row + 1) * per - vocab, (row + 1) * per);
}

/** Prefills `tokens` embeddings ([tokens*D]) of one sequence; the logits of its last position. */
export async function prefillSequence(
  cache: KvCache,
  session: ort.InferenceSession,
  id: SequenceId,
  embeds: Float32Array,
  tokens: number,
  hidden: number,
  lora: Readonly<Record<string, ort.Tensor>>,
): Promise<Float32Array> {
  let logits: Float32Array | undefined;
  for (let done = 0; done < tokens;) {
    const binding = await cache.bindPrefill(id, tokens - done);
    const T = binding.newTokens;
    const feeds = { ...binding.feeds, ...lora, inputs_embeds: new ort.Tensor('float32', embeds.subarray(done * hidden, (done + T) * hidden), [1, T, hidden]) };
    const out = await session.run(feeds);
    cache.commit(binding, feeds, out as Record<string, ort.Tensor>);
    logits = lastRowLogits(out, 0, 1);
    done += T;
  }
  if (!logits) throw new VistyleError('INTERNAL', 'a prefill of no tokens');
  return logits;
}

/** One decode step of one sequence ([D] embedding); its logits. */
export async function decodeSequence(
  cache: KvCache,
  session: ort.InferenceSession,
  id: SequenceId,
  embed: Float32Array,
  hidden: number,
  lora: Readonly<Record<string, ort.Tensor>>,
): Promise<Float32Array> {
  const binding = await cache.bindDecode([id]);
  const B = binding.batch.length;
  const row = binding.batch.indexOf(id);
  const x = new Float32Array(B * hidden);
  x.set(embed, row * hidden); // fillers get zeros; their outputs are ignored
  const feeds = { ...binding.feeds, ...lora, inputs_embeds: new ort.Tensor('float32', x, [B, 1, hidden]) };
  const out = await session.run(feeds);
  cache.commit(binding, feeds, out as Record<string, ort.Tensor>);
  return lastRowLogits(out, row, B);
}

/**
 * Device copies of LoRA feeds, made once per adapter (key) and kept for the last `size` keys, so
 * that a decode step feeds no adapter weights from host memory.
 */
export class DeviceLoraFeeds {
  private readonly entries = new Map<string, Record<string, ort.Tensor>>();

  constructor(private readonly graphs: DeviceGraphs, private readonly size = 4) {}

  async get(key: string, feeds: Readonly<Record<string, ort.Tensor>>): Promise<Record<string, ort.Tensor>> {
    const cached = this.entries.get(key);
    if (cached) {
      this.entries.delete(key);
      this.entries.set(key, cached);
      return cached;
    }
    const names = Object.keys(feeds);
    const uploaded = await this.graphs.upload(names.map((n) => feeds[n]!));
    const onDevice: Record<string, ort.Tensor> = {};
    names.forEach((n, i) => (onDevice[n] = uploaded[i]!));
    this.entries.set(key, onDevice);
    while (this.entries.size > this.size) {
      const [oldest, tensors] = this.entries.entries().next().value as [string, Record<string, ort.Tensor>];
      this.entries.delete(oldest);
      disposeAll(Object.values(tensors));
    }
    return onDevice;
  }

  clear(): void {
    for (const tensors of this.entries.values()) disposeAll(Object.values(tensors));
    this.entries.clear();
  }
}
