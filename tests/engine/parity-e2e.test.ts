// Parity with Hugging Face transformers on the tiny-a fixture, through the engine's own path:
// the prefill logits, the cached second step, every greedy step's logits and the greedy tokens,
// alone and while three other requests decode in the same batch; then end to end through the built CLI,
// `vistyle ask --raw --greedy --json --max-tokens 16` on tiny-a/image1_56x56.png.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLocalEngine, type LocalEngine } from '../../src/engine/local-engine.js';
import type { GenerationResult } from '../../src/engine/types.js';
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

describe('parity with transformers on tiny-a, through the engine', () => {
  let modelDir: string;
  let engine: LocalEngine;
  const inputs = referenceInputs();
  const V = 512;
  const L = inputs.input_ids.length;
  const GREEDY = { greedy: true, maxNewTokens: 16, stopStrings: [] };

  beforeAll(async () => {
    modelDir = await buildTinyA();
    engine = await createLocalEngine({ modelDir, threads: 1, prefixCacheBytes: 0 });
  });
  afterAll(async () => {
    await engine?.close();
    removeDirs(modelDir);
  });

  async function reference(): Promise<{ result: GenerationResult; steps: Float32Array[] }> {
    const steps: Float32Array[] = [];
    const stream = engine.generate(
      { images: [fixtureImage()], messages: [showing(referenceQuestion())], sampling: GREEDY },
      { onLogits: (_step, logits) => steps.push(logits) },
    );
    return { result: await stream.result, steps };
  }

  function expectReference({ result, steps }: { result: GenerationResult; steps: Float32Array[] }): void {
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
  }

  it('reproduces the prefill logits, the cached step and all 16 greedy steps', async () => {
    expectReference(await reference());
  });

  it('holds batched: the same logits and tokens while other requests decode in the same steps', async () => {
    const others = ['Describe it.', 'What colour is it?', 'Is it round?'].map((question) =>
      engine.generate({ images: [fixtureImage()], messages: [showing(question)], sampling: { ...GREEDY, maxNewTokens: 24 } }).result,
    );
    const decodeRowsBefore = engine.batch.stats.decodeRows;
    const stepsBefore = engine.batch.stats.decodeSteps;
    const ours = reference();
    expectReference(await ours);
    await Promise.all(others);
    // the four requests really shared decode steps
    expect(engine.batch.stats.maxBatch).toBe(4);
    expect(engine.batch.stats.decodeRows - decodeRowsBefore).toBeGreaterThan(engine.batch.stats.decodeSteps - stepsBefore);
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
