// VISTYLE_MAX_MEMORY_MB (EngineOptions.maxMemoryBytes): the engine plans weights + KV cache rows +
// prefix cache + working memory + caches before loading, refuses a combination over the limit
// with the numbers, sizes a default prefix cache into what is left, and refuses an adapter too
// large for the share of memory the limit leaves it.
import { join } from 'node:path';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePeftAdapter } from '../../models/lora/writer.js';
import { ModelManifestSchema } from '../../models/manifest.js';
import { kvCacheBytes } from '../../src/engine/kv-cache.js';
import { createLocalEngine } from '../../src/engine/local-engine.js';
import { isVistyleError, type VistyleError } from '../../src/errors.js';
import { randomLoraWeights } from '../lora/helpers.js';
import { tinyModel } from '../support/tiny-model.js';
import { fixtureImage, removeDirs, showing } from './engine-test-helpers.js';

const MiB = 2 ** 20;

describe('the engine memory limit', () => {
  let modelDir: string;
  const adapters = mkdtempSync(join(tmpdir(), 'vistyle-memory-'));
  beforeAll(async () => {
    modelDir = (await tinyModel()).modelDir;
    const manifest = ModelManifestSchema.parse(JSON.parse(readFileSync(join(modelDir, 'vistyle-model.json'), 'utf8')));
    writePeftAdapter(join(adapters, 'r4'), { modules: randomLoraWeights(manifest.lora.targets, 4, 3), rank: 4, alpha: 4 });
    writePeftAdapter(join(adapters, 'r64'), { modules: randomLoraWeights(manifest.lora.targets, 64, 5), rank: 64, alpha: 64 });
  });
  afterAll(() => removeDirs(adapters));

  it('refuses at load a slots/context/prefix-cache combination over the limit, with the numbers', async () => {
    const error = await createLocalEngine({ modelDir, threads: 1, slots: 8, maxContextTokens: 8192, prefixCacheBytes: 512 * MiB, maxMemoryBytes: 600 * MiB }).catch((e: unknown) => e);
    expect(isVistyleError(error, 'CONFIG_INVALID')).toBe(true);
    const message = (error as Error).message;
    expect(message).toMatch(/^VISTYLE_MAX_MEMORY_MB=600 is too small/);
    expect(message).toMatch(/KV cache \d+ MB \(8 slot\(s\) x 8192 positions\) \+ prefix cache 512 MB/);
    expect(message).toMatch(/Lower VISTYLE_ENGINE_SLOTS, VISTYLE_MAX_CONTEXT_TOKENS or VISTYLE_PREFIX_CACHE_MB/);
    const details = (error as VistyleError).details as { plannedMb: number; maxMemoryMb: number; prefixCacheMb: number };
    expect(details.plannedMb).toBeGreaterThan(600);
    expect(details.prefixCacheMb).toBe(512);
  });

  it('sizes the default prefix cache into what the limit leaves, and reports the plan', async () => {
    const engine = await createLocalEngine({ modelDir, threads: 1, slots: 2, maxContextTokens: 1024, maxMemoryBytes: 400 * MiB });
    try {
      const plan = engine.memory;
      expect(plan.total).toBeLessThanOrEqual(400 * MiB);
      expect(plan.kvCache).toBe(kvCacheBytes(engine.cache.spec));
      expect(plan.prefixCache).toBe(engine.prefix.budget);
      expect(plan.prefixCache).toBeGreaterThan(0);
      expect(plan.weights).toBeGreaterThan(0);
      // an adapter of the planned size is served; one far beyond its share is refused, politely
      const ask = (path: string) =>
        engine.generate({ images: [fixtureImage()], messages: [showing('What?')], lora: { path }, sampling: { greedy: true, maxNewTokens: 2, stopStrings: [] } }).result;
      expect((await ask(join(adapters, 'r4'))).tokens.length).toBeGreaterThan(0);
      const error = await ask(join(adapters, 'r64')).catch((e: unknown) => e);
      expect(isVistyleError(error, 'ADAPTER_INVALID')).toBe(true);
      expect((error as Error).message).toMatch(/needs \d+ MB; VISTYLE_MAX_MEMORY_MB leaves \d+ MB for one adapter/);
    } finally {
      await engine.close();
    }
    // without a limit the same adapter is served
    const unlimited = await createLocalEngine({ modelDir, threads: 1, slots: 1 });
    try {
      const result = await unlimited.generate({ images: [fixtureImage()], messages: [showing('What?')], lora: { path: join(adapters, 'r64') }, sampling: { greedy: true, maxNewTokens: 2, stopStrings: [] } }).result;
      expect(result.tokens.length).toBeGreaterThan(0);
    } finally {
      await unlimited.close();
    }
  });
});
