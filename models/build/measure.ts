// Times built graphs on onnxruntime-node (CPU): vision encode, a prefill of image + prompt tokens,
// and decode steps at a given cache length, with every LoRA input fed "no adapter" (an idle adapter
// path). Used to measure what the idle LoRA path costs against a --no-lora build:
//   npx tsx models/build/measure.ts [--threads N] [--rounds N] [--past P] MODEL_DIR [MODEL_DIR...]
// Builds are measured in alternation (A, B, A, B, ...) so a busy machine affects them alike;
// the medians are printed.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { float32ToHalf } from '../checkpoint/dtype.js';
import { ModelManifestSchema, MANIFEST_FILE, type ModelManifest } from '../manifest.js';

interface Loaded {
  dir: string;
  manifest: ModelManifest;
  vision: ort.InferenceSession;
  decoder: ort.InferenceSession;
  createMs: number;
  times: { vision: number[]; prefill: number[]; decode: number[] };
}

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function floatTensor(m: ModelManifest, values: Float32Array, dims: number[]): ort.Tensor {
  return m.dtype === 'fp16' ? new ort.Tensor('float16', float32ToHalf(values), dims) : new ort.Tensor('float32', values, dims);
}

/** "No adapter" for every LoRA input of the session: a rank-1 zero ([1,r,in] in the decoder). */
function loraFeeds(m: ModelManifest, session: ort.InferenceSession): Record<string, ort.Tensor> {
  const feeds: Record<string, ort.Tensor> = {};
  for (const t of m.lora.targets) {
    if (!session.inputNames.includes(t.inputA)) continue;
    const batch = t.graph === 'decoder' ? [1] : [];
    feeds[t.inputA] = floatTensor(m, new Float32Array(t.inFeatures), [...batch, 1, t.inFeatures]);
    feeds[t.inputB] = floatTensor(m, new Float32Array(t.outFeatures), [...batch, t.outFeatures, 1]);
  }
  return feeds;
}

/** A decoder run of T new tokens after `past` cached ones (the window layout, models/manifest.ts). */
function decoderFeeds(m: ModelManifest, session: ort.InferenceSession, past: number, T: number): Record<string, ort.Tensor> {
  const t = m.text;
  const W = Math.max(1, past);
  const feeds: Record<string, ort.Tensor> = {
    inputs_embeds: new ort.Tensor('float32', Float32Array.from({ length: T * t.hiddenSize }, (_, i) => Math.sin(i) * 0.1), [1, T, t.hiddenSize]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from({ length: T }, (_, i) => BigInt(past + i)), [1, T]),
    past_mask: new ort.Tensor('int64', BigInt64Array.from({ length: W }, (_, i) => (i < past ? 1n : 0n)), [1, W]),
    ...loraFeeds(m, session),
  };
  const cache = new Float32Array(W * t.numKvHeads * t.headDim).map((_, i) => Math.cos(i) * 0.5);
  for (let i = 0; i < t.numLayers; i++) {
    feeds[`past_key.${i}`] = floatTensor(m, cache, [1, t.numKvHeads, t.headDim, W]);
    feeds[`past_value.${i}`] = floatTensor(m, cache, [1, t.numKvHeads, W, t.headDim]);
  }
  return feeds;
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const threads = arg('--threads', 2);
const rounds = arg('--rounds', 5);
const past = arg('--past', 760);
const dirs = process.argv.slice(2).filter((a, i, all) => !a.startsWith('--') && !all[i - 1]?.startsWith('--'));
if (dirs.length === 0) {
  process.stderr.write('usage: measure.ts [--threads N] [--rounds N] [--past P] MODEL_DIR...\n');
  process.exit(2);
}

const options: ort.InferenceSession.SessionOptions = { intraOpNumThreads: threads, interOpNumThreads: 1, logSeverityLevel: 3 };
const loaded: Loaded[] = [];
for (const dir of dirs) {
  const manifest = ModelManifestSchema.parse(JSON.parse(readFileSync(join(dir, MANIFEST_FILE), 'utf8')));
  const t0 = performance.now();
  const vision = await ort.InferenceSession.create(join(dir, manifest.graphs.vision), options);
  const decoder = await ort.InferenceSession.create(join(dir, manifest.graphs.decoder), options);
  loaded.push({ dir, manifest, vision, decoder, createMs: performance.now() - t0, times: { vision: [], prefill: [], decode: [] } });
}

for (let round = 0; round < rounds; round++) {
  for (const l of loaded) {
    const m = l.manifest;
    const S = m.vision.imageSize;
    const pixels = new Float32Array(3 * S * S).map((_, i) => Math.sin(i * 0.37));
    l.times.vision.push(await timed(() => l.vision.run({ pixel_values: new ort.Tensor('float32', pixels, [1, 3, S, S]), ...loraFeeds(m, l.vision) })));
    if (round < 2 || round % 2 === 0) {
      l.times.prefill.push(await timed(() => l.decoder.run(decoderFeeds(m, l.decoder, 0, past))));
    }
    const step = decoderFeeds(m, l.decoder, past, 1);
    for (let k = 0; k < 5; k++) l.times.decode.push(await timed(() => l.decoder.run(step)));
  }
}

for (const l of loaded) {
  const skipFirst = (xs: number[]): number[] => (xs.length > 1 ? xs.slice(1) : xs);
  process.stdout.write(
    `${l.dir} (${l.manifest.dtype}, ${l.manifest.lora.targets.length} LoRA targets, ${threads} threads): ` +
      `sessions ${l.createMs.toFixed(0)} ms, vision ${median(skipFirst(l.times.vision)).toFixed(0)} ms, ` +
      `prefill ${past} tokens ${median(skipFirst(l.times.prefill)).toFixed(0)} ms, ` +
      `decode step at ${past} ${median(skipFirst(l.times.decode)).toFixed(1)} ms (median of ${l.times.decode.length - 1}), ` +
      `rss ${(process.memoryUsage().rss / 2 ** 30).toFixed(2)} GiB\n`,
  );
}
