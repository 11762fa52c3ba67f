// Several pictures, animations and short videos on Telegram, end to end: real telegraf against
// the fake Bot API, the real core and store, and the real engine on a tiny model (16 image rows
// per picture). Albums, a photo sent as a reply, the per-message limit, GIFs and clips as frames,
// videos where ffmpeg is missing, and the bad inputs that must each get a clear message while the
// next request is served. Videos are made by ffmpeg itself; those tests skip with a message where
// it is missing (never under CI=true).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { t } from '../../src/bot/i18n.js';
import { createEngine, type WorkerEngine } from '../../src/engine/engine.js';
import { messageImages, messageText } from '../../src/engine/prompt.js';
import { FakeTelegram } from '../support/fake-telegram/index.js';
import { animatedGif, audioOnlyMp4, ffmpegOrSkip, frameColors, testVideo } from '../support/media-files.js';
import { tinyModel } from '../support/tiny-model.js';
import { ObservedEngine, settledReplies, startBot, tempDir, visibleCore, type BotUnderTest } from './harness.js';

const PNG = readFileSync(new URL('../fixtures/images/test_image_64x48.png', import.meta.url));
const hasFfmpeg = ffmpegOrSkip('the Telegram video tests (tests/telegram/pictures.e2e.test.ts)');

let engine: WorkerEngine;
const temp = tempDir();
let fake: FakeTelegram | undefined;
const bots: BotUnderTest[] = [];
let db = 0;

beforeAll(async () => {
  engine = await createEngine({ modelDir: (await tinyModel()).modelDir, threads: 1 });
});
afterAll(async () => {
  await engine?.close();
  temp.remove();
});
afterEach(async () => {
  for (const bot of bots.splice(0)) await bot.stop();
  await fake?.close();
  fake = undefined;
});

async function setUp(env: Record<string, string> = {}) {
  fake = await FakeTelegram.start();
  const observed = new ObservedEngine(engine);
  const bot = await startBot({ fake, engine: observed, dbPath: join(temp.dir, `pictures${db++}.db`), env: { VISTYLE_VIDEO_FRAMES: '3', ...env }, tuning: { albumWindowMs: 400 } });
  bots.push(bot);
  return { fake, observed, bot };
}

/** n clearly different pictures (the fake re-encodes photos, so each must differ in content). */
async function pictures(n: number): Promise<Buffer[]> {
  return Promise.all(frameColors(n).map((colour) => sharp({ create: { width: 48, height: 40, channels: 3, background: { r: colour[0], g: colour[1], b: colour[2] } } }).png().toBuffer()));
}

const answerText = (replies: { text: string }[]) => replies.map((m) => m.text).join('\n');

describe('Telegram: several pictures', () => {
  it('a photo sent as a reply to the answer joins the conversation: a follow-up with both pictures', async () => {
    const { fake, observed, bot } = await setUp();
    const alice = fake.user(2001);
    const [first, second] = await pictures(2);
    const photo = await fake.sendPhoto(alice, first!, { caption: 'What is this?' });
    const [answer] = await settledReplies(fake, alice.id, photo.message_id);
    const followUp = await fake.sendPhoto(alice, second!, { caption: 'And compared with this one?', replyTo: answer!.messageId });
    await settledReplies(fake, alice.id, followUp.message_id);
    const call = observed.calls[1]!;
    expect(call.request.images).toHaveLength(2);
    expect(call.request.messages.flatMap((m) => messageImages(m))).toEqual([0, 1]);
    expect(call.request.messages.at(-1)).toEqual({ role: 'user', content: [{ type: 'image', image: 1 }, { type: 'text', text: 'And compared with this one?' }] });
    expect(call.result!.imageCount).toBe(2);
    expect(call.result!.promptTokens - observed.calls[0]!.result!.promptTokens).toBeGreaterThan(engine.info.imageTokens);
    // stored just after the answer went out
    const conversation = await fake.waitFor(() => bot.store.findByMessage('telegram', String(alice.id), String(followUp.message_id)), 5000, 'the stored turn');
    expect(conversation.turns).toHaveLength(2);
    expect(conversation.images.map((image) => image.turnSeq)).toEqual([1, 2]);
    // a text follow-up to the second answer still shows both, from the store
    const [secondAnswer] = await settledReplies(fake, alice.id, followUp.message_id);
    const text = fake.sendText(alice, 'which is darker?', { replyTo: secondAnswer!.messageId });
    await settledReplies(fake, alice.id, text.message_id);
    expect(observed.calls[2]!.request.images).toHaveLength(2);
    expect(fake.callsTo('getFile')).toHaveLength(2);
  });

  it('an album of 6 with a limit of 4: answers about the first 4 and says 2 were skipped', async () => {
    const { fake, observed } = await setUp({ VISTYLE_MAX_IMAGES_PER_MESSAGE: '4' });
    const alice = fake.user(2002);
    const six = await pictures(6);
    const parts = [];
    for (const [i, bytes] of six.entries()) parts.push(await fake.sendPhoto(alice, bytes, { mediaGroupId: 'six', ...(i === 0 ? { caption: 'Rank them' } : {}) }));
    const replies = await settledReplies(fake, alice.id, parts[0]!.message_id);
    expect(observed.calls).toHaveLength(1);
    const call = observed.calls[0]!;
    expect(call.result!.imageCount).toBe(4);
    expect(messageText(call.request.messages.at(-1)!)).toBe('Rank them');
    const notice = t('en', 'picturesSkipped', { used: 4, total: 6, max: 4 });
    const shown = answerText(replies);
    expect(shown.endsWith(notice)).toBe(true);
    expect(visibleCore(shown.slice(0, -notice.length))).toBe(visibleCore(call.result!.text));
    expect(fake.callsTo('getFile')).toHaveLength(4);
  });

  it('an animated GIF sent as a file becomes its frames, consecutive pictures of one message', async () => {
    const { fake, observed } = await setUp();
    const alice = fake.user(2003);
    const gif = fake.sendDocument(alice, animatedGif(frameColors(9), { width: 32, height: 24 }), { fileName: 'dance.gif', mimeType: 'image/gif', caption: 'What happens?' });
    const replies = await settledReplies(fake, alice.id, gif.message_id);
    const call = observed.calls[0]!;
    expect(call.request.images).toHaveLength(3); // VISTYLE_VIDEO_FRAMES=3
    expect(messageImages(call.request.messages.at(-1)!)).toEqual([0, 1, 2]);
    expect(call.result!.imageCount).toBe(3);
    expect(visibleCore(answerText(replies))).toBe(visibleCore(call.result!.text));
  });

  it('says clearly that it cannot read videos where ffmpeg is missing, without downloading them', async () => {
    const { fake, observed } = await setUp();
    const alice = fake.user(2004);
    const saved = process.env.PATH;
    process.env.PATH = '/nonexistent-vistyle-path';
    try {
      const clip = fake.sendClip(alice, Buffer.from('not even read'), { kind: 'video', caption: 'what is going on?' });
      const [reply] = await settledReplies(fake, alice.id, clip.message_id);
      expect(reply!.text).toBe(t('en', 'media.video-no-ffmpeg'));
      const note = fake.sendClip(alice, Buffer.from('round'), { kind: 'video_note' });
      const [noteReply] = await settledReplies(fake, alice.id, note.message_id);
      expect(noteReply!.text).toBe(t('en', 'media.video-no-ffmpeg'));
    } finally {
      process.env.PATH = saved;
    }
    expect(fake.callsTo('getFile')).toHaveLength(0);
    expect(observed.calls).toHaveLength(0);
    // pictures still work
    const photo = await fake.sendPhoto(alice, PNG, { caption: 'and this?' });
    await settledReplies(fake, alice.id, photo.message_id);
    expect(observed.calls[0]!.result).toBeDefined();
  });

  it('gives clear messages for a damaged GIF frame, a zero-length video and a 10,000-frame GIF, and answers the next request', async () => {
    const { fake, observed } = await setUp();
    const alice = fake.user(2005);
    const damaged = fake.sendDocument(alice, animatedGif(frameColors(6), { damageFrame: 3 }), { fileName: 'broken.gif', mimeType: 'image/gif' });
    expect((await settledReplies(fake, alice.id, damaged.message_id))[0]!.text).toBe(t('en', 'media.animation-corrupt'));
    const empty = fake.sendClip(alice, Buffer.alloc(0), { kind: 'video' });
    expect((await settledReplies(fake, alice.id, empty.message_id))[0]!.text).toBe(t('en', 'media.file-empty'));
    const endless = animatedGif(Array.from({ length: 10_000 }, (_, i) => [i % 256, 0, 0] as [number, number, number]), { width: 2, height: 2, delayMs: 10 });
    const huge = fake.sendDocument(alice, endless, { fileName: 'endless.gif', mimeType: 'image/gif' });
    expect((await settledReplies(fake, alice.id, huge.message_id))[0]!.text).toBe(t('en', 'media.animation-too-many-frames', { frames: 10_000, limit: 1000 }));
    expect(observed.calls).toHaveLength(0);
    const photo = await fake.sendPhoto(alice, PNG, { caption: 'still there?' });
    const replies = await settledReplies(fake, alice.id, photo.message_id);
    expect(visibleCore(answerText(replies))).toBe(visibleCore(observed.calls[0]!.result!.text));
  });
});

describe.skipIf(!hasFfmpeg)('Telegram: short videos through ffmpeg', () => {
  it('a GIF (Telegram sends it as an MP4 animation), a video and a video note become frames', async () => {
    const { fake, observed } = await setUp();
    const alice = fake.user(2101);
    const animation = fake.sendClip(alice, testVideo(2), { kind: 'animation', fileName: 'funny.gif.mp4', caption: 'why is it funny?' });
    await settledReplies(fake, alice.id, animation.message_id);
    expect(observed.calls[0]!.request.images).toHaveLength(3);
    expect(messageImages(observed.calls[0]!.request.messages.at(-1)!)).toEqual([0, 1, 2]);
    expect(observed.calls[0]!.result!.imageCount).toBe(3);
    const video = fake.sendClip(alice, testVideo(3, 'webm'), { kind: 'video', mimeType: 'video/webm', caption: 'what moves?' });
    await settledReplies(fake, alice.id, video.message_id);
    expect(observed.calls[1]!.result!.imageCount).toBe(3);
    const note = fake.sendClip(alice, testVideo(1), { kind: 'video_note' });
    await settledReplies(fake, alice.id, note.message_id);
    expect(observed.calls[2]!.result!.imageCount).toBe(3);
    // a follow-up about the clip shows its frames again, from the store
    const [answer] = await settledReplies(fake, alice.id, note.message_id);
    const followUp = fake.sendText(alice, 'and at the end?', { replyTo: answer!.messageId });
    await settledReplies(fake, alice.id, followUp.message_id);
    expect(observed.calls[3]!.request.images).toHaveLength(3);
  });

  it('refuses a video with no video stream and one over the length limit, clearly, and answers the next', async () => {
    const { fake, observed } = await setUp({ VISTYLE_VIDEO_MAX_SECONDS: '2' });
    const alice = fake.user(2102);
    const sound = fake.sendClip(alice, audioOnlyMp4(), { kind: 'video' });
    expect((await settledReplies(fake, alice.id, sound.message_id))[0]!.text).toBe(t('en', 'media.video-no-picture'));
    const long = fake.sendClip(alice, testVideo(3), { kind: 'video', duration: 3 });
    expect((await settledReplies(fake, alice.id, long.message_id))[0]!.text).toBe(t('en', 'media.video-too-long', { seconds: 3, limit: 2 }));
    expect(observed.calls).toHaveLength(0);
    const fine = fake.sendClip(alice, testVideo(1), { kind: 'video' });
    await settledReplies(fake, alice.id, fine.message_id);
    expect(observed.calls[0]!.result!.imageCount).toBe(3);
  });
});
