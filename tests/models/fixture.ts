// Access to the transformers reference fixture tests/fixtures/tiny-a (see tests/fixtures/README.md).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIXTURES_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
export const TINY_A_DIR = join(FIXTURES_DIR, 'tiny-a');
const REFERENCE_DIR = join(TINY_A_DIR, 'reference');

interface ManifestArray {
  name: string;
  file: string;
  dtype: string;
  shape: number[];
}

let manifest: ManifestArray[] | undefined;

function arrays(): ManifestArray[] {
  manifest ??= (JSON.parse(readFileSync(join(REFERENCE_DIR, 'manifest.json'), 'utf8')) as { arrays: ManifestArray[] }).arrays;
  return manifest;
}

export interface FixtureArray {
  shape: number[];
  data: Float32Array;
}

/** A float32 reference array (little-endian, C order) with its shape from manifest.json. */
export function fixtureArray(name: string): FixtureArray {
  const entry = arrays().find((a) => a.name === name);
  if (!entry) throw new Error(`no reference array ${name}`);
  const bytes = readFileSync(join(REFERENCE_DIR, entry.file));
  const copy = new Uint8Array(bytes); // aligned copy
  if (entry.dtype === 'float32') {
    return { shape: entry.shape, data: new Float32Array(copy.buffer, 0, copy.length / 4) };
  }
  return { shape: entry.shape, data: Float32Array.from(copy) };
}

export interface FixtureInputs {
  input_ids: number[];
  attention_mask: number[];
  position_ids: number[];
  image_token_positions: number[];
  step2_input_id: number;
  step2_position_id: number;
  num_image_tokens: number;
  special_tokens: Record<string, number>;
  generate: { new_tokens: number[]; eos_token_id: number; max_new_tokens: number };
  batch: {
    input_ids: number[][];
    attention_mask: number[][];
    position_ids: number[][];
    generate_new_tokens: number[][];
  };
}

export function fixtureInputs(): FixtureInputs {
  return JSON.parse(readFileSync(join(REFERENCE_DIR, 'inputs.json'), 'utf8')) as FixtureInputs;
}

/** Max |a - b| over the elements where keep(i) (all by default). */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>, keep?: (i: number) => boolean): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    if (keep && !keep(i)) continue;
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}
