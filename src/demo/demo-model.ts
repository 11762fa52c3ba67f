// The demo model: a tiny LLaVA checkpoint with random weights, generated and built on this machine
// (models/checkpoint/generate.ts + models/build) into <VISTYLE_HOME>/demo, so that a first answer
// needs no download. It has the real model's architecture and the hub's chat template at toy
// sizes (a 512-token byte-level vocabulary, 2 layers), so every stage runs — picture decoding, the
// vision graph, the tokenizer and template, the decoder with its cache, the sampler — while its
// answers are noise. Built once per vistyle version and reused; a few hundred kilobytes.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { buildModel } from '../../models/build/build.js';
import { generateCheckpoint } from '../../models/checkpoint/generate.js';
import { MANIFEST_FILE } from '../../models/manifest.js';
import { vistyleHome } from '../paths.js';
import { VERSION } from '../version.js';

/** Said before and after every demo answer. */
export const DEMO_NOTICE =
  'this is the demo model: tiny, random weights, made on this machine. Its answers are noise; ' +
  'they show that the pipeline (picture, vision graph, tokenizer, decoder, sampler) works here.';

export const REAL_MODEL_HINT = 'for real answers: `vistyle model pull` (about 1.8 GB), then `vistyle ask --image photo.jpg "What is in this picture?"`';

/** Where the demo lives: <VISTYLE_HOME>/demo/{model,picture.png}. */
export function demoDir(): string {
  return join(vistyleHome(), 'demo');
}

export function demoModelDir(): string {
  return join(demoDir(), 'model');
}

/** Whether `dir` holds a demo model built by this vistyle version. */
function isCurrentBuild(dir: string): boolean {
  const manifest = join(dir, MANIFEST_FILE);
  if (!existsSync(manifest)) return false;
  try {
    const parsed = JSON.parse(readFileSync(manifest, 'utf8')) as { builder?: unknown };
    return parsed.builder === `vistyle ${VERSION}`;
  } catch {
    return false;
  }
}

/**
 * The demo model folder, generated and built first when it is missing or from another vistyle
 * version. `built` says whether this call built it.
 */
export async function ensureDemoModel(onProgress?: (message: string) => void): Promise<{ dir: string; built: boolean }> {
  const dir = demoModelDir();
  if (isCurrentBuild(dir)) return { dir, built: false };
  mkdirSync(demoDir(), { recursive: true });
  const checkpointDir = join(demoDir(), `.checkpoint-${process.pid}`);
  onProgress?.(`making the demo model in ${dir} (once)`);
  try {
    generateCheckpoint(checkpointDir, { seed: 2024, chatTemplate: 'hub' });
    await buildModel({ checkpointDir, outDir: dir });
  } finally {
    rmSync(checkpointDir, { recursive: true, force: true });
  }
  return { dir, built: true };
}

/** A small generated picture (a colour gradient with a dark square) for a demo without --image. */
export async function ensureDemoPicture(): Promise<string> {
  const file = join(demoDir(), 'picture.png');
  if (existsSync(file)) return file;
  mkdirSync(demoDir(), { recursive: true });
  const width = 96;
  const height = 72;
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      const inSquare = x > 30 && x < 60 && y > 20 && y < 50;
      pixels[i] = inSquare ? 30 : Math.round((x / width) * 255);
      pixels[i + 1] = inSquare ? 30 : Math.round((y / height) * 255);
      pixels[i + 2] = inSquare ? 60 : 180;
    }
  }
  const tmp = `${file}.${process.pid}.tmp`;
  await sharp(pixels, { raw: { width, height, channels: 3 } }).png().toFile(tmp);
  renameSync(tmp, file);
  return file;
}
