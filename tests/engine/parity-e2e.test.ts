// Parity with Hugging Face transformers on the tiny-a fixture, through the engine's own path:
// the prefill logits, the KV cache after prefill (keys after RoPE, values), the cached second
// step, every greedy step's logits and the greedy tokens; then end to end through the built CLI,
// `vistyle ask --raw --greedy --json --max-tokens 16` on tiny-a/image1_56x56.png.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Generator } from '../../src/engine/generator.js';
import { HostKvCache } from '../../src/engine/kv-cache.js';
import { openModelFolder } from '../../src/engine/model-folder.js';
import { loadModelSessions, type ModelSessions } from '../../src/engine/session.js';
import { createTextParts, resolveSampling } from '../../src/engine/text-parts.js';
import {
  TINY_A_IMAGE,
  buildTinyA,
  ensureBuiltCli,
  runCli,
  fixtureImage,
  maxAbsDiff,
  referenceArray,
  referenceInputs,
  referenceQuestion,
  removeDirs,
  showing,
} from './engine-test-helpers.js';

describe('parity with transformers on tiny-a, through the generator', () => {
  let modelDir: string;
  let sessions: ModelSessions;
  const inputs = referenceInputs();
  const V = 512;
  const L = inputs.input_ids.length;

  beforeAll(async () => {
    modelDir = await buildTinyA();
  });
  afterAll(async () => {
    await sessions?.release();
    removeDirs(modelDir);
  });

  it('reproduces the prefill logits, the cache, the cached step and all 16 greedy steps', async () => {
    const folder = openModelFolder(modelDir);
    const m = folder.manifest;
    sessions = await loadModelSessions(folder, { provider: 'cpu', deviceId: 0, threads: 1 });
    const text = await createTextParts(folder);
    const cache = new HostKvCache({ numLayers: m.text.numLayers, batch: 1, numKvHeads: m.text.numKvHeads, headDim: m.text.headDim, capacity: 128, dtype: 'float32' });
    const generator = new Generator({ sessions, manifest: m, text, cache });
    const steps: Float32Array[] = [];
    let cacheAfterPrefill: Float32Array[] = [];
    const result = await generator.generate(
      { images: [fixtureImage()], messages: [showing(referenceQuestion())], sampling: resolveSampling({ greedy: true, maxNewTokens: 16, stopStrings: [] }) },
      {
        onLogits: (step, logits) => {
          steps.push(logits);
          if (step === 0) {
            const past = cache.pastFeeds();
            cacheAfterPrefill = Array.from({ length: m.text.numLayers }, (_, i) => Float32Array.from(past[`past.${i}`]!.data as Float32Array));
          }
        },
      },
    );

    expect(result.promptTokens).toBe(L);
    expect(result.tokens).toEqual(inputs.generate.new_tokens);
    expect(result.finishReason).toBe('length');

    const logits = referenceArray('logits').data;
    expect(maxAbsDiff(steps[0]!, logits.subarray((L - 1) * V, L * V))).toBeLessThanOrEqual(1e-4);
    expect(maxAbsDiff(steps[1]!, referenceArray('step2_logits').data)).toBeLessThanOrEqual(1e-4);
    const generated = referenceArray('generate_logits').data;
    expect(steps).toHaveLength(16);
    steps.forEach((step, i) => {
      expect(maxAbsDiff(step, generated.subarray(i * V, (i + 1) * V)), `step ${i}`).toBeLessThanOrEqual(1e-4);
    });

    // past_kv is [n,2,1,kvH,L,hd]; the engine's cache is per layer [L,2,1,kvH,hd] (sequence-major).
    const pastKv = referenceArray('past_kv');
    const [, , , kvH, , hd] = pastKv.shape as [number, number, number, number, number, number];
    let worst = 0;
    cacheAfterPrefill.forEach((layer, n) => {
      expect(layer.length).toBe(L * 2 * kvH * hd);
      for (let pos = 0; pos < L; pos++) {
        for (let kv = 0; kv < 2; kv++) {
          for (let h = 0; h < kvH; h++) {
            for (let d = 0; d < hd; d++) {
              const ours = layer[((pos * 2 + kv) * kvH + h) * hd + d]!;
              const theirs = pastKv.data[((((n * 2 + kv) * kvH + h) * L + pos) * hd) + d]!;
              worst = Math.max(worst, Math.abs(ours - theirs));
            }
          }
        }
      }
    });
    expect(worst).toBeLessThanOrEqual(1e-4);
  });
});

describe('vistyle ask end to end on tiny-a', () => {
  let modelDir: string;
  beforeAll(async () => {
    await ensureBuiltCli();
    modelDir = await buildTinyA();
  });
  afterAll(() => removeDirs(modelDir));

  it('`ask --raw --greedy --json --max-tokens 16` gives exactly the reference greedy tokens', async () => {
    const run = await runCli(['ask', '--model', modelDir, '--image', TINY_A_IMAGE, '--raw', '--greedy', '--json', '--max-tokens', '16', '--threads', '1', referenceQuestion()]);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    const summary = JSON.parse(lines.at(-1)!) as { text: string; tokens: number[]; promptTokens: number; ttftMs: number; tokensPerSecond: number };
    expect(summary.tokens).toEqual(referenceInputs().generate.new_tokens);
    expect(summary.promptTokens).toBe(referenceInputs().input_ids.length);
    expect(summary.ttftMs).toBeGreaterThan(0);
    expect(summary.tokensPerSecond).toBeGreaterThan(0);
    // The streamed text came first, then the JSON line.
    expect(run.stdout.startsWith(summary.text)).toBe(true);
  });
});
