// The worker-backed engine (createEngine): streaming over MessagePorts, bad input as typed errors
// with the worker still serving, cancellation, a crash mid-answer (ENGINE_CRASHED, restart, the
// next request answered), and load failures.
import { engineCheck } from '../../src/health/checks.js';
import { copyFileSync, cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelProto } from '../../models/onnx/schema.js';
import { MANIFEST_VERSION } from '../../models/manifest.js';
import { createEngine, type WorkerEngine } from '../../src/engine/worker-client.js';
import type { GenerateRequest } from '../../src/engine/types.js';
import { isVistyleError, type VistyleError } from '../../src/errors.js';
import { CRASH_EXIT_CODE, crashingWorker } from '../support/crash-hook.js';
import { buildTinyA, fixtureImage, hugePngHeader, referenceInputs, referenceQuestion, removeDirs, textFileBytes, truncatedJpeg, showing } from './engine-test-helpers.js';

const GREEDY = { greedy: true, stopStrings: [], maxNewTokens: 16 };

function request(image: Uint8Array = fixtureImage(), text = referenceQuestion()): GenerateRequest {
  return { images: [image], messages: [showing(text)], sampling: GREEDY };
}

describe('worker-backed engine', () => {
  let modelDir: string;
  let engine: WorkerEngine;
  const expected = referenceInputs().generate.new_tokens;

  beforeAll(async () => {
    modelDir = await buildTinyA();
    engine = await createEngine({ modelDir, threads: 1, restartDelayMs: 50 });
  });
  afterAll(async () => {
    await engine?.close();
    removeDirs(modelDir);
  });

  it('answers like the reference and streams the text as deltas', async () => {
    expect(engine.info.imageTokens).toBe(16);
    expect(engine.info.eosTokenIds).toEqual([502, 500]); // eos, then the tokenizer's pad <|endoftext|>
    const stream = engine.generate(request());
    const deltas: string[] = [];
    for await (const delta of stream) deltas.push(delta);
    const result = await stream.result;
    expect(result.tokens).toEqual(expected);
    expect(deltas.join('')).toBe(result.text);
    expect(result.promptTokens).toBe(58);
  });

  it('copies the image once for the worker and leaves the caller its bytes; transferImages hands them over', async () => {
    const image = fixtureImage();
    const kept = engine.generate(request(image));
    expect(image.byteLength).toBeGreaterThan(0);
    expect((await kept.result).tokens).toEqual(expected);
    const moved = new Uint8Array(fixtureImage()); // owns its whole ArrayBuffer
    const handed = engine.generate(request(moved), { transferImages: true });
    expect(moved.byteLength).toBe(0); // detached: the worker has it now
    expect((await handed.result).tokens).toEqual(expected);
  });

  it('turns bad pictures and questions into typed errors and keeps serving', async () => {
    const cases: Array<[string, GenerateRequest, string]> = [
      ['a text file', request(textFileBytes()), 'IMAGE_UNSUPPORTED'],
      ['a truncated JPEG', request(await truncatedJpeg()), 'IMAGE_CORRUPT'],
      ['a 20000x20000 PNG', request(hugePngHeader()), 'IMAGE_TOO_LARGE'],
      ['an empty question', request(fixtureImage(), '  '), 'QUESTION_EMPTY'],
    ];
    for (const [what, bad, code] of cases) {
      const stream = engine.generate(bad);
      const error = await stream.result.catch((e: unknown) => e);
      expect(isVistyleError(error, code as never), `${what}: ${String(error)}`).toBe(true);
      expect((error as Error).message.length).toBeGreaterThan(10);
      // Iterating a failed stream throws the same error.
      await expect((async () => {
        for await (const _ of stream) void _;
      })()).rejects.toMatchObject({ code });
      expect((await engine.generate(request()).result).tokens).toEqual(expected);
    }
  });

  it('cancels mid-stream: the answer ends "cancelled" and the next request is answered in full', async () => {
    const controller = new AbortController();
    const stream = engine.generate({ ...request(), sampling: { ...GREEDY, maxNewTokens: 2000 } }, { signal: controller.signal });
    let deltas = 0;
    for await (const _ of stream) {
      void _;
      if (++deltas === 1) controller.abort();
    }
    const result = await stream.result;
    expect(result.finishReason).toBe('cancelled');
    expect(result.tokens.length).toBeLessThan(2000);
    expect(engine.inFlightCount).toBe(0);
    expect((await engine.generate(request()).result).tokens).toEqual(expected);
  });

  it('runs overlapping requests safely', async () => {
    const results = await Promise.all([0, 1, 2, 3].map(() => engine.generate(request()).result));
    for (const result of results) expect(result.tokens).toEqual(expected);
  });

  it('survives the worker dying mid-answer: ENGINE_CRASHED, a restart, then the next request is answered', async () => {
    // a test entry wrapping the real worker: its first start dies after 3 tokens (crash-worker.ts)
    const crashing = await createEngine({ modelDir, threads: 1, restartDelayMs: 50, ...crashingWorker(3) });
    try {
      const doomed = crashing.generate(request());
      const alsoInFlight = crashing.generate(request());
      const deltas: string[] = [];
      const error = await (async () => {
        for await (const delta of doomed) deltas.push(delta);
      })().catch((e: unknown) => e);
      expect(isVistyleError(error, 'ENGINE_CRASHED')).toBe(true);
      expect((error as VistyleError).details).toMatchObject({ exitCode: CRASH_EXIT_CODE });
      // /readyz's engine check: not ready while the worker is dead or restarting
      expect(engineCheck(crashing)().ready).toBe(false);
      await expect(alsoInFlight.result).rejects.toMatchObject({ code: 'ENGINE_CRASHED' });
      const after = await crashing.generate(request()).result;
      expect(after.tokens).toEqual(expected);
      expect(crashing.starts).toBe(2);
      expect(engineCheck(crashing)()).toEqual({ ready: true });
    } finally {
      await crashing.close();
    }
  });
});

describe('worker-backed engine: starting', () => {
  it('rejects with MODEL_NOT_FOUND for a folder without a built model', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'vistyle-empty-'));
    try {
      const error = await createEngine({ modelDir: empty, threads: 1 }).catch((e: unknown) => e);
      expect(isVistyleError(error, 'MODEL_NOT_FOUND')).toBe(true);
      expect((error as Error).message).toContain(empty);
    } finally {
      removeDirs(empty);
    }
  });

  it('rejects a built model with a missing tensor with MODEL_INVALID, then serves from a good one', async () => {
    const good = await buildTinyA();
    const broken = mkdtempSync(join(tmpdir(), 'vistyle-broken-'));
    try {
      cpSync(good, broken, { recursive: true });
      const decoderPath = join(broken, 'decoder.onnx');
      const model = ModelProto.decode(readFileSync(decoderPath)) as unknown as { graph: { initializer: Array<{ name: string }> } };
      const dropped = model.graph.initializer.find((t) => t.name.includes('layers.1') || t.name.includes('norm'));
      expect(dropped).toBeDefined();
      model.graph.initializer = model.graph.initializer.filter((t) => t !== dropped);
      writeFileSync(decoderPath, ModelProto.encode(model as never).finish());
      const error = await createEngine({ modelDir: broken, threads: 1 }).catch((e: unknown) => e);
      expect(isVistyleError(error, 'MODEL_INVALID')).toBe(true);
      expect((error as Error).message).toContain('decoder');

      // A build of an older vistyle (manifest version 1: the seq-major cache) is MODEL_INVALID,
      // naming the file and saying to rebuild.
      const manifestPath = join(broken, 'vistyle-model.json');
      copyFileSync(join(good, 'vistyle-model.json'), manifestPath);
      const text = readFileSync(manifestPath, 'utf8');
      expect(text).toContain(`"version": ${MANIFEST_VERSION}`);
      writeFileSync(manifestPath, text.replace(`"version": ${MANIFEST_VERSION}`, '"version": 1'));
      const versionError = await createEngine({ modelDir: broken, threads: 1 }).catch((e: unknown) => e);
      expect(isVistyleError(versionError, 'MODEL_INVALID')).toBe(true);
      expect((versionError as Error).message).toContain('vistyle-model.json');
      expect((versionError as Error).message).toMatch(/version 1; this vistyle reads version 2\): rebuild the model/);

      const engine = await createEngine({ modelDir: good, threads: 1 });
      try {
        expect((await engine.generate(request()).result).tokens).toEqual(referenceInputs().generate.new_tokens);
      } finally {
        await engine.close();
      }
    } finally {
      removeDirs(good, broken);
    }
  });

  it('fails with PROVIDER_UNAVAILABLE naming the CUDA library when CUDA is asked for but not installed', async () => {
    const good = await buildTinyA();
    try {
      const error = await createEngine({ modelDir: good, provider: 'cuda' }).catch((e: unknown) => e);
      // On a GPU host with `npm run install-cuda` done, the engine starts instead.
      if (isVistyleError(error, 'PROVIDER_UNAVAILABLE')) {
        expect((error as Error).message).toMatch(/lib[\w.]+\.so/);
      } else {
        expect(error).not.toBeInstanceOf(Error);
        await (error as WorkerEngine).close();
      }
    } finally {
      removeDirs(good);
    }
  });

  it('a closed engine refuses new requests with SHUTTING_DOWN', async () => {
    const good = await buildTinyA();
    try {
      const engine = await createEngine({ modelDir: good, threads: 1 });
      await engine.close();
      await expect(engine.generate(request()).result).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
    } finally {
      removeDirs(good);
    }
  });
});
