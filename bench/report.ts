// The bench's figures -> markdown for bench/RESULTS.md: tables per dtype, the physical bound
// beside each figure, and the targets of issue 7 (CPU) / issue 8 (GPU) said plainly as met or
// not, by how much, and what bounds them.
import type { LlavaConfig } from '../models/checkpoint/config.js';
import type { AccuracyFigures } from './accuracy.js';
import type { MachineFigures } from './bandwidth.js';
import { median } from './args.js';
import type { EventLoopResult, LatencyResult, PeerResult, RssResult, StreamsResult } from './measure.js';

export interface DtypeFigures {
  dtype: string;
  /** Bytes of the decoder graph's weights: what one decode step reads besides the KV cache. */
  decoderWeightBytes: number;
  /** KV cache bytes per position (all layers, keys and values). */
  kvBytesPerPosition: number;
  latency: LatencyResult;
  streams?: StreamsResult;
  accuracy?: AccuracyFigures;
}

export interface BenchFigures {
  date: string;
  tiny: boolean;
  provider: string;
  threads: number;
  tokens: number;
  machineLines: string[];
  machine: MachineFigures;
  config: LlavaConfig;
  dtypes: DtypeFigures[];
  rss: RssResult[];
  eventLoop?: EventLoopResult & { dtype: string };
  peers: Array<PeerResult & { vistyleDtype: string }>;
}

const f = (n: number, digits = 0): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const pct = (x: number): string => `${f(x * 100, 0)}%`;
const MiB = 2 ** 20;
/** Bytes in MiB, or KiB below one MiB (tiny checkpoints). */
const size = (bytes: number): string => (bytes >= MiB ? `${f(bytes / MiB, 1)} MiB` : `${f(bytes / 1024, 1)} KiB`);

/** Multiply-adds of the linear layers, as FLOPs (2 per multiply-add): vision + projector per picture, decoder per token. */
export function linearFlops(c: LlavaConfig): { visionPerImage: number; decoderPerToken: number; lmHead: number } {
  const v = c.vision;
  const t = c.text;
  const patches = Math.floor(v.imageSize / v.patchSize) ** 2;
  const visionLayer = 4 * v.hiddenSize * v.hiddenSize + 2 * v.hiddenSize * v.intermediateSize;
  const projector = v.hiddenSize * t.hiddenSize + t.hiddenSize * t.hiddenSize;
  const q = t.numHeads * t.headDim;
  const kv = t.numKvHeads * t.headDim;
  const decoderLayer = t.hiddenSize * q + 2 * t.hiddenSize * kv + q * t.hiddenSize + 3 * t.hiddenSize * t.intermediateSize;
  return {
    visionPerImage: 2 * patches * (c.featureLayerIndex * visionLayer + projector),
    decoderPerToken: 2 * t.numLayers * decoderLayer,
    lmHead: 2 * t.hiddenSize * t.vocabSize,
  };
}

/** Decode tokens/s the memory bandwidth allows: `streams` rows per step at `context` positions each. */
export function decodeBound(d: DtypeFigures, bandwidth: number, streams: number, context: number): number {
  const bytes = d.decoderWeightBytes + streams * context * d.kvBytesPerPosition;
  return (streams * bandwidth) / bytes;
}

interface Row {
  label: string;
  cells: string[];
}

function table(head: string[], rows: Row[]): string[] {
  return [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.label} | ${r.cells.join(' | ')} |`)];
}

function later<T>(runs: T[]): T[] {
  return runs.length > 1 ? runs.slice(1) : runs;
}

interface Target {
  what: string;
  measured: string;
  met: boolean | null;
  margin: string;
  bound: string;
}

export function renderReport(b: BenchFigures): string {
  const bw = b.machine.readBytesPerSecond;
  const gemm = b.machine.matmulFlops;
  const flops = linearFlops(b.config);
  const lines: string[] = [];
  const title = b.tiny ? 'tiny checkpoint (--tiny: exercises the code path; the figures mean nothing)' : 'random weights of the real dimensions';
  lines.push(`## Engine benchmark, ${b.provider.toUpperCase()}, ${title} (${b.date})`, '', ...b.machineLines);
  lines.push(
    `- measured here: memory read bandwidth ${f(bw / 1e9, 1)} GB/s (onnxruntime ReduceSum over ${f(b.machine.readBufferBytes / MiB)} MiB, ${b.threads} threads); ` +
      `float32 MatMul ${f(gemm / 1e9, 1)} GFLOP/s (${b.machine.matmulShape.join('x')})`,
    `- ${b.threads} intra-op threads; one ${b.config.vision.imageSize}x${b.config.vision.imageSize} picture, the same question, greedy, ${b.tokens} new tokens; ` +
      'a new picture for every first question (image-feature cache off)',
    '- bounds: decode = bandwidth ÷ (decoder weights + KV cache read per step: every position of every stream); ' +
      'TTFT = FLOPs of the linear layers (vision + projector + prefill) ÷ the measured MatMul rate (attention not counted: a floor for fp32; int8/int4 multiply in int8 and can beat it)',
    '',
  );

  // --- per dtype, one stream ---
  const names = b.dtypes.map((d) => d.dtype);
  const rows: Row[] = [];
  const per = (fn: (d: DtypeFigures) => string): string[] => b.dtypes.map(fn);
  const med = (d: DtypeFigures, key: 'visionMs' | 'prefillMs' | 'ttftMs' | 'tokensPerSecond' | 'promptTokens'): number =>
    median(later(d.latency.runs).map((r) => r[key]));
  const ttftBoundMs = (d: DtypeFigures): number =>
    ((flops.visionPerImage + med(d, 'promptTokens') * flops.decoderPerToken + flops.lmHead) / gemm) * 1000;
  const singleBound = (d: DtypeFigures): number => decodeBound(d, bw, 1, med(d, 'promptTokens') + b.tokens / 2);
  rows.push({ label: 'vision encode (ms)', cells: per((d) => f(med(d, 'visionMs'))) });
  rows.push({ label: 'prefill (ms)', cells: per((d) => `${f(med(d, 'prefillMs'))} (${f(med(d, 'promptTokens'))} tokens)`) });
  rows.push({ label: 'time to first token (ms) [linear layers at the float32 MatMul rate]', cells: per((d) => `${f(med(d, 'ttftMs'))} [${f(ttftBoundMs(d))}]`) });
  rows.push({
    label: 'decode (tokens/s) [bandwidth bound, fraction]',
    cells: per((d) => `${f(med(d, 'tokensPerSecond'), 2)} [${f(singleBound(d), 1)}, ${pct(med(d, 'tokensPerSecond') / singleBound(d))}]`),
  });
  rows.push({
    label: 'follow-up about the same picture: TTFT (ms), reused positions, share of the first TTFT',
    cells: per((d) => {
      const fu = later(d.latency.followUps);
      const t = median(fu.map((x) => x.ttftMs));
      return `${f(t)}, ${f(median(fu.map((x) => x.cachedPromptTokens)))} of ${f(median(fu.map((x) => x.promptTokens)))}, ${pct(t / med(d, 'ttftMs'))}`;
    }),
  });
  rows.push({ label: 'peak RSS, one stream (MiB)', cells: per((d) => f(d.latency.peakRssMiB)) });
  rows.push({ label: 'bytes read per decode token: weights + KV cache', cells: per((d) => `${size(d.decoderWeightBytes)} + ${size((med(d, 'promptTokens') + b.tokens / 2) * d.kvBytesPerPosition)}`) });
  rows.push({ label: 'model load (ms)', cells: per((d) => f(d.latency.loadMs)) });
  lines.push('### One stream, per dtype (median of the runs after the first)', '', ...table(['figure', ...names], rows), '');

  // --- accuracy ---
  const acc = b.dtypes.filter((d) => d.accuracy?.prefillCosine !== undefined);
  if (acc.length > 0) {
    lines.push(
      '### Accuracy against fp32 (same checkpoint, same prompt and pixels; teacher-forced greedy steps)',
      '',
      ...table(['dtype', 'prefill logits cosine', 'prefill logits max |diff|', `top-1 = fp32's over ${acc[0]!.accuracy!.steps} steps`], acc.map((d) => ({
        label: d.dtype,
        cells: [f(d.accuracy!.prefillCosine!, 6), f(d.accuracy!.prefillMaxAbsDiff!, 4), pct(d.accuracy!.top1Agreement!)],
      }))),
      '',
    );
  }

  // --- concurrency ---
  for (const d of b.dtypes) {
    if (!d.streams) continue;
    const single = d.streams.byStreams.find((s) => s.streams === 1)?.aggregateTokensPerSecond ?? NaN;
    lines.push(
      `### ${d.dtype}: concurrent streams on one engine (${d.streams.slots} slots; peak RSS ${f(d.streams.peakRssMiB)} MiB)`,
      '',
      ...table(['streams', 'new tokens each', 'aggregate decode tokens/s', 'x one stream', 'bandwidth bound (fraction)', 'each stream tokens/s (min–max)', 'each stream TTFT ms (min–max)'],
        d.streams.byStreams.map((s) => {
          const bound = decodeBound(d, bw, s.streams, med(d, 'promptTokens') + (s.tokensPerStream ?? b.tokens) / 2);
          const tps = s.perStream.map((p) => p.tokensPerSecond);
          const ttft = s.perStream.map((p) => p.ttftMs);
          return {
            label: String(s.streams),
            cells: [
              String(s.tokensPerStream ?? b.tokens),
              `${f(s.aggregateTokensPerSecond, 2)}${s.overlapped ? '' : ' (never decoded together)'}`,
              f(s.aggregateTokensPerSecond / single, 2),
              `${f(bound, 1)} (${pct(s.aggregateTokensPerSecond / bound)})`,
              `${f(Math.min(...tps), 2)}–${f(Math.max(...tps), 2)}`,
              `${f(Math.min(...ttft))}–${f(Math.max(...ttft))}`,
            ],
          };
        })),
      '',
    );
  }

  if (b.rss.length > 0) {
    const kvPerPosition = b.dtypes.find((d) => d.dtype === 'int4')?.kvBytesPerPosition ?? NaN;
    lines.push(
      '### Peak RSS serving full contexts (int4)', '',
      'Where it goes: "loaded" is the RSS with the sessions created, before the first request (weights and',
      'onnxruntime\'s own copies of them); "KV cache" is what the streams\' positions occupy (positions ×',
      `${f(kvPerPosition / 1024)} KiB per position, float32 keys and values of every layer); the rest is the working memory of`,
      'vision and prefill (activations, onnxruntime\'s arena, output copies).', '',
      ...table(['streams', 'positions per stream', 'peak RSS (MiB)', 'loaded (MiB)', 'KV cache (MiB)', 'the rest (MiB)'], b.rss.map((r) => {
        const kv = (r.slots * r.positions * kvPerPosition) / 2 ** 20;
        const loaded = r.loadedRssMiB ?? NaN;
        return { label: String(r.slots), cells: [`${r.positions} (context ${r.context})`, f(r.peakRssMiB), f(loaded), f(kv), f(r.peakRssMiB - loaded - kv)] };
      })), '');
  }
  if (b.eventLoop) {
    lines.push(`### Main-thread event loop while the engine (${b.eventLoop.dtype}) runs in its worker (monitorEventLoopDelay, 1 ms resolution)`, '',
      ...table(['streams', 'p50 ms', 'p99 ms', 'max ms'], b.eventLoop.phases.map((p) => ({ label: String(p.streams), cells: [f(p.p50Ms, 1), f(p.p99Ms, 1), f(p.maxMs, 1)] }))), '');
  }
  for (const p of b.peers) {
    const vt = median(p.vistyle.map((r) => r.ttftMs));
    const pt = median(p.peer.map((r) => r.ttftMs));
    const vd = median(p.vistyle.map((r) => r.tokensPerSecond));
    const pd = median(p.peer.map((r) => r.tokensPerSecond));
    lines.push(
      `### Peer: transformers.js (@huggingface/transformers, same ${p.dtype} weights and graph blocks), run alternately in one process`,
      '',
      ...table(['figure', `vistyle ${p.vistyleDtype}`, `transformers.js ${p.dtype}`, 'vistyle ÷ transformers.js'], [
        { label: 'time to first token (ms)', cells: [f(vt), f(pt), f(vt / pt, 2)] },
        { label: 'decode (tokens/s)', cells: [f(vd, 2), f(pd, 2), f(vd / pd, 2)] },
      ]),
      '',
      `Same greedy tokens on both sides: ${p.sameTokens ? 'yes' : 'NO'} (${p.vistyle.length} rounds, medians).`,
      '',
    );
  }

  lines.push(...targets(b, med, singleBound, ttftBoundMs));
  return `${lines.join('\n')}\n`;
}

function targets(
  b: BenchFigures,
  med: (d: DtypeFigures, key: 'visionMs' | 'prefillMs' | 'ttftMs' | 'tokensPerSecond' | 'promptTokens') => number,
  singleBound: (d: DtypeFigures) => number,
  ttftBoundMs: (d: DtypeFigures) => number,
): string[] {
  const out: Target[] = [];
  const gpu = b.provider !== 'cpu';
  const int4 = b.dtypes.find((d) => d.dtype === 'int4');
  const best = int4 ?? b.dtypes[0]!;
  const off = (value: number, goal: number): string => f((Math.abs(value - goal) / goal) * 100, 0);
  const ge = (what: string, value: number, goal: number, unit: string, bound: string): void =>
    void out.push({ what, measured: `${f(value, 2)} ${unit}`, met: value >= goal, margin: `${off(value, goal)}% ${value >= goal ? 'above' : 'short of'} the goal`, bound });
  const le = (what: string, value: number, goal: number, unit: string, bound: string): void =>
    void out.push({ what, measured: `${f(value, value < 10 ? 2 : 0)} ${unit}`, met: value <= goal, margin: `${off(value, goal)}% ${value <= goal ? 'under' : 'over'} the goal`, bound });
  const decodeWhy = (d: DtypeFigures): string => `bandwidth bound ${f(singleBound(d), 1)} tokens/s; reached ${pct(med(d, 'tokensPerSecond') / singleBound(d))}`;
  const ttftWhy = (d: DtypeFigures): string => `vision ${f(med(d, 'visionMs'))} + prefill ${f(med(d, 'prefillMs'))} ms; linear layers at the float32 MatMul rate ${f(ttftBoundMs(d))} ms (int8/int4 multiply in int8: not a floor for them)`;

  if (!gpu) {
    ge(`${best.dtype} decode, one stream ≥ 30 tokens/s`, med(best, 'tokensPerSecond'), 30, 'tokens/s', decodeWhy(best));
    if (best.streams) {
      const s1 = best.streams.byStreams.find((s) => s.streams === 1)?.aggregateTokensPerSecond;
      const s4 = best.streams.byStreams.find((s) => s.streams === 4);
      if (s1 && s4) {
        const context = med(best, 'promptTokens') + (s4.tokensPerStream ?? b.tokens) / 2;
        const bound4 = decodeBound(best, b.machine.readBytesPerSecond, 4, context);
        const bound1 = decodeBound(best, b.machine.readBytesPerSecond, 1, context);
        ge(`${best.dtype} aggregate at 4 streams ≥ 3× one stream`, s4.aggregateTokensPerSecond / s1, 3, '×',
          `bandwidth bound at 4 streams ${f(bound4, 1)} tokens/s = ${f(bound4 / bound1, 2)}× one stream's: each row reads its own float32 KV cache (${size(context * best.kvBytesPerPosition)}) every step; reached ${pct(s4.aggregateTokensPerSecond / bound4)}`);
      }
    }
    le(`${best.dtype} TTFT for a new picture ≤ 6 s`, med(best, 'ttftMs') / 1000, 6, 's', ttftWhy(best));
    const fu = later(best.latency.followUps);
    le(`${best.dtype} follow-up TTFT ≤ 10% of the first`, (median(fu.map((x) => x.ttftMs)) / med(best, 'ttftMs')) * 100, 10, '%',
      `${f(median(fu.map((x) => x.cachedPromptTokens)))} of ${f(median(fu.map((x) => x.promptTokens)))} positions reused`);
    const r1 = b.rss.find((r) => r.slots === 1);
    if (r1) {
      const kv = (r1.positions * (b.dtypes.find((d) => d.dtype === 'int4')?.kvBytesPerPosition ?? NaN)) / 2 ** 20;
      le('int4 peak RSS, one stream of 2,048 positions ≤ 1.5 GB', r1.peakRssMiB / 1024, 1.5, 'GiB',
        `model loaded ${f(r1.loadedRssMiB ?? NaN)} MiB + float32 KV cache ${f(kv)} MiB + prefill working memory; 4 streams ${f(b.rss.find((r) => r.slots === 4)?.peakRssMiB ?? NaN)} MiB`);
    }
    for (const p of b.peers) {
      const vd = median(p.vistyle.map((r) => r.tokensPerSecond)) / median(p.peer.map((r) => r.tokensPerSecond));
      const vt = median(p.vistyle.map((r) => r.ttftMs)) / median(p.peer.map((r) => r.ttftMs));
      ge(`decode ≥ 2× transformers.js (${p.dtype} weights)`, vd, 2, '×', 'same graphs; the difference is per-step overhead (inputs/outputs copied, full cache re-fed)');
      le(`TTFT ≤ 0.6× transformers.js (${p.dtype} weights)`, vt, 0.6, '×', 'same vision and prefill graphs on both sides');
    }
  } else {
    ge(`${best.dtype} decode, one stream ≥ 400 tokens/s`, med(best, 'tokensPerSecond'), 400, 'tokens/s', decodeWhy(best));
    le(`${best.dtype} TTFT for one photo + question ≤ 60 ms`, med(best, 'ttftMs'), 60, 'ms', ttftWhy(best));
    const s32 = best.streams?.byStreams.find((s) => s.streams === 32);
    if (s32) ge(`${best.dtype} aggregate at 32 streams ≥ 3,000 tokens/s`, s32.aggregateTokensPerSecond, 3000, 'tokens/s', 'host-side bandwidth bound only (the GPU\'s own bandwidth is not measured here)');
  }
  if (b.eventLoop) {
    const p99 = Math.max(...b.eventLoop.phases.map((p) => p.p99Ms));
    le('main-thread event-loop p99 < 20 ms throughout', p99, 20, 'ms', 'engine in its worker; the main thread only relays tokens');
  }
  return [
    '### Targets',
    '',
    '| target | measured | met | by how much | what bounds it (measured) |',
    '|---|---:|---|---:|---|',
    ...out.map((t) => `| ${t.what} | ${t.measured} | ${t.met === null ? 'n/a' : t.met ? 'yes' : '**no**'} | ${t.margin} | ${t.bound} |`),
    '',
  ];
}
