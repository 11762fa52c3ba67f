// One benchmark subject, measured in its own process so that peak RSS belongs to it alone:
//   node dist/bench/measure.js --model DIR [--tokens N] [--runs N] [--threads N] [--kv-fetch]
// Prints one JSON line (MeasureResult) on stdout.
import { availableParallelism } from 'node:os';
import sharp from 'sharp';
import * as ort from 'onnxruntime-node';
import { createLocalEngine } from '../src/engine/local-engine.js';
import { HostKvCache } from '../src/engine/kv-host.js';
import { LoraFeeds } from '../src/engine/lora-batch.js';
import { openModelFolder } from '../src/engine/model-folder.js';
import { resolveProviderConfig } from '../src/engine/providers.js';
import { loadModelSessions } from '../src/engine/session.js';
import { resolveSampling } from '../src/engine/text-parts.js';
import { createLogger, setRootLogger } from '../src/log.js';
import type { GenerationResult } from '../src/engine/types.js';

export interface RunFigures {
  imageMs: number;
  visionMs: number;
  prefillMs: number;
  ttftMs: number;
  tokensPerSecond: number;
  promptTokens: number;
  newTokens: number;
}

export interface KvFetchFigures {
  /** Mean decoder step with append() (copy of the new rows into the cache). */
  appendStepMs: number;
  /** Mean decoder step with pre-allocated present fetches (written in place by onnxruntime). */
  preallocatedStepMs: number;
  steps: number;
}

export interface PairResult {
  /** Runs alternating between the two models in one process (order swapped every round). */
  a: { model: string; runs: RunFigures[] };
  b: { model: string; runs: RunFigures[] };
  /** Single decoder steps after a 760-token prefix, alternating a/b step by step: mean ms. */
  decodeStepMs: { a: number; b: number; steps: number };
}

export interface MeasureResult {
  model: string;
  threads: number;
  loadMs: number;
  runs: RunFigures[];
  peakRssMiB: number;
  kvFetch?: KvFetchFigures;
}

export const QUESTION = 'What is in this picture? Describe it in one sentence.';

/** A deterministic 384x384 RGB test picture (smooth gradients plus a pattern), as PNG bytes. */
export async function benchImage(size = 384): Promise<Uint8Array> {
  const pixels = Buffer.alloc(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = (y * size + x) * 3;
      pixels[i] = (x * 255) / size;
      pixels[i + 1] = (y * 255) / size;
      pixels[i + 2] = ((x ^ y) & 0x3f) * 4;
    }
  }
  return new Uint8Array(await sharp(pixels, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer());
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function figures(result: GenerationResult): RunFigures {
  return {
    imageMs: result.timings.imageMs,
    visionMs: result.timings.visionMs,
    prefillMs: result.timings.prefillMs,
    ttftMs: result.ttftMs,
    tokensPerSecond: result.tokensPerSecond,
    promptTokens: result.promptTokens,
    newTokens: result.tokens.length,
  };
}

interface DecoderStepper {
  /** One decoder run over `newTokens` positions; the present rows go to the cache by append() or in place. */
  step(newTokens: number, inPlace: boolean): Promise<number>;
  release(): Promise<void>;
}

async function decoderStepper(modelDir: string, threads: number): Promise<DecoderStepper> {
  const folder = openModelFolder(modelDir);
  const m = folder.manifest;
  const sessions = await loadModelSessions(folder, resolveProviderConfig({ provider: 'cpu', threads }));
  const spec = { numLayers: m.text.numLayers, rows: 1, numKvHeads: m.text.numKvHeads, headDim: m.text.headDim, capacity: 1024, dtype: m.kvCache.dtype };
  const cache = new HostKvCache({ spec });
  const seq = await cache.open();
  const lora = new LoraFeeds(m, sessions.decoder.inputTypes, sessions.vision.inputTypes).decoder([null]);
  const hidden = m.text.hiddenSize;
  return {
    // The windowed cache (src/engine/kv-host.ts) has one way only: `inPlace` no longer differs.
    async step(newTokens: number): Promise<number> {
      const past = cache.length(seq);
      const binding = await cache.bindPrefill(seq, newTokens);
      const embeds = Float32Array.from({ length: newTokens * hidden }, (_, i) => Math.sin(i + past) * 0.02);
      const feeds = { ...binding.feeds, inputs_embeds: new ort.Tensor('float32', embeds, [1, newTokens, hidden]), ...lora };
      const t = performance.now();
      const out = await sessions.decoder.session.run(feeds);
      cache.commit(binding, feeds, out as Record<string, ort.Tensor>);
      return performance.now() - t;
    },
    release: () => sessions.release(),
  };
}

/** Decoder steps with the two ways of getting present.<i> into the cache, alternating per step. */
async function measureKvFetch(modelDir: string, threads: number, steps: number): Promise<KvFetchFigures> {
  const stepper = await decoderStepper(modelDir, threads);
  // A prompt-sized prefix first, so the steps attend over a realistic length.
  await stepper.step(760, false);
  let appendMs = 0;
  let preMs = 0;
  for (let i = 0; i < steps; i++) {
    appendMs += await stepper.step(1, false);
    preMs += await stepper.step(1, true);
  }
  await stepper.release();
  return { appendStepMs: appendMs / steps, preallocatedStepMs: preMs / steps, steps };
}

/** Decoder steps of two models, alternating step by step. */
async function measureDecodePair(a: string, b: string, threads: number, steps: number): Promise<PairResult['decodeStepMs']> {
  const sa = await decoderStepper(a, threads);
  const sb = await decoderStepper(b, threads);
  await sa.step(760, false);
  await sb.step(760, false);
  let ta = 0;
  let tb = 0;
  for (let i = 0; i < steps; i++) {
    ta += await sa.step(1, false);
    tb += await sb.step(1, false);
  }
  await sa.release();
  await sb.release();
  return { a: ta / steps, b: tb / steps, steps };
}

async function main(): Promise<void> {
  setRootLogger(createLogger({ level: 'warn' }));
  const model = arg('model');
  if (!model) throw new Error('--model DIR is required');
  const tokens = Number(arg('tokens') ?? 32);
  const runs = Number(arg('runs') ?? 3);
  const threads = Number(arg('threads') ?? availableParallelism());
  const image = await benchImage();
  const sampling = { ...resolveSampling({}), greedy: true, maxNewTokens: tokens, stopStrings: [] };
  const ask = async (engine: Awaited<ReturnType<typeof createLocalEngine>>): Promise<RunFigures> =>
    figures(await engine.generate({ images: [image], messages: [{ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: QUESTION }] }], sampling }).result);

  const pairWith = arg('pair');
  if (pairWith) {
    // Two models in one process, alternating, so that load from other processes on the machine
    // hits both alike: for comparisons (idle LoRA inputs vs none), not for peak RSS.
    const a = await createLocalEngine({ modelDir: model, provider: 'cpu', threads, featureCacheSize: 0 });
    const b = await createLocalEngine({ modelDir: pairWith, provider: 'cpu', threads, featureCacheSize: 0 });
    const out: PairResult = { a: { model, runs: [] }, b: { model: pairWith, runs: [] }, decodeStepMs: { a: 0, b: 0, steps: 0 } };
    await ask(a); // warm-up, not counted
    await ask(b);
    for (let i = 0; i < runs; i++) {
      const order = i % 2 === 0 ? (['a', 'b'] as const) : (['b', 'a'] as const);
      for (const which of order) out[which].runs.push(await ask(which === 'a' ? a : b));
    }
    await a.close();
    await b.close();
    out.decodeStepMs = await measureDecodePair(model, pairWith, threads, 48);
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return;
  }

  const t0 = performance.now();
  // featureCacheSize 0: every run pays for the vision graph, as a new picture would.
  const engine = await createLocalEngine({ modelDir: model, provider: 'cpu', threads, featureCacheSize: 0 });
  const loadMs = performance.now() - t0;
  const results: RunFigures[] = [];
  for (let i = 0; i < runs; i++) results.push(await ask(engine));
  await engine.close();
  const out: MeasureResult = { model, threads, loadMs, runs: results, peakRssMiB: process.resourceUsage().maxRSS / 1024 };
  if (process.argv.includes('--kv-fetch')) out.kvFetch = await measureKvFetch(model, threads, 32);
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

await main();
