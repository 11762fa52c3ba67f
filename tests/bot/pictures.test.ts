// The bot core with several pictures per conversation (a test double engine; the real engine on a
// tiny model runs in tests/telegram and tests/discord): the per-message limit and its notice, one
// queue entry per request whatever its picture count, the cost in logs and metrics, the refusal
// that says how many pictures fit, dropped turns told, animations as frames, videos refused where
// ffmpeg is missing, and a bad animation that does not stop the next request.
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createBotCore } from '../../src/bot/core.js';
import { errorMessage, t } from '../../src/bot/i18n.js';
import type { BotRequest } from '../../src/bot/types.js';
import { VistyleError } from '../../src/errors.js';
import { messageImages, messageText } from '../../src/engine/prompt.js';
import { createLogger } from '../../src/log.js';
import { BotMetrics } from '../../src/metrics/metrics.js';
import { Store } from '../../src/store/store.js';
import { builtinStyleRegistry } from '../../src/styles/registry.js';
import { animatedGif, frameColors } from '../support/media-files.js';
import { FakeEngine } from './support/fake-engine.js';
import { coreConfig, imageSource, makeHarness, photoRequest, PNG_BYTES, PNG_BYTES_2, privateChat, RecordingSink, user, type Harness } from './support/harness.js';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

function setup(engine = new FakeEngine(), media?: { maxImagesPerMessage?: number; videoFrames?: number }) {
  const config = { ...coreConfig(), media: { maxImagesPerMessage: 4, videoFrames: 4, videoMaxSeconds: 60, videoMaxBytes: 10 * 1024 * 1024, ...media } };
  harness = makeHarness(engine, { config });
  return { engine, core: harness.core, store: harness.store };
}

async function ask(request: BotRequest, sink = new RecordingSink()) {
  const ticket = harness!.core.ask(request, sink);
  return { sink, outcome: await ticket.done, ticket };
}

/** n distinct small pictures (PNG bytes with different trailing bytes are different files). */
const distinct = (n: number) => Array.from({ length: n }, (_, i) => imageSource(new Uint8Array([...PNG_BYTES, i])));

describe('bot core: several pictures', () => {
  it('shows every picture of a message to the model in order, as one request', async () => {
    const engine = new FakeEngine();
    engine.hold = true;
    const { core } = setup(engine);
    const sources = distinct(3);
    const ticket = core.ask(photoRequest('1', 'what differs?', { images: sources }), new RecordingSink());
    await engine.waitForGenerations(1);
    expect(core.queueSnapshot()).toMatchObject({ inFlight: 1, waiting: 0 }); // one request, not three
    engine.generations[0]!.release();
    expect((await ticket.done).status).toBe('answered');
    const request = engine.generations[0]!.request;
    expect(request.images).toHaveLength(3);
    expect(request.messages.at(-1)).toEqual({
      role: 'user',
      content: [{ type: 'image', image: 0 }, { type: 'image', image: 1 }, { type: 'image', image: 2 }, { type: 'text', text: 'what differs?' }],
    });
    for (const source of sources) expect(source.fetches).toBe(1);
  });

  it('uses the first N of more pictures than allowed and says how many were skipped', async () => {
    const { engine, store } = setup(new FakeEngine(), { maxImagesPerMessage: 4 });
    const sources = distinct(6);
    const { sink, outcome } = await ask(photoRequest('1', 'six?', { images: sources, messageId: 'album' }));
    expect(outcome.status).toBe('answered');
    expect(engine.generations[0]!.request.images).toHaveLength(4);
    expect(sources.map((s) => s.fetches)).toEqual([1, 1, 1, 1, 0, 0]); // the skipped ones are never downloaded
    const notice = t('en', 'picturesSkipped', { used: 4, total: 6, max: 4 });
    expect(sink.terminal).toEqual([{ type: 'finished', text: `Answer to: six?\n\n${notice}` }]);
    // the notice is for the user, not the conversation
    const stored = store.findByMessage('telegram', '1', 'album')!;
    expect(stored.turns[0]!.answer).toBe('Answer to: six?');
    expect(stored.images).toHaveLength(4);
    expect(notice).toBe('(I looked at the first 4 of the 6 pictures you sent — at most 4 per message.)');
  });

  it('logs and counts what a request cost in pictures', async () => {
    let out = '';
    const destination = new Writable({
      write(chunk, _encoding, done) {
        out += String(chunk);
        done();
      },
    });
    const dir = (await import('node:fs')).mkdtempSync((await import('node:path')).join((await import('node:os')).tmpdir(), 'vistyle-pics-'));
    const store = Store.open(`${dir}/bot.db`);
    const metrics = new BotMetrics();
    const core = createBotCore({
      engine: new FakeEngine(),
      store,
      styles: builtinStyleRegistry(),
      config: { ...coreConfig(), media: { maxImagesPerMessage: 2, videoFrames: 4, videoMaxSeconds: 60, videoMaxBytes: 1 << 20 } },
      logger: createLogger({ destination, level: 'info' }),
      metrics,
    });
    await core.ask(photoRequest('9', 'three?', { images: distinct(3) }), new RecordingSink()).done;
    await core.shutdown({ drainMs: 0 });
    store.close();
    const line = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'request answered')!;
    expect(line).toMatchObject({ pictures: 3, newPictures: 2, picturesSkipped: 1, newFrames: 2, imageCount: 2 });
    const text = await metrics.text();
    expect(text).toMatch(/vistyle_request_pictures_sum\{platform="telegram"\} 2/);
    expect(text).toMatch(/vistyle_media_inputs_total\{kind="picture"\} 2/);
  });

  it('says how many pictures fit when the engine refuses the conversation', async () => {
    const engine = new FakeEngine();
    engine.failNextWith = new VistyleError('PROMPT_TOO_LONG', 'the conversation is 9000 tokens', {
      details: { promptTokens: 9000, capacity: 4096, imageTokens: 729, maxImages: 2, imageCount: 4 },
    });
    setup(engine);
    const { outcome } = await ask(photoRequest('1', 'four?', { images: distinct(4) }));
    expect(outcome).toMatchObject({ status: 'failed', code: 'PROMPT_TOO_LONG', text: t('en', 'tooManyPictures', { maxImages: 2, imageCount: 4 }) });
    expect(outcome.text).toContain('at most 2 fit');
    // a refusal with no picture to blame keeps the plain message
    engine.failNextWith = new VistyleError('PROMPT_TOO_LONG', 'long', { details: { maxImages: 0, imageCount: 1 } });
    expect((await ask(photoRequest('1', 'one?'))).outcome.text).toBe(errorMessage('en', 'PROMPT_TOO_LONG'));
    // and the next request is served
    expect((await ask(photoRequest('1', 'again?'))).outcome.status).toBe('answered');
  });

  it('tells the user when the oldest turns were left out to fit, and remembers the answer without the notice', async () => {
    const engine = new FakeEngine();
    const { store } = setup(engine);
    await ask(photoRequest('1', 'q1', { messageId: 'p' }));
    for (let i = 2; i <= 4; i++) await ask({ user: user('1'), chat: privateChat('1'), question: `q${i}` });
    // plain style: system + 4 turns + question = 10 messages; the engine fits 4 (system, 1 turn, question)
    engine.maxMessages = 4;
    engine.trimHistory = true;
    const { sink } = await ask({ user: user('1'), chat: privateChat('1'), question: 'q5' });
    expect(sink.terminal).toEqual([{ type: 'finished', text: `Answer to: q5\n\n${t('en', 'turnsDropped', { turns: 3 })}` }]);
    expect(store.findByMessage('telegram', '1', 'p')!.turns.at(-1)!.answer).toBe('Answer to: q5');
    // an engine that refuses instead: the core halves the history itself, and says so too
    engine.trimHistory = false;
    const refused = await ask({ user: user('1'), chat: privateChat('1'), question: 'q6' });
    expect(refused.outcome.status).toBe('answered');
    expect(refused.sink.terminal[0]).toMatchObject({ type: 'finished', text: expect.stringMatching(/left out its \d+ oldest exchange/) });
  });

  it('keeps an old photo in a long conversation: pictures of turns beyond the history go with the oldest turn shown', async () => {
    const engine = new FakeEngine();
    const config = { ...coreConfig({ limits: { historyTurns: 2 } }) };
    harness = makeHarness(engine, { config });
    await ask(photoRequest('1', 'q1', { messageId: 'p' }), new RecordingSink(['a1']));
    await ask(photoRequest('1', 'q2', { replyToMessageId: 'a1', images: [imageSource(PNG_BYTES_2)] }), new RecordingSink(['a2']));
    for (let i = 3; i <= 5; i++) await ask({ user: user('1'), chat: privateChat('1'), question: `q${i}` });
    const last = engine.generations.at(-1)!.request;
    const convo = last.messages.filter((m) => m.role !== 'system');
    expect(convo.map((m) => messageText(m))).toEqual(['q3', 'Answer to: q3', 'q4', 'Answer to: q4', 'q5']);
    expect(messageImages(convo[0]!)).toEqual([0, 1]); // both photos, oldest first, with the oldest turn shown
    expect(last.images!.map((image) => image.length)).toEqual([PNG_BYTES.length, PNG_BYTES_2.length]);
  });

  it('shows an animated GIF as its frames, consecutive pictures of one message', async () => {
    const { engine, store } = setup(new FakeEngine(), { videoFrames: 3 });
    const gif = animatedGif(frameColors(9));
    const { outcome } = await ask(photoRequest('1', 'what happens?', { images: [imageSource(new Uint8Array(gif), { mime: 'image/gif' })], messageId: 'gif' }));
    expect(outcome.status).toBe('answered');
    const request = engine.generations[0]!.request;
    expect(request.images).toHaveLength(3);
    expect(messageImages(request.messages.at(-1)!)).toEqual([0, 1, 2]);
    expect(store.findByMessage('telegram', '1', 'gif')!.images).toHaveLength(3); // the frames are what the conversation holds
  });

  it('refuses a video up front where ffmpeg is missing, and a damaged animation after downloading it; the next request is served', async () => {
    const { engine } = setup();
    const saved = process.env.PATH;
    process.env.PATH = '/nonexistent-vistyle-path';
    try {
      const video = imageSource(new Uint8Array([0, 0, 0, 0x18, ...Buffer.from('ftypisom')]), { mime: 'video/mp4' });
      const { sink, outcome, ticket } = await ask(photoRequest('1', 'clip?', { images: [video] }));
      expect(await ticket.accepted).toBe(false);
      expect(outcome).toMatchObject({ status: 'failed', code: 'IMAGE_UNSUPPORTED', text: t('en', 'media.video-no-ffmpeg') });
      expect(sink.terminal).toHaveLength(1);
      expect(video.fetches).toBe(0);
    } finally {
      process.env.PATH = saved;
    }
    const damaged = imageSource(new Uint8Array(animatedGif(frameColors(6), { damageFrame: 3 })), { mime: 'image/gif' });
    const bad = await ask(photoRequest('1', 'gif?', { images: [damaged] }));
    expect(bad.outcome).toMatchObject({ status: 'failed', code: 'IMAGE_CORRUPT', text: t('en', 'media.animation-corrupt') });
    expect(engine.generations).toHaveLength(0);
    expect((await ask(photoRequest('1', 'and a photo?'))).outcome.status).toBe('answered');
  });

  it('refuses a video over the size limit from its reported size, naming the limit', async () => {
    setup();
    const big = imageSource(new Uint8Array(10), { mime: 'video/mp4', sizeBytes: 11 * 1024 * 1024 });
    const { outcome } = await ask(photoRequest('1', 'clip?', { images: [big] }));
    expect(outcome).toMatchObject({ code: 'IMAGE_TOO_LARGE', text: t('en', 'media.video-too-large', { limit: '10 MB' }) });
    expect(big.fetches).toBe(0);
    void vi;
  });
});
