// Styles switched per request through the engine the bot uses (the worker): back-to-back requests
// in grumpy (adapter A), salesman (adapter B), plain (no adapter) and grumpy again must each answer
// like a model with that adapter merged into its weights — with the same sessions throughout.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { writePeftAdapter, type LoraModuleWeights } from '../../models/lora/writer.js';
import { ModelManifestSchema } from '../../models/manifest.js';
import { createLocalEngine, type LocalEngine } from '../../src/engine/local-engine.js';
import type { GenerateRequest } from '../../src/engine/types.js';
import { createEngine, type WorkerEngine } from '../../src/engine/worker-client.js';
import { buildStyledRequest } from '../../src/styles/conversation.js';
import { LiveStyleRegistry } from '../../src/styles/registry.js';
import { tinyModel } from '../support/tiny-model.js';
import { randomLoraWeights } from './helpers.js';

const IMAGE = new Uint8Array(readFileSync(join(__dirname, '..', 'fixtures', 'tiny-a', 'image1_56x56.png')));
const root = mkdtempSync(join(tmpdir(), 'vistyle-switch-'));
let baseDir: string;
const mergedDirs: Record<string, string> = {};
let registry: LiveStyleRegistry;

function merge(W: Float32Array, w: LoraModuleWeights, scale: number): Float32Array {
  const out = Float32Array.from(W);
  for (let o = 0; o < w.outFeatures; o++) {
    for (let i = 0; i < w.inFeatures; i++) {
      let delta = 0;
      for (let r = 0; r < w.rank; r++) delta += w.B[o * w.rank + r]! * w.A[r * w.inFeatures + i]!;
      out[o * w.inFeatures + i] = W[o * w.inFeatures + i]! + scale * delta;
    }
  }
  return out;
}

beforeAll(async () => {
  baseDir = (await tinyModel()).modelDir;
  const manifest = ModelManifestSchema.parse(JSON.parse(readFileSync(join(baseDir, 'vistyle-model.json'), 'utf8')));
  const adapters = {
    grumpy: { weights: randomLoraWeights(manifest.lora.targets, 4, 41, 0.4), alpha: 8 },
    salesman: { weights: randomLoraWeights(manifest.lora.targets, 2, 53, 0.4), alpha: 4 },
  };
  for (const [id, { weights, alpha }] of Object.entries(adapters)) {
    writePeftAdapter(join(root, id), { modules: weights, rank: weights[0]!.rank, alpha });
    const byWeight = new Map(weights.map((w) => [`${w.module}.weight`, w]));
    mergedDirs[id] = (
      await tinyModel({
        build: { noLora: true },
        transform: (name, values) => {
          const w = byWeight.get(name);
          return w ? merge(values, w, alpha / w.rank) : values;
        },
      })
    ).modelDir;
  }
  const file = join(root, 'styles.yaml');
  writeFileSync(file, 'styles:\n  grumpy:\n    adapter: ./grumpy\n  salesman:\n    adapter: ./salesman\n');
  registry = new LiveStyleRegistry({ file, watch: false });
}, 240_000);

afterAll(() => {
  registry?.close();
  rmSync(root, { recursive: true, force: true });
});

function request(styleId: string): GenerateRequest {
  const styled = buildStyledRequest(registry.get(styleId)!, { question: 'What is in this picture?', images: [0] });
  return { images: [IMAGE], messages: styled.messages, lora: styled.lora, sampling: { greedy: true, maxNewTokens: 6, stopStrings: [] } };
}

async function tokens(engine: { generate: LocalEngine['generate'] } | WorkerEngine, req: GenerateRequest): Promise<number[]> {
  const stream = engine.generate(req);
  for await (const _ of stream) {
    // drain
  }
  return (await stream.result).tokens;
}

describe('per-request style adapters in the engine', () => {
  it('answers back-to-back requests in different styles like the merged models (worker engine)', async () => {
    const expected: Record<string, number[]> = {};
    for (const id of ['grumpy', 'salesman']) {
      const merged = await createLocalEngine({ modelDir: mergedDirs[id]!, threads: 1 });
      try {
        expected[id] = await tokens(merged, { ...request(id), lora: null });
      } finally {
        await merged.close();
      }
    }
    const engine = await createEngine({ modelDir: baseDir, threads: 1 });
    try {
      const plainBefore = await tokens(engine, request('plain'));
      const got = {
        grumpy: await tokens(engine, request('grumpy')),
        salesman: await tokens(engine, request('salesman')),
        plain: await tokens(engine, request('plain')),
        grumpyAgain: await tokens(engine, request('grumpy')),
      };
      expect(got.grumpy).toEqual(expected.grumpy);
      expect(got.salesman).toEqual(expected.salesman);
      expect(got.grumpyAgain).toEqual(expected.grumpy);
      expect(got.plain).toEqual(plainBefore);
      expect(got.grumpy).not.toEqual(got.salesman);
    } finally {
      await engine.close();
    }
  });

  it('switches adapters without creating sessions again', async () => {
    const create = vi.spyOn(ort.InferenceSession, 'create');
    try {
      const engine = await createLocalEngine({ modelDir: baseDir, threads: 1 });
      const afterLoad = create.mock.calls.length;
      expect(afterLoad).toBeGreaterThanOrEqual(3);
      try {
        for (const id of ['grumpy', 'salesman', 'plain', 'grumpy', 'salesman']) await tokens(engine, request(id));
      } finally {
        await engine.close();
      }
      expect(create.mock.calls.length).toBe(afterLoad);
    } finally {
      create.mockRestore();
    }
  });
});
