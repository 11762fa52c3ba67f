// Inputs shared by the engine tests: bad pictures, the fixture picture, forced token sequences.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { buildModel, type BuildOptions } from '../../models/build/build.js';
import { generateCheckpoint, type CheckpointOptions } from '../../models/checkpoint/generate.js';
import type { ChatMessage } from '../../src/engine/types.js';

export const FIXTURES = join(import.meta.dirname, '..', 'fixtures');
export const TINY_A = join(FIXTURES, 'tiny-a');
export const TINY_A_IMAGE = join(TINY_A, 'image1_56x56.png');

/** A user message showing request picture 0, then `text`. */
export function showing(text: string): ChatMessage {
  return { role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text }] };
}

export function fixtureImage(): Uint8Array {
  return new Uint8Array(readFileSync(TINY_A_IMAGE));
}

export interface ReferenceInputs {
  prompt_text: string;
  input_ids: number[];
  generate: { new_tokens: number[]; max_new_tokens: number; eos_token_id: number };
  step2_input_id: number;
  messages: Array<{ role: string; content: Array<{ type: string; text?: string }> }>;
}

export function referenceInputs(): ReferenceInputs {
  return JSON.parse(readFileSync(join(TINY_A, 'reference', 'inputs.json'), 'utf8')) as ReferenceInputs;
}

/** The question of the fixture's prompt A. */
export function referenceQuestion(): string {
  const text = referenceInputs().messages[0]!.content.find((c) => c.type === 'text')?.text;
  if (!text) throw new Error('inputs.json has no question');
  return text;
}

interface ArrayEntry {
  name: string;
  file: string;
  shape: number[];
}

/** A float32 array of the reference fixture, with its shape. */
export function referenceArray(name: string): { data: Float32Array; shape: number[] } {
  const manifest = JSON.parse(readFileSync(join(TINY_A, 'reference', 'manifest.json'), 'utf8')) as { arrays: ArrayEntry[] };
  const entry = manifest.arrays.find((a) => a.name === name);
  if (!entry) throw new Error(`no reference array ${name}`);
  const bytes = readFileSync(join(TINY_A, 'reference', entry.file));
  const data = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  return { data, shape: entry.shape };
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** Plain text that is not a picture. */
export function textFileBytes(): Uint8Array {
  return new TextEncoder().encode('This is a text file, not a picture.\n'.repeat(20));
}

/** A valid JPEG cut in half. */
export async function truncatedJpeg(): Promise<Uint8Array> {
  const jpeg = await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 200, g: 100, b: 50 } } })
    .jpeg({ quality: 90 })
    .toBuffer();
  return new Uint8Array(jpeg.subarray(0, Math.floor(jpeg.length / 2)));
}

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Buffer {
  const typed = Buffer.concat([Buffer.from(type, 'ascii'), Buffer.from(data)]);
  const out = Buffer.alloc(8 + data.length + 4);
  out.writeUInt32BE(data.length, 0);
  typed.copy(out, 4);
  out.writeUInt32BE(crc32(typed), 8 + data.length);
  return out;
}

/**
 * A PNG whose header says width x height (20000 x 20000 = 400 megapixels) with a tiny IDAT: a
 * decompression bomb that must be refused from its header, before any decoding.
 */
export function hugePngHeader(width = 20000, height = 20000): Uint8Array {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  // zlib stream of a few zero bytes: far too little data, but the header is what matters.
  const idat = Buffer.from([0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01]);
  return new Uint8Array(Buffer.concat([signature, pngChunk('IHDR', ihdr), pngChunk('IDAT', idat), pngChunk('IEND', new Uint8Array(0))]));
}

/** UTF-8 bytes of a string: with the toy byte tokenizer, these are its token ids. */
export function byteTokens(text: string): number[] {
  return Array.from(new TextEncoder().encode(text));
}

/** Builds a checkpoint folder into a fresh temporary model folder (fp32 unless told). */
export async function buildTemp(checkpointDir: string, options: Partial<BuildOptions> = {}): Promise<string> {
  const outDir = mkdtempSync(join(tmpdir(), 'vistyle-model-'));
  await buildModel({ checkpointDir, outDir, dtype: 'fp32', ...options });
  return outDir;
}

/** The tiny-a reference fixture, built. */
export function buildTinyA(options: Partial<BuildOptions> = {}): Promise<string> {
  return buildTemp(TINY_A, options);
}

/** A freshly generated random checkpoint (models/checkpoint/generate.ts), built. */
export async function generatedModel(
  checkpoint: CheckpointOptions = {},
  build: Partial<BuildOptions> = {},
): Promise<{ checkpointDir: string; modelDir: string }> {
  const checkpointDir = mkdtempSync(join(tmpdir(), 'vistyle-ckpt-'));
  generateCheckpoint(checkpointDir, checkpoint);
  const modelDir = await buildTemp(checkpointDir, build);
  return { checkpointDir, modelDir };
}

export function removeDirs(...dirs: Array<string | undefined>): void {
  for (const dir of dirs) if (dir) rmSync(dir, { recursive: true, force: true });
}

export const REPO_ROOT = join(import.meta.dirname, '..', '..');
export const CLI_JS = join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');

/**
 * `npm test` builds dist before vitest runs; a lone `vitest run` builds here when dist is missing.
 * Asynchronous, so vitest's worker keeps answering while tsc runs.
 */
export async function ensureBuiltCli(): Promise<void> {
  if (existsSync(CLI_JS) && existsSync(join(REPO_ROOT, 'dist', 'src', 'engine', 'worker.js'))) return;
  await run(process.execPath, [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: REPO_ROOT });
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion without blocking the event loop. */
export function run(command: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd ?? REPO_ROOT, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

/** `node dist/src/cli/main.js ...args` */
export function runCli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<RunResult> {
  return run(process.execPath, [CLI_JS, ...args], { env });
}
