// The queue's Engine end to end in one process, against a real Redis and the real engine on a
// tiny checkpoint: a front end's RemoteEngine and two QueueWorkers (one with a LoRA adapter in its
// adapters folder, one without). Greedy answers equal the local engine's, token for token; a job
// naming the adapter runs on the worker that advertised it; an adapter nobody serves is refused;
// cancelling reaches the worker and stops the engine early; pictures leave Redis with the job;
// job payloads hold no secrets.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePeftAdapter } from '../../models/lora/writer.js';
import { ModelManifestSchema } from '../../models/manifest.js';
import { loadConfig, type AppConfig, type QueueConfig } from '../../src/config/config.js';
import { createEngine, type WorkerEngine } from '../../src/engine/worker-client.js';
import type { Engine, GenerateRequest, GenerationResult, GenerationStream } from '../../src/engine/types.js';
import { isVistyleError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { QueueFrontEnd } from '../../src/queue/front-end.js';
import { QueueWorker } from '../../src/queue/worker.js';
import { BotMetrics } from '../../src/metrics/metrics.js';
import { randomLoraWeights } from '../lora/helpers.js';
import { skipWithoutRedis, TestRedis } from '../support/redis-server.js';
import { tinyModel } from '../support/tiny-model.js';

const IMAGE = new Uint8Array(readFileSync(new URL('../fixtures/tiny-a/image1_56x56.png', import.meta.url)));
const logger = createLogger({ level: process.env.VISTYLE_TEST_LOG ?? 'silent' });

/** Records what the workers' engine returned (the real engine underneath). */
class RecordingEngine implements Engine {
  readonly results: GenerationResult[] = [];
  constructor(readonly inner: Engine) {}
  get info() {
    return this.inner.info;
  }
  generate(request: GenerateRequest, options?: { signal?: AbortSignal }): GenerationStream {
    const stream = this.inner.generate(request, options);
    stream.result.then((result) => this.results.push(result), () => undefined);
    return stream;
  }
  close() {
    return Promise.resolve();
  }
}

async function collect(stream: GenerationStream): Promise<{ text: string; result: GenerationResult }> {
  let text = '';
  for await (const delta of stream) text += delta;
  return { text, result: await stream.result };
}

describe.skipIf(skipWithoutRedis())('RemoteEngine with two QueueWorkers', () => {
  let server: TestRedis;
  let root: string;
  let engine: WorkerEngine;
  let recording: RecordingEngine;
  let frontEnd: QueueFrontEnd;
  let withAdapter: QueueWorker;
  let plain: QueueWorker;
  let adapterPath: string;
  let config: AppConfig & { queue: QueueConfig };

  beforeAll(async () => {
    server = await TestRedis.start();
    root = mkdtempSync(join(tmpdir(), 'vistyle-remote-'));
    const { modelDir } = await tinyModel();
    const manifest = ModelManifestSchema.parse(JSON.parse(readFileSync(join(modelDir, 'vistyle-model.json'), 'utf8')));
    mkdirSync(join(root, 'adapters-a'));
    mkdirSync(join(root, 'adapters-b'));
    adapterPath = join(root, 'adapters-a', 'grumpy-lora');
    const weights = randomLoraWeights(manifest.lora.targets, 4, 41, 0.4);
    writePeftAdapter(adapterPath, { modules: weights, rank: 4, alpha: 8 });
    engine = await createEngine({ modelDir, threads: 1 });
    recording = new RecordingEngine(engine);
    const env = { VISTYLE_QUEUE_URL: server.url, VISTYLE_QUEUE_LOCK_SECONDS: '5', VISTYLE_HOME: root };
    config = loadConfig(env) as typeof config;
    withAdapter = new QueueWorker({ queue: { ...config.queue, adaptersDir: join(root, 'adapters-a'), workerName: 'with-adapter' }, engine: recording, logger, concurrency: 1 });
    plain = new QueueWorker({ queue: { ...config.queue, adaptersDir: join(root, 'adapters-b'), workerName: 'plain' }, engine: recording, logger, concurrency: 1 });
    await withAdapter.start();
    await plain.start();
    frontEnd = new QueueFrontEnd(config, logger, new BotMetrics());
    await frontEnd.start();
  }, 240_000);

  afterAll(async () => {
    await frontEnd?.close();
    await withAdapter?.close();
    await plain?.close();
    await engine?.close();
    await server?.remove();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const ask = (extra: Partial<GenerateRequest> = {}, maxNewTokens = 8): GenerateRequest => ({
    images: [IMAGE],
    messages: [{ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: 'What is in this picture?' }] }],
    sampling: { greedy: true, maxNewTokens, stopStrings: [] },
    ...extra,
  });

  it('advertises the adapter that loads, and serves one queue per adapter set', () => {
    expect(withAdapter.advertisedAdapters).toEqual(['grumpy-lora']);
    expect(plain.advertisedAdapters).toEqual([]);
    expect(withAdapter.queueName).not.toBe(plain.queueName);
    expect(frontEnd.directory.alive.map((w) => w.name).sort()).toEqual(['plain', 'with-adapter']);
    expect((frontEnd.engine.info as { slots?: number }).slots).toBe(2);
  });

  it('streams greedy answers identical to the local engine’s, for the base model and a LoRA style', async () => {
    for (const request of [ask(), ask({ lora: { path: adapterPath } })]) {
      const local = await collect(engine.generate(request));
      const remote = await collect(frontEnd.engine.generate(request));
      expect(remote.result.tokens).toEqual(local.result.tokens);
      expect(remote.result.text).toBe(local.result.text);
      expect(remote.text).toBe(local.result.text);
    }
    const directory = await frontEnd.directory.refresh();
    const byName = Object.fromEntries(directory.map((w) => [w.name, w]));
    expect(byName['with-adapter']!.jobs).toBeGreaterThanOrEqual(1); // the LoRA job could only go there
  });

  it('refuses a LoRA adapter that no worker serves', async () => {
    const stream = frontEnd.engine.generate(ask({ lora: { path: join(root, 'nowhere', 'salesman-lora') } }));
    await expect(stream.result).rejects.toSatisfy((error: unknown) => isVistyleError(error, 'ADAPTER_INVALID'));
  });

  it('stops the worker’s engine early when the request is cancelled, and removes the pictures', async () => {
    const long = ask({}, 400);
    const reference = await collect(engine.generate(long));
    expect(reference.result.tokens.length).toBeGreaterThan(60); // long enough to cancel in the middle
    recording.results.length = 0;
    const controller = new AbortController();
    const stream = frontEnd.engine.generate(long, { signal: controller.signal });
    let text = '';
    for await (const delta of stream) {
      text += delta;
      controller.abort();
    }
    const result = await stream.result;
    expect(result.finishReason).toBe('cancelled');
    const redis = new Redis(server.port, '127.0.0.1');
    try {
      await expect.poll(() => recording.results.length, { timeout: 10_000 }).toBe(1);
      expect(recording.results[0]!.finishReason).toBe('cancelled');
      expect(recording.results[0]!.tokens.length).toBeLessThan(reference.result.tokens.length);
      expect(text.length).toBeGreaterThan(0);
      await expect.poll(async () => (await redis.keys(`${config.queue.prefix}:blob:*`)).length, { timeout: 5_000 }).toBe(0);
    } finally {
      redis.disconnect();
    }
  });

  it('keeps no picture and no secret in Redis once answers are done', async () => {
    const stream = frontEnd.engine.generate(ask());
    await collect(stream);
    const redis = new Redis(server.port, '127.0.0.1');
    try {
      await expect.poll(async () => (await redis.keys(`${config.queue.prefix}:blob:*`)).length, { timeout: 5_000 }).toBe(0);
      // a job while it waits: its payload has the request, not the front end's settings
      await plain.close();
      await withAdapter.close();
      const waiting = frontEnd.engine.generate(ask());
      await expect.poll(async () => (await redis.keys(`${config.queue.prefix}:blob:*`)).length, { timeout: 5_000 }).toBe(1);
      const jobKeys = (await redis.keys(`${config.queue.prefix}:answers-*:*`)).filter((key) => /:[0-9a-f-]{36}-\d+$/.test(key));
      expect(jobKeys.length).toBe(1);
      const payload = JSON.stringify(await redis.hgetall(jobKeys[0]!));
      expect(payload).toContain('What is in this picture?');
      expect(payload).not.toContain(root); // no file path of the front end's
      expect(payload).not.toContain(server.url);
      void waiting.result.catch(() => undefined);
    } finally {
      redis.disconnect();
    }
  });
});

describe.skipIf(skipWithoutRedis())('a job whose worker dies, with VISTYLE_QUEUE_STALLED_RETRIES=0', () => {
  it('ends with ENGINE_CRASHED (the user gets the crash message), not silence', async () => {
    const server = await TestRedis.start();
    const root = mkdtempSync(join(tmpdir(), 'vistyle-stall-'));
    const { modelDir } = await tinyModel();
    const engine = await createEngine({ modelDir, threads: 1 });
    const config = loadConfig({
      VISTYLE_QUEUE_URL: server.url,
      VISTYLE_QUEUE_LOCK_SECONDS: '2',
      VISTYLE_QUEUE_STALLED_RETRIES: '0',
      VISTYLE_HOME: root,
    }) as AppConfig & { queue: QueueConfig };
    const doomed = new QueueWorker({ queue: { ...config.queue, workerName: 'doomed' }, engine, logger, concurrency: 1, debugDeltaDelayMs: 200 });
    let survivor: QueueWorker | undefined;
    const frontEnd = new QueueFrontEnd(config, logger, new BotMetrics());
    try {
      await doomed.start();
      await frontEnd.start();
      // a request whose answer comes in many deltas (200 ms apart on the doomed worker)
      const stream = frontEnd.engine.generate({
        images: [new Uint8Array(readFileSync(new URL('../fixtures/images/test_image_64x48.png', import.meta.url)))],
        messages: [
          { role: 'system', content: 'Answer.' },
          { role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: 'what is this?' }] },
        ],
        sampling: { greedy: true, maxNewTokens: 48, stopStrings: [] },
      });
      const iterator = stream[Symbol.asyncIterator]();
      await iterator.next(); // the doomed worker is answering
      survivor = new QueueWorker({ queue: { ...config.queue, workerName: 'survivor' }, engine, logger, concurrency: 1 });
      await survivor.start();
      await doomed.close(); // like a SIGKILL: its lock is no longer renewed, its connections are gone
      const started = Date.now();
      await expect(stream.result).rejects.toSatisfy((error: unknown) => isVistyleError(error, 'ENGINE_CRASHED'));
      expect(Date.now() - started).toBeLessThan(20_000);
    } finally {
      await frontEnd.close();
      await survivor?.close();
      await engine.close();
      await server.remove();
      rmSync(root, { recursive: true, force: true });
    }
  }, 120_000);
});
