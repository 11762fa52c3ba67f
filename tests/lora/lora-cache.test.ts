// The engine's LoRA cache (src/engine/lora.ts) with the real PEFT loader: a cached adapter
// is reused while its files are unchanged, and loaded again when either file changes in place —
// including its adapter_config.json alone (lora_alpha sets the scale), as between the trainer's
// two writes or after an operator's edit.
import { mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writePeftAdapter } from '../../models/lora/writer.js';
import type { ModelManifest } from '../../models/manifest.js';
import { LoraCache, defaultLoraLoader } from '../../src/engine/lora.js';
import type { ModelFolder } from '../../src/engine/model-folder.js';
import type { ModelSessions } from '../../src/engine/session.js';
import { attentionTargets, randomLoraWeights } from './helpers.js';

const root = mkdtempSync(join(tmpdir(), 'vistyle-adapter-cache-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const targets = attentionTargets();
// Only what the cache reads of a built model: its LoRA targets and dtype, and the sessions' input types.
const folder = { dir: root, manifest: { dtype: 'fp32', lora: { targets } } as unknown as ModelManifest } as ModelFolder;
const noInputs = { inputTypes: new Map() };
const sessions = { vision: noInputs, embed: noInputs, decoder: noInputs } as unknown as ModelSessions;

function firstB(feeds: ReadonlyMap<string, { data: unknown }>): number {
  return (feeds.get(targets[0]!.inputB)!.data as Float32Array)[0]!;
}

describe('LoraCache', () => {
  it('reuses a loaded adapter, and reloads it when its config changes in place', async () => {
    const dir = join(root, 'grumpy');
    const weights = randomLoraWeights(targets, 4, 3);
    writePeftAdapter(dir, { modules: weights, rank: 4, alpha: 8 });
    const cache = new LoraCache(defaultLoraLoader, folder, sessions, 4);

    const first = await cache.get({ path: dir });
    expect(await cache.get({ path: dir })).toBe(first);
    expect(firstB(first.feeds)).toBeCloseTo(2 * weights[0]!.B[0]!, 6); // alpha 8 / r 4

    // lora_alpha 8 -> 16 in adapter_config.json only; the weights file keeps its time
    const weightsFile = join(dir, 'adapter_model.safetensors');
    const weightsTime = statSync(weightsFile).mtime;
    const configFile = join(dir, 'adapter_config.json');
    const config = JSON.parse(readFileSync(configFile, 'utf8')) as { lora_alpha: number };
    writeFileSync(configFile, JSON.stringify({ ...config, lora_alpha: 16 }));
    const later = new Date(Date.now() + 5_000); // a different mtime whatever the clock's resolution
    utimesSync(configFile, later, later);
    expect(statSync(weightsFile).mtime).toEqual(weightsTime);

    const second = await cache.get({ path: dir });
    expect(second).not.toBe(first);
    expect(firstB(second.feeds)).toBeCloseTo(4 * weights[0]!.B[0]!, 6); // alpha 16 / r 4
  });

  it('names a folder that does not exist', async () => {
    const cache = new LoraCache(defaultLoraLoader, folder, sessions, 4);
    await expect(cache.get({ path: join(root, 'nope') })).rejects.toThrow(/nope/);
  });
});
