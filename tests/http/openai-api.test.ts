// The OpenAI-compatible API, driven by the real `openai` npm client against `vistyle serve` on
// 127.0.0.1 with the tiny model in its worker thread: completions (plain and streamed) about a
// data-URL picture, styles as models, usage, sampling parameters reaching the engine, every error
// status, a client disconnecting (mid-stream, and while queued) cancelling its work, and 20
// concurrent clients under per-key limits each getting exactly one answer or one 429.
import { animatedGif, frameColors } from '../support/media-files.js';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dataUrl, PNG, PNG_2, PNG_DATA_URL, serve, startServe, type Served } from './support/serve.js';
import { recordingEngineFactory, type RecordingEngine } from './support/recording-engine.js';
import { builtinStyles } from '../../src/styles/builtin.js';

const picture = (text: string, url = PNG_DATA_URL) => [{ role: 'user' as const, content: [{ type: 'text' as const, text }, { type: 'image_url' as const, image_url: { url } }] }];

function client(served: Served, apiKey = 'unused', extra: Partial<ConstructorParameters<typeof OpenAI>[0]> = {}) {
  // No retries: every status the server gives must reach the test as it is.
  return new OpenAI({ baseURL: served.baseURL, apiKey, maxRetries: 0, timeout: 60_000, ...extra });
}

async function apiError(promise: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof OpenAI.APIError) return error;
    throw error;
  }
  throw new Error('expected an API error');
}

describe('vistyle serve, open on loopback', () => {
  let served: Served;
  let engine: RecordingEngine;
  let openai: OpenAI;

  beforeAll(async () => {
    const recording = recordingEngineFactory();
    served = await serve(
      { VISTYLE_USER_IN_FLIGHT: '4', VISTYLE_USER_PER_MINUTE: '0', VISTYLE_MAX_IMAGE_BYTES: '65536', VISTYLE_MAX_QUESTION_CHARS: '200' },
      { engineFactory: recording.factory },
    );
    engine = recording.holder.engine!;
    openai = client(served);
  });
  afterAll(() => served?.stop());

  it('answers about a data-URL picture in a style, with usage and the queue position header', async () => {
    const { data: completion, response } = await openai.chat.completions
      .create({ model: 'vistyle/grumpy', messages: picture('What is in this picture?'), max_tokens: 8, seed: 7 })
      .withResponse();
    expect(completion.object).toBe('chat.completion');
    expect(completion.id).toMatch(/^chatcmpl-/);
    expect(completion.model).toBe('vistyle/grumpy');
    expect(completion.choices).toHaveLength(1);
    expect(completion.choices[0]!.message.role).toBe('assistant');
    expect(typeof completion.choices[0]!.message.content).toBe('string');
    expect(['stop', 'length']).toContain(completion.choices[0]!.finish_reason);
    const usage = completion.usage!;
    expect(usage.completion_tokens).toBeGreaterThan(0);
    expect(usage.completion_tokens).toBeLessThanOrEqual(8);
    expect(usage.prompt_tokens).toBeGreaterThan(20); // the image tokens, the style's prompt, the question
    expect(usage.total_tokens).toBe(usage.prompt_tokens + usage.completion_tokens);
    expect(response.headers.get('x-vistyle-queue-position')).toBe('0');

    // what the engine was asked: grumpy's voice, the picture on the question, our sampling
    const call = engine.calls.at(-1)!;
    expect(call.request.messages[0]).toEqual({ role: 'system', content: builtinStyles().find((s) => s.id === 'grumpy')!.systemPrompt });
    expect(call.request.messages.at(-1)).toEqual({ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: 'What is in this picture?' }] });
    expect(call.request.images).toHaveLength(1);
    expect(Buffer.from(call.request.images![0]!).equals(Buffer.from(PNG))).toBe(true);
    expect(call.request.sampling).toMatchObject({ maxNewTokens: 8, seed: 7 });
    const result = await call.result;
    expect(result.tokens.length).toBe(usage.completion_tokens);
    expect(result.promptTokens).toBe(usage.prompt_tokens);
    expect(usage.prompt_tokens_details?.cached_tokens).toBe(result.cachedPromptTokens);
  });

  it('takes several pictures in a message, and new pictures in a follow-up', async () => {
    const two = await openai.chat.completions.create({
      model: 'vistyle/plain',
      max_tokens: 2,
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Which is brighter?' }, { type: 'image_url', image_url: { url: PNG_DATA_URL } }, { type: 'image_url', image_url: { url: dataUrl(PNG_2) } }] }],
    });
    let call = engine.calls.at(-1)!;
    expect(call.request.images!.map((bytes) => bytes.byteLength)).toEqual([PNG.byteLength, PNG_2.byteLength]);
    expect(call.request.messages.at(-1)).toEqual({ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'image', image: 1 }, { type: 'text', text: 'Which is brighter?' }] });
    expect((await call.result).imageCount).toBe(2);
    const onePicture = await openai.chat.completions.create({ model: 'vistyle/plain', max_tokens: 2, messages: picture('One?') });
    // each picture costs its image tokens
    expect(two.usage!.prompt_tokens).toBeGreaterThan(onePicture.usage!.prompt_tokens);

    await openai.chat.completions.create({
      model: 'vistyle/plain',
      max_tokens: 2,
      messages: [
        ...picture('What is this?'),
        { role: 'assistant', content: 'A thing.' },
        { role: 'user', content: [{ type: 'text', text: 'And this one?' }, { type: 'image_url', image_url: { url: dataUrl(PNG_2) } }] },
      ],
    });
    call = engine.calls.at(-1)!;
    expect(call.request.images).toHaveLength(2);
    expect(call.request.messages.slice(-3)).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'What is this?' }, { type: 'image', image: 0 }] },
      { role: 'assistant', content: 'A thing.' },
      { role: 'user', content: [{ type: 'image', image: 1 }, { type: 'text', text: 'And this one?' }] },
    ]);
    expect((await call.result).imageCount).toBe(2);
  });

  it('shows an animated GIF as frames sampled over its length (VISTYLE_VIDEO_FRAMES, 4 on CPU), as the bots do', async () => {
    const gif = animatedGif(frameColors(6), { width: 20, height: 20 });
    await openai.chat.completions.create({
      model: 'vistyle/plain',
      max_tokens: 1,
      messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:image/gif;base64,${gif.toString('base64')}` } }, { type: 'text', text: 'What happens?' }] }],
    });
    const call = engine.calls.at(-1)!;
    expect(call.request.images).toHaveLength(4);
    expect(call.request.messages.at(-1)).toEqual({
      role: 'user',
      content: [0, 1, 2, 3].map((image) => ({ type: 'image', image })).concat([{ type: 'text', text: 'What happens?' }] as never[]),
    });
    expect((await call.result).imageCount).toBe(4);
  });

  it('streams in OpenAI chunks: role first, content deltas, finish_reason, then usage', async () => {
    const stream = await openai.chat.completions.create({
      model: 'grumpy',
      messages: picture('Describe it.'),
      max_tokens: 12,
      seed: 3,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    const ids = new Set(chunks.map((chunk) => chunk.id));
    expect(ids.size).toBe(1);
    expect(chunks.every((chunk) => chunk.object === 'chat.completion.chunk' && chunk.model === 'vistyle/grumpy')).toBe(true);
    const content = chunks.filter((chunk) => chunk.choices[0]?.delta.content).map((chunk) => chunk.choices[0]!.delta.content).join('');
    expect(content.length).toBeGreaterThan(0);
    const finish = chunks.filter((chunk) => chunk.choices[0]?.finish_reason);
    expect(finish).toHaveLength(1);
    expect(['stop', 'length']).toContain(finish[0]!.choices[0]!.finish_reason);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage!.completion_tokens).toBeGreaterThan(0);
    expect(last.usage!.total_tokens).toBe(last.usage!.prompt_tokens + last.usage!.completion_tokens);
    expect(chunks.slice(0, -1).every((chunk) => chunk.usage === null)).toBe(true);
    // the streamed text is the engine's answer
    expect(content).toBe((await engine.calls.at(-1)!.result).text);
  });

  it('streams without usage unless asked', async () => {
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const chunk of await openai.chat.completions.create({ model: 'vistyle', messages: picture('Hi'), max_tokens: 3, stream: true })) chunks.push(chunk);
    expect(chunks.every((chunk) => !('usage' in chunk))).toBe(true);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).not.toBeNull();
  });

  it('lists every style as a model, with names and descriptions', async () => {
    const models = [];
    for await (const model of openai.models.list()) models.push(model as OpenAI.Models.Model & Record<string, unknown>);
    const ids = models.map((model) => model.id);
    expect(ids).toEqual(['vistyle', ...builtinStyles().map((style) => `vistyle/${style.id}`)]);
    const grumpy = models.find((model) => model.id === 'vistyle/grumpy')!;
    expect(grumpy).toMatchObject({ object: 'model', owned_by: 'vistyle', style: 'grumpy', names: { en: 'Grumpy', zh: '暴躁老哥' } });
    expect((grumpy.description as { en: string }).en).toMatch(/short-tempered/);
    expect((await openai.models.retrieve('vistyle/cantonese')).id).toBe('vistyle/cantonese');
    expect((await apiError(openai.models.retrieve('vistyle/pirate'))).status).toBe(404);
  });

  it('takes a style by bare id, display name, or `vistyle` for plain, and keeps system messages and earlier turns', async () => {
    for (const [model, id, echoed] of [
      ['salesman', 'salesman', 'vistyle/salesman'],
      ['Grumpy', 'grumpy', 'vistyle/grumpy'],
      ['vistyle', 'plain', 'vistyle'],
    ] as const) {
      const completion = await openai.chat.completions.create({ model, messages: picture('Hm?'), max_tokens: 2 });
      expect(completion.model).toBe(echoed);
      const style = builtinStyles().find((s) => s.id === id)!;
      expect(engine.calls.at(-1)!.request.messages[0]!.content).toBe(style.systemPrompt);
    }

    await openai.chat.completions.create({
      model: 'vistyle/plain',
      max_tokens: 2,
      temperature: 0,
      top_p: 0.5,
      stop: ['END'],
      messages: [
        { role: 'system', content: 'Answer in one word.' },
        { role: 'user', content: [{ type: 'image_url', image_url: { url: PNG_DATA_URL } }, { type: 'text', text: 'What is it?' }] },
        { role: 'assistant', content: 'A cat.' },
        { role: 'user', content: 'What colour?' },
      ],
    });
    const request = engine.calls.at(-1)!.request;
    const plain = builtinStyles().find((s) => s.id === 'plain')!;
    expect(request.messages).toEqual([
      { role: 'system', content: `${plain.systemPrompt}\n\nAnswer in one word.` },
      { role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: 'What is it?' }] },
      { role: 'assistant', content: 'A cat.' },
      { role: 'user', content: [{ type: 'text', text: 'What colour?' }] },
    ]);
    expect(request.sampling).toMatchObject({ temperature: 0, topP: 0.5, stopStrings: ['END'], maxNewTokens: 2 });
  });

  it('answers a picture without a question with the style’s default question, and a text-only chat', async () => {
    await openai.chat.completions.create({ model: 'vistyle/plain', max_tokens: 2, messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: PNG_DATA_URL } }] }] });
    expect(engine.calls.at(-1)!.request.messages.at(-1)).toEqual({ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: 'What is in this picture?' }] });
    await openai.chat.completions.create({ model: 'vistyle/plain', max_tokens: 2, messages: [{ role: 'user', content: 'Hello there' }] });
    const request = engine.calls.at(-1)!.request;
    expect(request.images).toBeUndefined();
    expect(request.messages.at(-1)).toEqual({ role: 'user', content: [{ type: 'text', text: 'Hello there' }] });
  });

  it('refuses bad requests with OpenAI errors and the right status', async () => {
    const cases: Array<[string, Promise<unknown>, number, string | null, string | RegExp]> = [
      ['not a picture', openai.chat.completions.create({ model: 'vistyle', messages: picture('?', dataUrl(new TextEncoder().encode('plain text, not a picture'))) }), 400, 'invalid_image', /Invalid image/],
      ['empty question', openai.chat.completions.create({ model: 'vistyle', messages: [{ role: 'user', content: '   ' }] }), 400, 'question_empty', /Empty question/],
      ['five pictures', openai.chat.completions.create({ model: 'vistyle', messages: [{ role: 'user', content: Array.from({ length: 5 }, () => ({ type: 'image_url' as const, image_url: { url: PNG_DATA_URL } })) }] }), 400, 'too_many_images', /Too many pictures: messages\[0\] has 5; at most 4 per message/],
      ['frequency_penalty', openai.chat.completions.create({ model: 'vistyle', messages: picture('?'), frequency_penalty: 0.5 }), 400, 'unsupported_parameter', /frequency_penalty is not supported/],
      ['presence_penalty', openai.chat.completions.create({ model: 'vistyle', messages: picture('?'), presence_penalty: 1 }), 400, 'unsupported_parameter', /presence_penalty/],
      ['n', openai.chat.completions.create({ model: 'vistyle', messages: picture('?'), n: 2 }), 400, 'unsupported_value', /n must be 1/],
      ['temperature', openai.chat.completions.create({ model: 'vistyle', messages: picture('?'), temperature: 3 }), 400, 'invalid_value', /temperature must be between 0 and 2/],
      ['tools', openai.chat.completions.create({ model: 'vistyle', messages: picture('?'), tools: [{ type: 'function', function: { name: 'f' } }] }), 400, 'unsupported_parameter', /tools/],
      ['ends with assistant', openai.chat.completions.create({ model: 'vistyle', messages: [{ role: 'assistant', content: 'hi' }] }), 400, 'invalid_value', /last message must be a user message/],
      ['question too long', openai.chat.completions.create({ model: 'vistyle', messages: picture('x'.repeat(201)) }), 400, 'context_length_exceeded', /201 characters \(limit 200\)/],
      ['http URL', openai.chat.completions.create({ model: 'vistyle', messages: picture('?', 'http://example.com/cat.jpg') }), 400, 'invalid_image', /https: or data:/],
      ['private URL', openai.chat.completions.create({ model: 'vistyle', messages: picture('?', `https://127.0.0.1:1/cat.jpg`) }), 400, 'image_download_failed', /loopback address/],
      ['unknown model', openai.chat.completions.create({ model: 'vistyle/pirate', messages: picture('?') }), 404, 'model_not_found', /The model `vistyle\/pirate` does not exist/],
      ['picture too large', openai.chat.completions.create({ model: 'vistyle', messages: picture('?', dataUrl(new Uint8Array(70_000))) }), 413, 'image_too_large', /Image too large/],
    ];
    for (const [name, promise, status, code, message] of cases) {
      const error = await apiError(promise);
      expect(error.status, name).toBe(status);
      expect(error.code, name).toBe(code);
      expect(error.type, name).toBe('invalid_request_error');
      expect(error.message, name).toMatch(message);
    }
    // a body over the limit is refused before it is read
    const huge = await fetch(`${served.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'vistyle', messages: picture('?', dataUrl(new Uint8Array(2_000_000))) }),
    });
    expect(huge.status).toBe(413);
    expect(await huge.json()).toMatchObject({ error: { code: 'request_too_large', type: 'invalid_request_error' } });
    const notJson = await fetch(`${served.baseURL}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"model": ' });
    expect(notJson.status).toBe(400);
    expect(await notJson.json()).toEqual({ error: { message: 'The request body is not valid JSON.', type: 'invalid_request_error', param: null, code: 'invalid_json' } });
    // nothing refused reached the engine, and nothing is left in the queue
    expect(served.app.core.queueSnapshot()).toMatchObject({ waiting: 0, inFlight: 0 });
  });

  it('refuses requests that name a host other than loopback when there are no keys (DNS rebinding)', async () => {
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${served.baseURL}/models`, { headers: { host: 'evil.example:8484' } }, (response) => {
        response.resume();
        resolve(response.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(403);
  });

  it('a client that disconnects mid-stream cancels the engine work', async () => {
    const long = { model: 'vistyle/plain', messages: picture('Tell me everything.'), max_tokens: 1000, seed: 11, temperature: 1 } as const;
    // The same request answered in full is long, so stopping after one delta is a real cancel.
    const full = await openai.chat.completions.create(long);
    expect(full.usage!.completion_tokens).toBeGreaterThan(100);

    const controller = new AbortController();
    const stream = await openai.chat.completions.create({ ...long, stream: true }, { signal: controller.signal });
    let deltas = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) deltas++;
      if (deltas === 1) {
        controller.abort();
        break;
      }
    }
    expect(deltas).toBe(1);
    const result = await engine.calls.at(-1)!.result;
    expect(result.finishReason).toBe('cancelled');
    expect(result.tokens.length).toBeLessThan(full.usage!.completion_tokens);
    await expect.poll(() => served.app.core.queueSnapshot().inFlight, { timeout: 10_000 }).toBe(0);
    await expect.poll(() => served.logs().includes('the client went away; request cancelled'), { timeout: 10_000 }).toBe(true);
  });

  it('a client that disconnects while queued leaves the queue; the queue position is shown while it waits', async () => {
    const long = { model: 'vistyle/plain', messages: picture('Tell me everything.'), max_tokens: 1000, seed: 11, temperature: 1 } as const;
    expect(served.app.core.queueSnapshot()).toMatchObject({ waiting: 0, inFlight: 0 });
    // the first request stays in flight until released: the tiny model could otherwise finish it
    // before the second one is seen waiting and cancelled
    const gate = engine.holdNext();
    const running = openai.chat.completions.create(long);
    await expect.poll(() => served.app.core.queueSnapshot().inFlight, { timeout: 10_000 }).toBe(1);

    // a second request waits: the header and an SSE comment say it is number 1
    const controller = new AbortController();
    const waiting = await fetch(`${served.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...long, stream: true }),
      signal: controller.signal,
    });
    expect(waiting.headers.get('x-vistyle-queue-position')).toBe('1');
    const reader = waiting.body!.getReader();
    let text = '';
    while (!text.includes(': queue position 1')) text += new TextDecoder().decode((await reader.read()).value);
    expect(text).toContain('"delta":{"role":"assistant","content":""}');
    expect(served.app.core.queueSnapshot().waiting).toBe(1);
    controller.abort();
    await expect.poll(() => served.app.core.queueSnapshot().waiting, { timeout: 10_000 }).toBe(0);
    expect(served.app.core.queueSnapshot().inFlight).toBe(1); // the first one runs on
    const calls = engine.calls.length;
    gate.release();
    expect((await running).usage!.completion_tokens).toBeGreaterThan(0);
    expect(engine.calls.length).toBe(calls); // the cancelled one never reached the engine
  });
});

describe('vistyle serve with API keys and limits', () => {
  let served: Served;
  let dir: string;
  const alice = 'sk-alice-0123456789abcdef';
  const bob = 'sk-bob-0123456789abcdefgh';
  const carol = 'sk-carol-0123456789abcdef';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vistyle-api-keys-'));
    const file = join(dir, 'keys.yaml');
    writeFileSync(
      file,
      ['keys:', `  - { name: bob, key: ${bob}, inFlight: 20, perMinute: 0 }`, `  - { name: carol, key: ${carol}, perMinute: 1, styles: [grumpy] }`].join('\n'),
    );
    served = await serve({
      VISTYLE_API_KEYS: `alice=${alice}`,
      VISTYLE_API_KEYS_FILE: file,
      VISTYLE_USER_IN_FLIGHT: '3',
      VISTYLE_USER_PER_MINUTE: '0',
      VISTYLE_MAX_QUEUE: '4',
    });
  });
  afterAll(async () => {
    await served?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('needs a valid key (401), and never logs one', async () => {
    const missing = await fetch(`${served.baseURL}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'vistyle', messages: picture('?') }) });
    expect(missing.status).toBe(401);
    expect(await missing.json()).toMatchObject({ error: { code: 'invalid_api_key', message: expect.stringMatching(/didn't provide an API key/) } });
    const wrong = await apiError(client(served, 'sk-wrong-0123456789abcdef').models.list());
    expect(wrong.status).toBe(401);
    expect(wrong.code).toBe('invalid_api_key');
    const completion = await client(served, alice).chat.completions.create({ model: 'vistyle', messages: picture('?'), max_tokens: 2 });
    expect(completion.choices[0]!.message.role).toBe('assistant');
    expect(served.logs()).toContain('"caller":"api:alice"');
    for (const key of [alice, bob, carol]) expect(served.logs()).not.toContain(key);
  });

  it('applies a key’s style allow-list (404) and per-minute limit (429 with Retry-After)', async () => {
    const openai = client(served, carol);
    const models = [];
    for await (const model of openai.models.list()) models.push(model.id);
    expect(models).toEqual(['vistyle/grumpy']);
    expect((await apiError(openai.chat.completions.create({ model: 'vistyle/plain', messages: picture('?') }))).status).toBe(404);
    await openai.chat.completions.create({ model: 'vistyle/grumpy', messages: picture('?'), max_tokens: 2 });
    const limited = await apiError(openai.chat.completions.create({ model: 'vistyle/grumpy', messages: picture('?'), max_tokens: 2 }));
    expect(limited.status).toBe(429);
    expect(limited.code).toBe('rate_limit_exceeded');
    expect(limited.type).toBe('requests');
    const retryAfter = Number(limited.headers?.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(50);
    expect(retryAfter).toBeLessThanOrEqual(60);
  });

  it('20 concurrent clients: every request gets one answer or one 429, nothing is lost', async () => {
    // alice: 3 in flight (the default limits); bob: 20 in flight, but the queue holds 4 waiting.
    const ask = (key: string, index: number) =>
      client(served, key)
        .chat.completions.create({ model: 'vistyle/grumpy', messages: picture(`question ${index}`), max_tokens: 4, stream: index % 2 === 0 })
        .then(async (answer) => {
          if (!('choices' in answer)) {
            let text = '';
            for await (const chunk of answer) text += chunk.choices[0]?.delta.content ?? '';
            return { kind: 'answer' as const, key, text };
          }
          return { kind: 'answer' as const, key, text: answer.choices[0]!.message.content ?? '' };
        })
        .catch((error: unknown) => {
          if (error instanceof OpenAI.RateLimitError) return { kind: '429' as const, key, code: error.code, retryAfter: error.headers?.get('retry-after') };
          throw error;
        });
    const outcomes = await Promise.all(Array.from({ length: 20 }, (_, index) => ask(index % 2 === 0 ? alice : bob, index)));
    expect(outcomes).toHaveLength(20);
    const answered = outcomes.filter((outcome) => outcome.kind === 'answer');
    const limited = outcomes.filter((outcome) => outcome.kind === '429');
    expect(answered.length + limited.length).toBe(20);
    expect(answered.length).toBeGreaterThanOrEqual(3);
    expect(limited.length).toBeGreaterThan(0);
    for (const outcome of limited) {
      expect(['rate_limit_exceeded', 'queue_full']).toContain(outcome.code);
      expect(Number(outcome.retryAfter)).toBeGreaterThan(0);
    }
    // alice never had more than 3 at once: at most 3 of her first wave ran
    expect(limited.some((outcome) => outcome.key === alice && outcome.code === 'rate_limit_exceeded')).toBe(true);
    // the answers and refusals add up in the metrics too, and the queue is empty again
    const metrics = await (await fetch(`${served.url}/metrics`)).text();
    const count = (status: string) => Number(new RegExp(`vistyle_http_requests_total\\{route="/v1/chat/completions",status="${status}"\\} (\\d+)`).exec(metrics)?.[1] ?? 0);
    expect(count('429')).toBeGreaterThanOrEqual(limited.length);
    expect(served.app.core.queueSnapshot()).toMatchObject({ waiting: 0, inFlight: 0 });
  });
});

describe('vistyle serve while starting and stopping', () => {
  it('answers 503 while the model loads (and /readyz says so), then serves; 503 when shutting down', async () => {
    const recording = recordingEngineFactory({ delayMs: 3_000 });
    const starting = startServe({}, { engineFactory: recording.factory });
    const url = await starting.listening;
    const health = await fetch(`${url}/healthz`);
    expect(health.status).toBe(200);
    const loading = await fetch(`${url}/readyz`);
    expect(loading.status).toBe(503);
    expect(await loading.json()).toMatchObject({ ready: false, checks: { engine: { ready: false, detail: 'loading the model' } } });
    const early = await apiError(new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 }).chat.completions.create({ model: 'vistyle', messages: picture('?') }));
    expect(early.status).toBe(503);
    expect(early.code).toBe('model_loading');
    expect(Number(early.headers?.get('retry-after'))).toBeGreaterThan(0);

    const served = await starting.started;
    try {
      const ready = await fetch(`${served.url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toEqual({ ready: true, checks: { store: { ready: true }, engine: { ready: true } } });
      await served.app.core.shutdown({ drainMs: 0 });
      const error = await apiError(client(served).chat.completions.create({ model: 'vistyle', messages: picture('?') }));
      expect(error.status).toBe(503);
      expect(error.code).toBe('shutting_down');
      expect(Number(error.headers?.get('retry-after'))).toBeGreaterThan(0);
    } finally {
      await served.stop();
    }
  });
});
