// `npm run bench`: a random-weight checkpoint of llava-interleave-qwen-0.5b's real dimensions,
// generated locally into bench/.work/ (never committed; reused by later runs), built per dtype,
// and measured side by side in one run, each subject in its own process (bench/measure.ts) so
// that peak RSS is its own:
//   - the machine: read bandwidth and MatMul rate (bench/bandwidth.ts), for the bounds
//   - per dtype, one stream: vision, prefill, TTFT, decode tokens/s, follow-up TTFT with prefix
//     reuse, peak RSS; accuracy against fp32 (bench/accuracy.ts); concurrent streams
//   - int4 serving full 2,048-position contexts: peak RSS at 1 and 4 streams
//   - the main thread's event-loop delay with the engine in its worker
//   - the peer, transformers.js on the same weights (models/export/transformers-js.ts), run
//     alternately with vistyle
// and writes its section of bench/RESULTS.md (machine, date, targets met or not).
//
//   npm run bench -- [--provider cpu|cuda|webgpu] [--dtype fp32,int8,int4] [--streams 1,2,4,8]
//                    [--tokens 32] [--runs 3] [--threads N] [--peer-dtypes fp32,int4] [--no-peer]
//                    [--block-size 32] [--compute fp32|fp16] [--no-write] [--work DIR] [--tiny]
// --tiny: a tiny generated checkpoint instead (seconds, not an hour): runs every code path, for the
// test suite; it never writes bench/RESULTS.md.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildModel, isBuiltModel, type ModelDtype } from '../models/build/build.js';
import { openCheckpoint } from '../models/checkpoint/reader.js';
import { generateCheckpoint, REAL_CHECKPOINT_OPTIONS, type CheckpointOptions } from '../models/checkpoint/generate.js';
import { exportTransformersJs, PEER_DTYPES, type PeerDtype } from '../models/export/transformers-js.js';
import { ModelManifestSchema, MANIFEST_FILE } from '../models/manifest.js';
import { arg, flag, list } from './args.js';
import type { AccuracyFigures } from './accuracy.js';
import type { MachineFigures } from './bandwidth.js';
import type { EventLoopResult, LatencyResult, PeerResult, RssResult, StreamsResult } from './measure.js';
import { renderReport, type BenchFigures, type DtypeFigures } from './report.js';
import { withEngineSection } from './results-file.js';

const here = dirname(fileURLToPath(import.meta.url));
const ext = extname(fileURLToPath(import.meta.url)); // .ts under tsx, .js when built

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

const log = (message: string): void => void process.stderr.write(`[bench] ${message}\n`);

/** Runs bench/<script> in a child process (same loader as this one) and parses its last stdout line. */
function child<T>(script: string, args: string[], env: Record<string, string> = {}): T {
  const path = join(here, `${script}${ext}`);
  const r = spawnSync(process.execPath, [...process.execArgv, path, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
    env: { ...process.env, ...env },
  });
  if (r.status !== 0) throw new Error(`${script} ${args.join(' ')} exited with ${r.status ?? r.signal}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as T;
}

function ensureCheckpoint(dir: string, options: CheckpointOptions): void {
  const marker = join(dir, '.complete');
  const signature = JSON.stringify(options);
  if (existsSync(marker) && readFileSync(marker, 'utf8') === signature) return;
  rmSync(dir, { recursive: true, force: true });
  log(`generating a random checkpoint in ${dir}...`);
  const t = Date.now();
  generateCheckpoint(dir, options);
  writeFileSync(marker, signature);
  log(`checkpoint ready in ${((Date.now() - t) / 1000).toFixed(0)} s`);
}

interface BuildSpec {
  dtype: ModelDtype;
  blockSize?: number;
  compute?: 'fp32' | 'fp16';
  /** Also write the WebGPU decoder (GroupQueryAttention over device buffers) for --provider webgpu. */
  deviceDecoder?: boolean;
}

async function ensureBuilt(checkpointDir: string, outDir: string, spec: BuildSpec): Promise<void> {
  const marker = join(outDir, '.bench-complete');
  const signature = JSON.stringify(spec);
  if (isBuiltModel(outDir) && existsSync(marker) && readFileSync(marker, 'utf8') === signature) return;
  log(`building ${outDir} (${spec.dtype})...`);
  const quantized = spec.dtype === 'int8' || spec.dtype === 'int4';
  await buildModel({
    checkpointDir,
    outDir,
    dtype: spec.dtype,
    ...(quantized ? { blockSize: spec.blockSize, compute: spec.compute } : {}),
    ...(spec.deviceDecoder ? { deviceDecoder: true } : {}),
    onProgress: (m) => log(`  ${m}`),
  });
  writeFileSync(marker, signature);
}

function ensurePeer(checkpointDir: string, outDir: string, dtype: PeerDtype, blockSize: number | undefined): void {
  const file = join(outDir, 'onnx', `decoder_model_merged${PEER_DTYPES[dtype].suffix}.onnx`);
  const marker = `${file}.bench-complete`;
  if (existsSync(marker) && readFileSync(marker, 'utf8') === String(blockSize ?? '')) return;
  log(`writing the transformers.js layout (${dtype}) in ${outDir}...`);
  exportTransformersJs({ checkpointDir, outDir, dtype, ...(dtype === 'fp32' ? {} : { blockSize }), onProgress: (m) => log(`  ${m}`) });
  writeFileSync(marker, String(blockSize ?? ''));
}

function graphBytes(modelDir: string, graph: string): number {
  const path = join(modelDir, graph);
  return statSync(path).size + (existsSync(`${path}.data`) ? statSync(`${path}.data`).size : 0);
}

function ortVersion(root: string): string {
  return (JSON.parse(readFileSync(join(root, 'node_modules', 'onnxruntime-node', 'package.json'), 'utf8')) as { version: string }).version;
}

function machineLines(root: string): string[] {
  return [
    `- CPU: ${(cpus()[0]?.model ?? 'unknown CPU').trim()}, ${availableParallelism()} logical cores available`,
    `- RAM: ${(totalmem() / 2 ** 30).toFixed(1)} GiB; OS: ${process.platform} ${process.arch}; Node ${process.versions.node}, onnxruntime-node ${ortVersion(root)}`,
  ];
}

async function main(): Promise<void> {
  const root = repoRoot();
  const tiny = flag('tiny');
  const work = arg('work', join(root, 'bench', '.work', ...(tiny ? ['tiny'] : [])));
  mkdirSync(work, { recursive: true });
  const provider = arg('provider', 'cpu');
  const dtypes = list('dtype', 'fp32,int8,int4') as ModelDtype[];
  const streamCounts = list('streams', provider === 'cpu' ? '1,2,4,8' : '1,4,16,32').map(Number);
  const tokens = Number(arg('tokens', tiny ? '6' : '32'));
  const runs = Number(arg('runs', tiny ? '2' : '3'));
  const threads = Number(arg('threads', String(availableParallelism())));
  const blockSize = flag('block-size') ? Number(arg('block-size', '32')) : undefined;
  const compute = flag('compute') ? (arg('compute', 'fp32') as 'fp32' | 'fp16') : undefined;
  const peerDtypes = flag('no-peer') ? [] : (list('peer-dtypes', 'fp32,int4').filter((d) => d in PEER_DTYPES && dtypes.includes(d as ModelDtype)) as PeerDtype[]);
  const common = ['--provider', provider, '--threads', String(threads), '--tokens', String(tokens), '--runs', String(runs)];

  const checkpointOptions: CheckpointOptions = tiny ? { dtype: 'BF16', seed: 7 } : { ...REAL_CHECKPOINT_OPTIONS, seed: 7 };
  const checkpoint = join(work, tiny ? 'checkpoint-tiny' : 'checkpoint-real');
  ensureCheckpoint(checkpoint, checkpointOptions);
  const config = (() => {
    const c = openCheckpoint(checkpoint);
    c.close();
    return c.config;
  })();
  const modelDir = (d: ModelDtype): string => join(work, `model-${d}`);
  for (const d of dtypes) await ensureBuilt(checkpoint, modelDir(d), { dtype: d, blockSize, compute, ...(provider === 'webgpu' ? { deviceDecoder: true } : {}) });
  const peerDir = join(work, 'peer');
  for (const d of peerDtypes) ensurePeer(checkpoint, peerDir, d, blockSize);

  log('measuring the machine (read bandwidth, MatMul rate)...');
  const machine = child<MachineFigures>('bandwidth', ['--threads', String(threads), '--mib', tiny ? '64' : '1024']);

  const figures: DtypeFigures[] = [];
  const referenceFile = join(work, 'accuracy-fp32.json');
  const accuracyFirst = [...dtypes].sort((a, b) => (a === 'fp32' ? -1 : b === 'fp32' ? 1 : 0));
  const accuracy = new Map<string, AccuracyFigures>();
  for (const d of accuracyFirst) {
    log(`accuracy ${d}...`);
    const args = ['--model', modelDir(d), '--threads', String(threads), '--steps', tiny ? '8' : '64'];
    if (d === 'fp32') accuracy.set(d, child<AccuracyFigures>('accuracy', [...args, '--reference-out', referenceFile]));
    else if (dtypes.includes('fp32')) accuracy.set(d, child<AccuracyFigures>('accuracy', [...args, '--reference', referenceFile]));
  }
  for (const d of dtypes) {
    const m = ModelManifestSchema.parse(JSON.parse(readFileSync(join(modelDir(d), MANIFEST_FILE), 'utf8')));
    log(`${d}: one stream, ${runs} runs of ${tokens} tokens + follow-ups...`);
    const latency = child<LatencyResult>('measure', ['--mode', 'latency', '--model', modelDir(d), ...common]);
    log(`${d}: ${streamCounts.join(', ')} concurrent streams...`);
    const streams = child<StreamsResult>('measure', ['--mode', 'streams', '--model', modelDir(d), '--streams', streamCounts.join(','), ...common]);
    const t = m.text;
    figures.push({
      dtype: d,
      decoderWeightBytes: graphBytes(modelDir(d), m.graphs.decoder),
      kvBytesPerPosition: t.numLayers * 2 * t.numKvHeads * t.headDim * (m.kvCache.dtype === 'float16' ? 2 : 4),
      latency,
      streams,
      accuracy: accuracy.get(d),
    });
  }
  const rss: RssResult[] = [];
  if (dtypes.includes('int4')) {
    for (const slots of [1, 4]) {
      log(`int4: peak RSS, ${slots} stream(s) of 2,048 positions...`);
      rss.push(child<RssResult>('measure', ['--mode', 'rss', '--model', modelDir('int4'), '--slots', String(slots), '--context', '2048', ...common]));
    }
  }
  const loopDtype = dtypes.includes('int4') ? 'int4' : dtypes[0]!;
  log(`event loop with the engine (${loopDtype}) in its worker...`);
  const eventLoop = { ...child<EventLoopResult>('measure', ['--mode', 'eventloop', '--model', modelDir(loopDtype), ...common]), dtype: loopDtype };
  const peers: BenchFigures['peers'] = [];
  for (const d of peerDtypes) {
    log(`peer: transformers.js ${d} and vistyle ${d}, alternating...`);
    peers.push({ ...child<PeerResult>('measure', ['--mode', 'peer', '--model', modelDir(d), '--peer', peerDir, '--peer-dtype', d, ...common]), vistyleDtype: d });
  }

  const bench: BenchFigures = {
    date: new Date().toISOString().slice(0, 10),
    tiny,
    provider,
    threads,
    tokens,
    machineLines: machineLines(root),
    machine,
    config,
    dtypes: figures,
    rss,
    eventLoop,
    peers,
  };
  const markdown = renderReport(bench);
  process.stdout.write(`\n${markdown}`);
  writeFileSync(join(work, 'last-results.md'), markdown);
  writeFileSync(join(work, 'last-results.json'), `${JSON.stringify(bench, null, 2)}\n`);
  if (!tiny && !flag('no-write')) {
    const file = join(root, 'bench', 'RESULTS.md');
    writeFileSync(file, withEngineSection(existsSync(file) ? readFileSync(file, 'utf8') : '', markdown));
    log(`updated the engine section of ${file}`);
  }
}

await main();
