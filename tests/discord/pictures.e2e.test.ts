// Several pictures, animations and short videos on Discord, end to end: the real discord.js
// client against the fake Discord (REST, gateway, CDN), the real core and store, and the real
// engine on a tiny model. `/ask` with up to four pictures, a mention with every attachment, a
// reply with a new attachment as a follow-up, the context menu, the per-message limit, a GIF as
// frames, videos without ffmpeg (a clear private refusal) and with it (frames; the clips are made
// by ffmpeg, and those tests skip with a message where it is missing, never under CI=true).
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { t } from '../../src/bot/i18n.js';
import type { MediaConfig } from '../../src/config/config.js';
import { messageImages, messageText } from '../../src/engine/prompt.js';
import { FakeDiscord } from '../support/fake-discord/index.js';
import { animatedGif, ffmpegOrSkip, frameColors, testVideo } from '../support/media-files.js';
import { ObservedEngine } from '../telegram/harness.js';
import { finalChannelReply, finalReply, startBot, startEngine, tempDir, type EngineHandle, type RunningBot } from './harness.js';

const hasFfmpeg = ffmpegOrSkip('the Discord video tests (tests/discord/pictures.e2e.test.ts)');
const MEDIA: MediaConfig = { maxImagesPerMessage: 4, videoFrames: 3, videoMaxSeconds: 60, videoMaxBytes: 10 * 1024 * 1024 };

let engine: EngineHandle;
let dir: string;
let cleanup: () => void;
let fake: FakeDiscord;
let bot: RunningBot | undefined;
let observed: ObservedEngine;
let db = 0;

beforeAll(async () => {
  ({ dir, cleanup } = tempDir());
  engine = await startEngine({ talkative: true });
});
afterAll(async () => {
  await engine?.close();
  cleanup?.();
});
afterEach(async () => {
  await bot?.stop();
  bot = undefined;
  await fake?.close();
});

async function start(options: { mentionMode?: boolean; media?: Partial<MediaConfig> } = {}) {
  fake = await FakeDiscord.start();
  observed = new ObservedEngine(engine.engine);
  bot = await startBot({ fake, engine: observed, dbPath: join(dir, `pictures-${db++}.db`), mentionMode: options.mentionMode ?? false, media: { ...MEDIA, ...options.media } });
  return bot;
}

/** n clearly different PNG attachments. */
async function pictures(n: number, prefix = 'pic') {
  const colours = frameColors(n);
  return Promise.all(
    colours.map(async (colour, i) => {
      const data = await sharp({ create: { width: 40, height: 30, channels: 3, background: { r: colour[0], g: colour[1], b: colour[2] } } }).png().toBuffer();
      return fake.attachment({ filename: `${prefix}${i + 1}.png`, contentType: 'image/png', data, width: 40, height: 30 });
    }),
  );
}

const shownImages = (index: number) => observed.calls[index]!.request.messages.flatMap((m) => messageImages(m));

describe('Discord: several pictures', () => {
  it('/ask with three pictures: one answer whose prompt held all three, in option order', async () => {
    await start();
    const user = fake.createUser('ada');
    const [a, b, c] = await pictures(3);
    const interaction = fake.slashCommand('ask', { image: a!, image2: b!, image3: c!, question: 'Which is the odd one out?' }, { user });
    const reply = await finalReply(fake, interaction);
    expect(observed.calls).toHaveLength(1);
    const call = observed.calls[0]!;
    expect(call.request.messages.at(-1)!.content).toEqual([{ type: 'image', image: 0 }, { type: 'image', image: 1 }, { type: 'image', image: 2 }, { type: 'text', text: 'Which is the odd one out?' }]);
    expect(call.result!.imageCount).toBe(3);
    expect(call.result!.promptTokens).toBeGreaterThanOrEqual(3 * engine.engine.info.imageTokens);
    // option order is picture order: image, image2, image3 have the colours of frameColors(3)
    const reds = await Promise.all(call.request.images!.map(async (bytes) => Math.round((await sharp(bytes).stats()).channels[0]!.mean)));
    expect(reds).toEqual(frameColors(3).map((colour) => colour[0]));
    expect(reply.original!.content.length).toBeGreaterThan(0);
  });

  it('/ask with four pictures and a limit of two: answers about the first two and says two were skipped', async () => {
    await start({ media: { maxImagesPerMessage: 2 } });
    const user = fake.createUser('bo');
    const [a, b, c, d] = await pictures(4);
    const interaction = fake.slashCommand('ask', { image: a!, image2: b!, image3: c!, image4: d!, question: 'compare' }, { user });
    const reply = await finalReply(fake, interaction);
    expect(observed.calls[0]!.result!.imageCount).toBe(2);
    const shown = [reply.original?.content ?? '', ...reply.followUps.map((m) => m.content)].join('\n');
    expect(shown).toContain(t('en', 'picturesSkipped', { used: 2, total: 4, max: 2 }));
  });

  it('a mention takes every attachment; a reply to the answer with a new one is a follow-up showing all of them', async () => {
    await start({ mentionMode: true });
    const user = fake.createUser('cy');
    const [a, b, c] = await pictures(3);
    const asking = fake.userMessage({ user, content: 'what are these?', attachments: [a!, b!], mentionBot: true });
    const answer = await finalChannelReply(fake, fake.textChannel.id, asking.id);
    expect(observed.calls[0]!.result!.imageCount).toBe(2);
    expect(messageImages(observed.calls[0]!.request.messages.at(-1)!)).toEqual([0, 1]);
    await fake.waitFor(() => bot!.store.findByMessage('discord', fake.textChannel.id, answer.id), 'the stored turn', 5000);

    const followUp = fake.userMessage({ user, content: 'and this one?', attachments: [c!], replyTo: answer });
    await finalChannelReply(fake, fake.textChannel.id, followUp.id);
    const call = observed.calls[1]!;
    expect(call.request.images).toHaveLength(3);
    expect(shownImages(1)).toEqual([0, 1, 2]);
    expect(call.request.messages.at(-1)).toEqual({ role: 'user', content: [{ type: 'image', image: 2 }, { type: 'text', text: 'and this one?' }] });
    expect(call.request.messages.some((m) => m.role === 'assistant')).toBe(true);
    const conversation = await fake.waitFor(() => {
      const found = bot!.store.findByMessage('discord', fake.textChannel.id, followUp.id);
      return found && found.turns.length === 2 ? found : undefined;
    }, 'the follow-up turn', 5000);
    expect(conversation.images.map((image) => image.turnSeq)).toEqual([1, 1, 2]);
  });

  it('the context menu asks about every picture of the message (a GIF as its frames), leaving other files out', async () => {
    await start();
    const user = fake.createUser('di');
    const [a] = await pictures(1);
    const gif = fake.attachment({ filename: 'dance.gif', contentType: 'image/gif', data: animatedGif(frameColors(8), { width: 24, height: 18 }), width: 24, height: 18 });
    const notes = fake.attachment({ filename: 'notes.txt', contentType: 'text/plain', data: new TextEncoder().encode('hello') });
    const message = fake.userMessage({ user, content: 'holiday', attachments: [a!, notes, gif] });
    const interaction = fake.messageCommand('Ask about this image', message, { user });
    await finalReply(fake, interaction);
    const call = observed.calls[0]!;
    expect(call.result!.imageCount).toBe(1 + 3); // the photo, then the GIF's 3 frames
    expect(messageImages(call.request.messages.at(-1)!)).toEqual([0, 1, 2, 3]);
    expect(messageText(call.request.messages.at(-1)!)).not.toBe('');
    expect(fake.cdnRequests.some((r) => r.path.includes('notes.txt'))).toBe(false);
  });

  it('refuses a video privately where ffmpeg is missing, without downloading it, and answers the next request', async () => {
    await start();
    const user = fake.createUser('ed');
    const clip = fake.attachment({ filename: 'clip.mp4', contentType: 'video/mp4', data: new Uint8Array(2048) });
    const saved = process.env.PATH;
    process.env.PATH = '/nonexistent-vistyle-path';
    let interaction;
    try {
      interaction = fake.slashCommand('ask', { image: clip, question: 'what happens?' }, { user });
      const reply = await finalReply(fake, interaction);
      expect(reply.original!.content).toBe(t('en', 'media.video-no-ffmpeg'));
    } finally {
      process.env.PATH = saved;
    }
    expect(interaction.callback?.type).toBe(4); // answered at once, privately
    expect(Number(interaction.callback?.data?.flags) & 64).toBe(64);
    expect(fake.cdnRequests.some((r) => r.path.includes('clip.mp4'))).toBe(false);
    const [a] = await pictures(1);
    await finalReply(fake, fake.slashCommand('ask', { image: a! }, { user }));
    expect(observed.calls).toHaveLength(1);
  });
});

describe.skipIf(!hasFfmpeg)('Discord: short videos through ffmpeg', () => {
  it('a video attachment becomes frames: /ask and a mention', async () => {
    await start({ mentionMode: true });
    const user = fake.createUser('fi');
    const mp4 = fake.attachment({ filename: 'clip.mp4', contentType: 'video/mp4', data: testVideo(2) });
    await finalReply(fake, fake.slashCommand('ask', { image: mp4, question: 'what moves?' }, { user }));
    expect(observed.calls[0]!.result!.imageCount).toBe(3);
    expect(messageImages(observed.calls[0]!.request.messages.at(-1)!)).toEqual([0, 1, 2]);
    const webm = fake.attachment({ filename: 'clip.webm', contentType: 'video/webm', data: testVideo(2, 'webm') });
    const [photo] = await pictures(1);
    const asking = fake.userMessage({ user, content: 'the clip and the photo?', attachments: [webm, photo!], mentionBot: true });
    await finalChannelReply(fake, fake.textChannel.id, asking.id);
    expect(observed.calls[1]!.result!.imageCount).toBe(4); // 3 frames, then the photo
  });
});
