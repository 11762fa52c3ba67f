// Accuracy of a quantized build against the fp32 build of the same checkpoint, on the graphs
// themselves (no sampler, no engine): one fixed prompt of text ids around a picture's image
// tokens, fixed pixels. The fp32 run (--reference-out) writes its prefill logits and its 64
// greedy tokens; a quantized run (--reference) computes, against them, the cosine similarity and
// max |diff| of the prefill logits, and, feeding fp32's tokens (teacher forcing, so that one
// early disagreement does not decide every later step), the share of the 64 steps whose top-1
// equals fp32's. One JSON line (AccuracyFigures) on stdout.
//   node dist/bench/accuracy.js --model DIR (--reference-out FILE | --reference FILE) [--steps 64] [--threads N]
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { ModelManifestSchema, MANIFEST_FILE, type ModelManifest } from '../models/manifest.js';
import { HostKvCache } from '../src/engine/kv-host.js';
import { LoraFeeds } from '../src/engine/lora-batch.js';
import { arg, cpuSessionOptions } from './args.js';

export interface AccuracyFigures {
  model: string;
  dtype: string;
  steps: number;
  /** Against fp32 (absent in the fp32 run itself). */
  prefillCosine?: number;
  prefillMaxAbsDiff?: number;
  /** Share of teacher-forced steps (prefill + steps-1) whose argmax is fp32's greedy token. */
  top1Agreement?: number;
}

interface Reference {
  logits: number[];
  tokens: number[];
}

function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

class Graphs {
  private constructor(
    readonly m: ModelManifest,
    private readonly vision: ort.InferenceSession,
    private readonly embed: ort.InferenceSession,
    private readonly decoder: ort.InferenceSession,
  ) {}

  static async open(dir: string, threads: number): Promise<Graphs> {
    const m = ModelManifestSchema.parse(JSON.parse(readFileSync(join(dir, MANIFEST_FILE), 'utf8')));
    const o = cpuSessionOptions(threads);
    return new Graphs(
      m,
      await ort.InferenceSession.create(join(dir, m.graphs.vision), o),
      await ort.InferenceSession.create(join(dir, m.graphs.embed), o),
      await ort.InferenceSession.create(join(dir, m.graphs.decoder), o),
    );
  }

  /** "No adapter" LoRA inputs (the engine's own: a rank-1 zero per target). */
  private get lora(): LoraFeeds {
    this.loraFeeds ??= new LoraFeeds(this.m, new Map(), new Map());
    return this.loraFeeds;
  }
  private loraFeeds: LoraFeeds | undefined;

  async features(pixels: Float32Array): Promise<Float32Array> {
    const S = this.m.vision.imageSize;
    const out = await this.vision.run({ pixel_values: new ort.Tensor('float32', pixels, [1, 3, S, S]), ...this.lora.vision(null) });
    return out.image_features!.data as Float32Array;
  }

  async embeds(ids: number[], features: Float32Array | null): Promise<Float32Array> {
    const out = await this.embed.run({ input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]) });
    const rows = new Float32Array(out.inputs_embeds!.data as Float32Array);
    const D = this.m.text.hiddenSize;
    let r = 0;
    if (features) ids.forEach((id, i) => id === this.m.tokens.imageTokenId && rows.set(features.subarray(r * D, (r++ + 1) * D), i * D));
    return rows;
  }

  /** The engine's host KV cache (one row), as the decoder takes it. */
  private cache: { kv: HostKvCache; seq: number } | null = null;

  async step(embeds: Float32Array): Promise<Float32Array> {
    const t = this.m.text;
    const T = embeds.length / t.hiddenSize;
    if (!this.cache) {
      const kv = new HostKvCache({ spec: { numLayers: t.numLayers, numKvHeads: t.numKvHeads, headDim: t.headDim, capacity: 4096, rows: 1, dtype: this.m.kvCache.dtype } });
      this.cache = { kv, seq: await kv.open() };
    }
    const binding = await this.cache.kv.bindPrefill(this.cache.seq, T);
    const feeds: Record<string, ort.Tensor> = {
      ...binding.feeds,
      inputs_embeds: new ort.Tensor('float32', embeds, [1, T, t.hiddenSize]),
      ...this.lora.decoder([null]),
    };
    const out = await this.decoder.run(feeds);
    this.cache.kv.commit(binding, feeds, out as Record<string, ort.Tensor>);
    return out.logits!.data as Float32Array;
  }
}

/** The fixed prompt: text ids, the image tokens, more text ids (all below the special tokens). */
export function accuracyPrompt(m: ModelManifest): number[] {
  const text = (n: number, from: number): number[] => Array.from({ length: n }, (_, i) => (from + i * 7) % 250 + 3);
  return [...text(5, 11), ...new Array<number>(m.vision.imageTokens).fill(m.tokens.imageTokenId), ...text(24, 40)];
}

export function accuracyPixels(size: number): Float32Array {
  return Float32Array.from({ length: 3 * size * size }, (_, i) => Math.sin(i * 0.0137) * 0.9);
}

async function main(): Promise<void> {
  const model = arg('model', '');
  const steps = Number(arg('steps', '64'));
  const g = await Graphs.open(model, Number(arg('threads', '2')));
  const ids = accuracyPrompt(g.m);
  const features = await g.features(accuracyPixels(g.m.vision.imageSize));
  let logits = await g.step(await g.embeds(ids, features));
  const referenceOut = arg('reference-out', '');
  const out: AccuracyFigures = { model, dtype: g.m.dtype, steps };
  if (referenceOut) {
    const tokens: number[] = [];
    const prefill = Array.from(logits);
    for (let s = 0; s < steps; s++) {
      const next = argmax(logits);
      tokens.push(next);
      if (s + 1 < steps) logits = await g.step(await g.embeds([next], null));
    }
    writeFileSync(referenceOut, JSON.stringify({ logits: prefill, tokens } satisfies Reference));
  } else {
    const ref = JSON.parse(readFileSync(arg('reference', ''), 'utf8')) as Reference;
    let dot = 0;
    let na = 0;
    let nb = 0;
    let maxDiff = 0;
    ref.logits.forEach((r, i) => {
      const q = logits[i]!;
      dot += r * q;
      na += r * r;
      nb += q * q;
      maxDiff = Math.max(maxDiff, Math.abs(r - q));
    });
    let agree = 0;
    for (let s = 0; s < Math.min(steps, ref.tokens.length); s++) {
      if (argmax(logits) === ref.tokens[s]) agree++;
      if (s + 1 < steps) logits = await g.step(await g.embeds([ref.tokens[s]!], null));
    }
    out.prefillCosine = dot / Math.sqrt(na * nb);
    out.prefillMaxAbsDiff = maxDiff;
    out.top1Agreement = agree / Math.min(steps, ref.tokens.length);
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

if (process.argv[1] && /accuracy\.(ts|js)$/.test(process.argv[1])) await main();
