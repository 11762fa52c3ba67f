// One benchmark subject, in its own process so that peak RSS belongs to it alone. Modes:
//   --mode latency   one stream: vision, prefill, TTFT, decode tokens/s (--runs runs of --tokens
//                    new tokens, a new picture each time), then a follow-up question about the
//                    last picture (prefix reuse), and this process's peak RSS
//   --mode streams   --streams 1,2,4,8: N requests with N different pictures started at once on
//                    one engine; each stream's TTFT and tokens/s and the aggregate decode rate
//   --mode rss       --slots N: N concurrent conversations filling --context positions each
//                    (a long question, then answer tokens up to the context), peak RSS
//   --mode eventloop the engine in its worker thread (createEngine), the main thread's event-loop
//                    delay while one and then four requests run
//   --mode peer      --peer DIR --peer-dtype D: vistyle and transformers.js on the same weights,
//                    loaded side by side, run alternately (order swapped every round)
// Common flags: --model DIR --provider cpu|cuda|webgpu --threads N --tokens N --runs N.
// Prints one JSON line on stdout.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import sharp from 'sharp';
import { createEngine } from '../src/engine/worker-client.js';
import { createLocalEngine, type LocalEngine } from '../src/engine/local-engine.js';
import { resolveSampling } from '../src/engine/text-parts.js';
import { loadTokenizer } from '../src/engine/tokenizer.js';
import { createLogger, setRootLogger } from '../src/log.js';
import type { ChatMessage, ExecutionProvider, GenerateRequest, GenerationResult } from '../src/engine/types.js';
import type { PeerDtype } from '../models/export/transformers-js.js';
import { arg, list, median } from './args.js';
import { loadPeer } from './peer.js';

export const QUESTION = 'What is in this picture? Describe it in one sentence.';
export const FOLLOW_UP = 'And what colour is it mostly?';

export interface RunFigures {
  imageMs: number;
  visionMs: number;
  prefillMs: number;
  ttftMs: number;
  tokensPerSecond: number;
  promptTokens: number;
  newTokens: number;
}

export interface FollowUpFigures {
  ttftMs: number;
  prefillMs: number;
  promptTokens: number;
  cachedPromptTokens: number;
}

export interface LatencyResult {
  loadMs: number;
  runs: RunFigures[];
  followUps: FollowUpFigures[];
  peakRssMiB: number;
}

export interface StreamFigures {
  ttftMs: number;
  tokensPerSecond: number;
  tokens: number;
}

export interface StreamsResult {
  slots: number;
  byStreams: Array<{
    streams: number;
    perStream: StreamFigures[];
    /** Tokens decoded by all streams while every stream was decoding, per second of that window. */
    aggregateTokensPerSecond: number;
    /** false when the streams never decoded at the same time (the window was empty). */
    overlapped: boolean;
    /** New tokens each stream asked for (more with more streams, so that they decode together). */
    tokensPerStream: number;
    wallMs: number;
  }>;
  peakRssMiB: number;
}

export interface RssResult {
  slots: number;
  context: number;
  promptTokens: number;
  positions: number;
  /** This process's RSS with the model loaded, before the first request. */
  loadedRssMiB: number;
  peakRssMiB: number;
}

export interface EventLoopResult {
  phases: Array<{ streams: number; p50Ms: number; p99Ms: number; maxMs: number; wallMs: number }>;
}

export interface PeerResult {
  dtype: string;
  vistyle: Array<{ ttftMs: number; tokensPerSecond: number }>;
  peer: Array<{ ttftMs: number; tokensPerSecond: number }>;
  sameTokens: boolean;
}

/** A deterministic RGB test picture (smooth gradients plus a pattern; `variant` shifts it), as PNG bytes. */
export async function benchImage(size: number, variant = 0): Promise<Uint8Array> {
  const pixels = Buffer.alloc(size * size * 3);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const i = (y * size + x) * 3;
      pixels[i] = ((x + variant * 37) * 255) / size;
      pixels[i + 1] = ((y + variant * 11) * 255) / size;
      pixels[i + 2] = (((x ^ y) + variant * 5) & 0x3f) * 4;
    }
  }
  return new Uint8Array(await sharp(pixels, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer());
}

function showing(text: string): ChatMessage {
  return { role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text }] };
}

const rssMiB = (): number => process.resourceUsage().maxRSS / 1024;

function figures(r: GenerationResult): RunFigures {
  return {
    imageMs: r.timings.imageMs,
    visionMs: r.timings.visionMs,
    prefillMs: r.timings.prefillMs,
    ttftMs: r.ttftMs,
    tokensPerSecond: r.tokensPerSecond,
    promptTokens: r.promptTokens,
    newTokens: r.tokens.length,
  };
}

interface Common {
  model: string;
  provider: ExecutionProvider;
  threads: number;
  tokens: number;
  runs: number;
}

function greedy(tokens: number): GenerateRequest['sampling'] {
  // ignore end-of-text: every run decodes the same number of tokens
  return { ...resolveSampling({}), greedy: true, maxNewTokens: tokens, stopStrings: [] };
}

async function engineFor(c: Common, extra: { maxContextTokens?: number; slots?: number } = {}): Promise<LocalEngine> {
  // featureCacheSize 0: every request pays for the vision graph, as a new picture does
  return createLocalEngine({ modelDir: c.model, provider: c.provider, threads: c.threads, featureCacheSize: 0, ...extra });
}

async function latency(c: Common): Promise<LatencyResult> {
  const t0 = performance.now();
  const engine = await engineFor(c);
  const loadMs = performance.now() - t0;
  const size = engine.info.imageSize;
  const runs: RunFigures[] = [];
  const followUps: FollowUpFigures[] = [];
  for (let i = 0; i < c.runs; i++) {
    const image = await benchImage(size, i);
    const first = await engine.generate({ images: [image], messages: [showing(QUESTION)], sampling: greedy(c.tokens) }).result;
    runs.push(figures(first));
    const follow = await engine.generate({
      images: [image],
      messages: [showing(QUESTION), { role: 'assistant', content: first.text }, { role: 'user', content: FOLLOW_UP }],
      sampling: greedy(Math.min(4, c.tokens)),
    }).result;
    followUps.push({ ttftMs: follow.ttftMs, prefillMs: follow.timings.prefillMs, promptTokens: follow.promptTokens, cachedPromptTokens: follow.cachedPromptTokens ?? 0 });
  }
  await engine.close();
  return { loadMs, runs, followUps, peakRssMiB: rssMiB() };
}

/**
 * New tokens per stream with `n` streams. Streams start together but prefill one after another
 * (between decode steps), so with a short answer the first ones finish before the last one's first
 * token and the streams never decode together; 32 tokens per stream (at most 256) keeps the early
 * ones decoding until the last has joined on this machine.
 */
export function streamTokens(tokens: number, n: number): number {
  return Math.max(tokens, Math.min(32 * n, 256));
}

async function streams(c: Common, counts: number[]): Promise<StreamsResult> {
  const slots = Math.max(...counts);
  const engine = await engineFor(c, { slots });
  const size = engine.info.imageSize;
  const images = await Promise.all(Array.from({ length: slots + 1 }, (_, i) => benchImage(size, 100 + i)));
  // warm-up: first-run allocations are not the figure
  await engine.generate({ images: [images[slots]!], messages: [showing(QUESTION)], sampling: greedy(2) }).result;
  const byStreams: StreamsResult['byStreams'] = [];
  for (const n of counts) {
    const tokens = streamTokens(c.tokens, n);
    const stamps: number[][] = Array.from({ length: n }, () => []);
    const t0 = performance.now();
    const results = await Promise.all(
      Array.from({ length: n }, (_, s) =>
        engine.generate(
          { images: [images[s]!], messages: [showing(`${QUESTION} (${s + 1})`)], sampling: greedy(tokens) },
          { onToken: () => void stamps[s]!.push(performance.now()) },
        ).result),
    );
    const wallMs = performance.now() - t0;
    const start = Math.max(...stamps.map((s) => s[0] ?? Infinity));
    const end = Math.min(...stamps.map((s) => s.at(-1) ?? -Infinity));
    let aggregate: number;
    let overlapped = end > start;
    if (overlapped) {
      // tokens each stream produced after the last stream's first token, up to the first stream's end
      const inWindow = stamps.reduce((sum, s) => sum + s.filter((t) => t > start && t <= end).length, 0);
      aggregate = (inWindow / (end - start)) * 1000;
    } else {
      const all = stamps.flat();
      aggregate = ((all.length - n) / (Math.max(...all) - Math.min(...all))) * 1000;
      overlapped = n === 1;
    }
    if (n === 1) aggregate = results[0]!.tokensPerSecond;
    byStreams.push({
      streams: n,
      perStream: results.map((r) => ({ ttftMs: r.ttftMs, tokensPerSecond: r.tokensPerSecond, tokens: r.tokens.length })),
      aggregateTokensPerSecond: aggregate,
      overlapped,
      tokensPerStream: tokens,
      wallMs,
    });
  }
  await engine.close();
  return { slots, byStreams, peakRssMiB: rssMiB() };
}

async function rss(c: Common, slots: number, context: number): Promise<RssResult> {
  const engine = await engineFor(c, { maxContextTokens: context, slots });
  const loadedRssMiB = process.memoryUsage().rss / 1048576;
  const tokenizer = await loadTokenizer(c.model);
  const answer = Math.min(c.tokens, 32);
  // a question long enough that picture + question + answer fill the context
  const budget = context - engine.info.imageTokens - answer - 24;
  const sentence = 'Describe every object in this picture, its colour, its size and where it is. ';
  const perSentence = tokenizer.encode(sentence).length;
  const question = sentence.repeat(Math.max(1, Math.floor(budget / perSentence)));
  const size = engine.info.imageSize;
  const results = await Promise.all(
    Array.from({ length: slots }, async (_, s) =>
      engine.generate({ images: [await benchImage(size, 200 + s)], messages: [showing(`${s} ${question}`)], sampling: greedy(answer) }).result),
  );
  await engine.close();
  const r = results[0]!;
  return { slots, context, promptTokens: r.promptTokens, positions: r.promptTokens + r.tokens.length, loadedRssMiB, peakRssMiB: rssMiB() };
}

async function eventLoop(c: Common): Promise<EventLoopResult> {
  const engine = await createEngine({ modelDir: c.model, provider: c.provider, threads: c.threads, slots: 4 });
  const size = engine.info.imageSize;
  const phases: EventLoopResult['phases'] = [];
  try {
    await engine.generate({ images: [await benchImage(size, 300)], messages: [showing(QUESTION)], sampling: greedy(2) }).result;
    for (const n of [1, 4]) {
      const images = await Promise.all(Array.from({ length: n }, (_, i) => benchImage(size, 310 + i)));
      const h = monitorEventLoopDelay({ resolution: 1 });
      const t0 = performance.now();
      h.enable();
      await Promise.all(images.map((image, i) =>
        engine.generate({ images: [image], messages: [showing(`${QUESTION} ${i}`)], sampling: greedy(c.tokens) }).result));
      h.disable();
      phases.push({ streams: n, p50Ms: h.percentile(50) / 1e6, p99Ms: h.percentile(99) / 1e6, maxMs: h.max / 1e6, wallMs: performance.now() - t0 });
    }
  } finally {
    await engine.close();
  }
  return { phases };
}

async function peerPair(c: Common, peerDir: string, peerDtype: PeerDtype): Promise<PeerResult> {
  const engine = await engineFor(c);
  const peer = await loadPeer(peerDir, peerDtype, c.threads);
  const size = engine.info.imageSize;
  const out: PeerResult = { dtype: peerDtype, vistyle: [], peer: [], sameTokens: true };
  try {
    const warm = await benchImage(size, 400);
    await engine.generate({ images: [warm], messages: [showing(QUESTION)], sampling: greedy(2) }).result;
    await peer.generate(warm, QUESTION, 2);
    for (let i = 0; i < c.runs; i++) {
      const image = await benchImage(size, 410 + i);
      let ours: GenerationResult | undefined;
      let theirs: Awaited<ReturnType<typeof peer.generate>> | undefined;
      const runOurs = async (): Promise<void> => {
        ours = await engine.generate({ images: [image], messages: [showing(QUESTION)], sampling: greedy(c.tokens) }).result;
      };
      const runTheirs = async (): Promise<void> => {
        theirs = await peer.generate(image, QUESTION, c.tokens);
      };
      if (i % 2 === 0) {
        await runOurs();
        await runTheirs();
      } else {
        await runTheirs();
        await runOurs();
      }
      out.vistyle.push({ ttftMs: ours!.ttftMs, tokensPerSecond: ours!.tokensPerSecond });
      out.peer.push({ ttftMs: theirs!.ttftMs, tokensPerSecond: theirs!.tokensPerSecond });
      const n = ours!.tokens.length;
      if (theirs!.tokens.slice(0, n).join(',') !== ours!.tokens.join(',')) out.sameTokens = false;
    }
  } finally {
    await engine.close();
    await peer.close();
  }
  return out;
}

async function main(): Promise<void> {
  setRootLogger(createLogger({ level: 'warn' }));
  const c: Common = {
    model: arg('model', ''),
    provider: arg('provider', 'cpu') as ExecutionProvider,
    threads: Number(arg('threads', '2')),
    tokens: Number(arg('tokens', '32')),
    runs: Number(arg('runs', '3')),
  };
  if (!c.model) throw new Error('--model DIR is required');
  const mode = arg('mode', 'latency');
  let out: unknown;
  if (mode === 'latency') out = await latency(c);
  else if (mode === 'streams') out = await streams(c, list('streams', '1,2,4,8').map(Number));
  else if (mode === 'rss') out = await rss(c, Number(arg('slots', '1')), Number(arg('context', '2048')));
  else if (mode === 'eventloop') out = await eventLoop(c);
  else if (mode === 'peer') out = await peerPair(c, arg('peer', ''), arg('peer-dtype', 'fp32') as PeerDtype);
  else throw new Error(`unknown --mode ${mode}`);
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

export { median };
if (process.argv[1] && /measure\.(ts|js)$/.test(process.argv[1])) await main();
