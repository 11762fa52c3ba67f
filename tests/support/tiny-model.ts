// Tiny random LLaVA checkpoints built into model folders, for every test that needs a model:
// `await tinyModel(options?)` generates a checkpoint (models/checkpoint/generate.ts) and builds it
// (models/build/build.ts) in a temporary folder, memoised per options within the process.
// The defaults are the reference fixture's dimensions (tests/fixtures/tiny-a): text 64 hidden,
// 2 layers, 4 query / 2 kv heads, vocab 512 with the specials at 500..503; vision 56 px, patch 14.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateCheckpoint, type CheckpointOptions } from '../../models/checkpoint/generate.js';
import { buildModel, type BuildOptions } from '../../models/build/build.js';

export interface TinyModelOptions extends CheckpointOptions {
  /** Build options (dtype, LoRA targets, allPositionLogits, ...). */
  build?: Omit<BuildOptions, 'checkpointDir' | 'outDir' | 'onProgress'>;
}

export interface TinyModel {
  /** The generated Hugging Face checkpoint folder. */
  checkpointDir: string;
  /** The built model folder (vistyle-model.json + graphs). */
  modelDir: string;
}

let root: string | undefined;
const memo = new Map<string, Promise<TinyModel>>();
let counter = 0;

function tempRoot(): string {
  if (!root) {
    const dir = mkdtempSync(join(tmpdir(), 'vistyle-tiny-'));
    root = dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  return root;
}

async function make(options: TinyModelOptions): Promise<TinyModel> {
  const dir = join(tempRoot(), `m${counter++}`);
  const checkpointDir = join(dir, 'checkpoint');
  const modelDir = join(dir, 'model');
  const { build, ...checkpoint } = options;
  generateCheckpoint(checkpointDir, checkpoint);
  await buildModel({ ...build, checkpointDir, outDir: modelDir });
  return { checkpointDir, modelDir };
}

/**
 * A generated + built tiny model. Identical options share one build per process (options with a
 * `transform` function are never shared).
 */
export function tinyModel(options: TinyModelOptions = {}): Promise<TinyModel> {
  if (options.transform) return make(options);
  const key = JSON.stringify(options);
  let model = memo.get(key);
  if (!model) {
    model = make(options);
    memo.set(key, model);
    model.catch(() => memo.delete(key));
  }
  return model;
}
