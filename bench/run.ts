// `npm run bench`: a random-weight checkpoint of llava-interleave-qwen-0.5b's real dimensions,
// built to fp32 graphs (with LoRA inputs, and with --no-lora for the idle-LoRA cost), then vision
// encode, prefill, time to first token, decode speed and peak RSS for a 384x384 picture and a short
// question on CPU. Everything generated lives in bench/.work/ (gitignored) and is reused by later
// runs. Each model is measured in its own process (bench/measure.ts) so peak RSS is its own.
//
//   npm run bench -- [--tokens N] [--runs N] [--pair-runs N] [--threads N] [--no-idle-lora] [--kv-fetch] [--no-write]
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { withEngineSection } from './results-file.js';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateCheckpoint, REAL_CHECKPOINT_OPTIONS } from '../models/checkpoint/generate.js';
import { buildModel, isBuiltModel } from '../models/build/build.js';
import type { MeasureResult, PairResult, RunFigures } from './measure.js';

const here = dirname(fileURLToPath(import.meta.url));

/** The repository root: the nearest folder above this file with vistyle's package.json. */
function repoRoot(): string {
  let dir = here;
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'vistyle') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('cannot find the vistyle repository root');
    dir = up;
  }
}

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

const log = (message: string): void => {
  process.stderr.write(`[bench] ${message}\n`);
};

function ensureCheckpoint(dir: string): void {
  const marker = join(dir, '.complete');
  const signature = JSON.stringify(REAL_CHECKPOINT_OPTIONS);
  if (existsSync(marker) && readFileSync(marker, 'utf8') === signature) return;
  rmSync(dir, { recursive: true, force: true });
  log(`generating a random checkpoint of the real dimensions in ${dir} (bf16, about 1.7 GB)...`);
  const t = Date.now();
  generateCheckpoint(dir, { ...REAL_CHECKPOINT_OPTIONS, seed: 7 });
  writeFileSync(marker, signature);
  log(`checkpoint ready in ${((Date.now() - t) / 1000).toFixed(0)} s`);
}

async function ensureBuilt(checkpointDir: string, outDir: string, noLora: boolean): Promise<void> {
  const marker = join(outDir, '.bench-complete');
  if (isBuiltModel(outDir) && existsSync(marker)) return;
  log(`building ${outDir} (fp32${noLora ? ', --no-lora' : ''})...`);
  const result = await buildModel({ checkpointDir, outDir, dtype: 'fp32', noLora, onProgress: (m) => log(`  ${m}`) });
  writeFileSync(marker, `${result.seconds}\n`);
}

function runMeasure(measureJs: string, args: string[]): string {
  const out = execFileSync(process.execPath, [measureJs, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
  return out.trim().split('\n').at(-1)!;
}

function measure(measureJs: string, modelDir: string, tokens: number, runs: number, threads: number, kvFetch: boolean): MeasureResult {
  const args = ['--model', modelDir, '--tokens', String(tokens), '--runs', String(runs), '--threads', String(threads)];
  if (kvFetch) args.push('--kv-fetch');
  return JSON.parse(runMeasure(measureJs, args)) as MeasureResult;
}

function measurePair(measureJs: string, a: string, b: string, tokens: number, runs: number, threads: number): PairResult {
  const args = ['--model', a, '--pair', b, '--tokens', String(tokens), '--runs', String(runs), '--threads', String(threads)];
  return JSON.parse(runMeasure(measureJs, args)) as PairResult;
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

type Figures = Record<keyof RunFigures, number>;

/** Per figure over the runs: the median and the best (least time, most tokens/s). */
function summarise(runs: RunFigures[], pick: 'median' | 'best'): Figures {
  const keys = Object.keys(runs[0]!) as Array<keyof RunFigures>;
  const best = (key: keyof RunFigures, values: number[]): number => (key === 'tokensPerSecond' ? Math.max(...values) : Math.min(...values));
  return Object.fromEntries(keys.map((k) => [k, pick === 'median' ? median(runs.map((r) => r[k])) : best(k, runs.map((r) => r[k]))])) as Figures;
}

function ortVersion(root: string): string {
  return (JSON.parse(readFileSync(join(root, 'node_modules', 'onnxruntime-node', 'package.json'), 'utf8')) as { version: string }).version;
}

function machine(root: string): string[] {
  const cpu = cpus()[0]?.model ?? 'unknown CPU';
  return [
    `- CPU: ${cpu.trim()}, ${availableParallelism()} logical cores available`,
    `- RAM: ${(totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `- OS: ${process.platform} ${process.arch}`,
    `- Node ${process.versions.node}, onnxruntime-node ${ortVersion(root)}`,
  ];
}

const f = (n: number, digits = 0): string => n.toFixed(digits);

async function main(): Promise<void> {
  const root = repoRoot();
  const work = join(root, 'bench', '.work');
  mkdirSync(work, { recursive: true });
  const tokens = Number(arg('tokens', '32'));
  const runs = Number(arg('runs', '3'));
  const threads = Number(arg('threads', String(availableParallelism())));
  const idleLora = !process.argv.includes('--no-idle-lora');
  const kvFetch = process.argv.includes('--kv-fetch');

  const checkpoint = join(work, 'checkpoint-real');
  ensureCheckpoint(checkpoint);
  const withLora = join(work, 'model-real-fp32');
  await ensureBuilt(checkpoint, withLora, false);
  const noLora = join(work, 'model-real-fp32-nolora');
  if (idleLora) await ensureBuilt(checkpoint, noLora, true);

  const measureJs = join(here, 'measure.js');
  if (!existsSync(measureJs)) throw new Error(`${measureJs} is missing: run through \`npm run bench\` (it builds first)`);
  log(`measuring ${withLora}: ${runs} runs of ${tokens} new tokens, ${threads} threads...`);
  const subject = measure(measureJs, withLora, tokens, runs, threads, kvFetch);
  const pairRuns = Number(arg('pair-runs', '4'));
  const pair = idleLora
    ? (log(`idle LoRA: ${withLora} and ${noLora} alternating in one process, ${pairRuns} rounds...`),
      measurePair(measureJs, withLora, noLora, tokens, pairRuns, threads))
    : undefined;

  // The first run includes onnxruntime's first-run allocations; it is shown on its own.
  const later = subject.runs.length > 1 ? subject.runs.slice(1) : subject.runs;
  const s = summarise(later, 'median');
  const b = summarise(later, 'best');
  const first = subject.runs[0]!;
  const lines = [
    `## CPU fp32, random weights of the real dimensions (${new Date().toISOString().slice(0, 10)})`,
    '',
    ...machine(root),
    `- onnxruntime intra-op threads: ${threads}; picture 384x384 PNG; question "${'What is in this picture? Describe it in one sentence.'}" (raw, ${s.promptTokens} prompt tokens); greedy, ${tokens} new tokens`,
    '',
    '| figure | first run | best of later runs | median of later runs |',
    '|---|---:|---:|---:|',
    `| image decode + resize + normalise (ms) | ${f(first.imageMs, 1)} | ${f(b.imageMs, 1)} | ${f(s.imageMs, 1)} |`,
    `| vision encode (ms) | ${f(first.visionMs)} | ${f(b.visionMs)} | ${f(s.visionMs)} |`,
    `| prefill, ${s.promptTokens} tokens (ms) | ${f(first.prefillMs)} | ${f(b.prefillMs)} | ${f(s.prefillMs)} |`,
    `| time to first token (ms) | ${f(first.ttftMs)} | ${f(b.ttftMs)} | ${f(s.ttftMs)} |`,
    `| decode (tokens/s) | ${f(first.tokensPerSecond, 2)} | ${f(b.tokensPerSecond, 2)} | ${f(s.tokensPerSecond, 2)} |`,
    '',
    `Model load (three sessions): ${f(subject.loadMs)} ms. Peak RSS of the measuring process: ${f(subject.peakRssMiB)} MiB.`,
  ];
  if (pair) {
    const pa = summarise(pair.a.runs, 'best');
    const pb = summarise(pair.b.runs, 'best');
    const pct = (x: number, y: number): string => `${x >= y ? '+' : ''}${f(((x - y) / y) * 100, 1)}%`;
    const row = (label: string, key: keyof RunFigures, digits = 0): string =>
      `| ${label} | ${f(pa[key], digits)} | ${f(pb[key], digits)} | ${pct(pa[key], pb[key])} |`;
    lines.push(
      '',
      `### Idle LoRA inputs (rank-0 tensors fed) vs a --no-lora build`,
      '',
      `Both models loaded in one process and run alternately (${pair.a.runs.length} rounds after a warm-up, order swapped each round),`,
      'so load from other processes hits both alike; best run of each.',
      '',
      '| figure | with LoRA inputs, r = 0 | --no-lora | difference |',
      '|---|---:|---:|---:|',
      row('vision encode (ms)', 'visionMs'),
      row('prefill (ms)', 'prefillMs'),
      row('time to first token (ms)', 'ttftMs'),
      row('decode (tokens/s)', 'tokensPerSecond', 2),
      `| decoder step after 760 tokens, ${pair.decodeStepMs.steps} steps alternating step by step (mean ms) | ${f(pair.decodeStepMs.a, 1)} | ${f(pair.decodeStepMs.b, 1)} | ${pct(pair.decodeStepMs.a, pair.decodeStepMs.b)} |`,
    );
  }
  if (subject.kvFetch) {
    const k = subject.kvFetch;
    lines.push(
      '',
      '### KV cache: present rows copied by append() vs written in place through pre-allocated fetches',
      '',
      `Mean decoder step over ${k.steps} steps after a 760-token prefix: append() ${f(k.appendStepMs, 1)} ms, ` +
        `pre-allocated fetches ${f(k.preallocatedStepMs, 1)} ms.`,
    );
  }
  const markdown = `${lines.join('\n')}\n`;
  process.stdout.write(`\n${markdown}`);
  writeFileSync(join(work, 'last-results.md'), markdown);
  writeFileSync(join(work, 'last-results.json'), `${JSON.stringify({ subject, pair }, null, 2)}\n`);
  if (!process.argv.includes('--no-write')) {
    const file = join(root, 'bench', 'RESULTS.md');
    writeFileSync(file, withEngineSection(existsSync(file) ? readFileSync(file, 'utf8') : '', markdown));
    log(`updated the engine section of ${file}`);
  }
}

await main();
