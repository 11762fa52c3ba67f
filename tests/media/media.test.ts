// src/media: what a file becomes for the model. Still pictures pass through untouched; animated
// GIF/WebP become N frames (sharp) sampled evenly over their length; videos become N frames
// through the real ffmpeg (skipped with a message where it is missing, except under CI=true);
// every bad input is a clear refusal with its reason, never a crash.
import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { isVistyleError, type VistyleError } from '../../src/errors.js';
import {
  animationInfo,
  expandMedia,
  ffmpegAvailable,
  MAX_CONCURRENT_VIDEOS,
  videoReads,
  MAX_ANIMATION_FRAMES,
  mediaRefusalOf,
  runTool,
  sampleFrameIndexes,
  sampleTimes,
  sniffMedia,
  type ExpandOptions,
} from '../../src/media/index.js';
import { animatedGif, audioOnlyMp4, colourVideo, ffmpegFile, ffmpegOrSkip, frameColors, testVideo } from '../support/media-files.js';

const PNG = new Uint8Array(readFileSync(new URL('../fixtures/images/test_image_64x48.png', import.meta.url)));
const options: ExpandOptions = { frames: 4, maxSeconds: 60, maxVideoBytes: 10 * 1024 * 1024 };
const hasFfmpeg = ffmpegOrSkip('the video tests of tests/media/media.test.ts');

async function refusal(promise: Promise<unknown>): Promise<VistyleError> {
  try {
    await promise;
  } catch (error) {
    if (isVistyleError(error)) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

/** The mean colour of a picture. */
async function meanColour(bytes: Uint8Array): Promise<number[]> {
  const stats = await sharp(bytes).stats();
  return stats.channels.slice(0, 3).map((c) => Math.round(c.mean));
}

describe('sniffing', () => {
  it('tells pictures, video containers, empty files and everything else apart', () => {
    expect(sniffMedia(PNG)).toEqual({ kind: 'image', mime: 'image/png' });
    expect(sniffMedia(new Uint8Array())).toEqual({ kind: 'empty' });
    const box = (brand: string) => new Uint8Array([0, 0, 0, 0x18, ...Buffer.from(`ftyp${brand}`), 0, 0, 0, 0]);
    expect(sniffMedia(box('isom'))).toMatchObject({ kind: 'video', container: 'mov' });
    expect(sniffMedia(box('qt  '))).toMatchObject({ kind: 'video', container: 'mov', mime: 'video/quicktime' });
    expect(sniffMedia(box('heic'))).toBeUndefined(); // a HEIC photo is not a video
    expect(sniffMedia(new Uint8Array([0x1a, 0x45, 0xdf, 0xa3, 1, 2]))).toMatchObject({ kind: 'video', container: 'matroska' });
    expect(sniffMedia(new Uint8Array(Buffer.from('RIFF\0\0\0\0AVI LIST')))).toMatchObject({ kind: 'video', container: 'avi' });
    expect(sniffMedia(new Uint8Array(Buffer.from('#EXTM3U\n#EXT-X-VERSION:3\n')))).toBeUndefined(); // a playlist never reaches ffmpeg
  });
});

describe('still pictures and animations', () => {
  it('leaves a still picture (and a one-frame GIF) exactly as it is', async () => {
    const still = await expandMedia(PNG, options);
    expect(still.kind).toBe('picture');
    expect(still.pictures).toHaveLength(1);
    expect(Buffer.from(still.pictures[0]!.bytes).equals(Buffer.from(PNG))).toBe(true);
    const oneFrame = animatedGif([[10, 20, 30]]);
    expect(Buffer.from((await expandMedia(oneFrame, options)).pictures[0]!.bytes).equals(oneFrame)).toBe(true);
  });

  it('turns an animated GIF into N frames sampled evenly over its length, in order', async () => {
    const colours = frameColors(12);
    const gif = animatedGif(colours, { width: 16, height: 12 });
    expect(await animationInfo(gif)).toMatchObject({ frames: 12, width: 16, height: 12, durationMs: 1200 });
    const expanded = await expandMedia(gif, options);
    expect(expanded).toMatchObject({ kind: 'animation', sourceFrames: 12, durationS: 1.2 });
    expect(expanded.pictures).toHaveLength(4);
    // 12 frames of 100 ms, 4 samples at 150, 450, 750, 1050 ms: frames 1, 4, 7, 10
    const indexes = sampleFrameIndexes({ frames: 12, delays: Array(12).fill(100), durationMs: 1200 }, 4);
    expect(indexes).toEqual([1, 4, 7, 10]);
    for (const [i, picture] of expanded.pictures.entries()) {
      expect(picture.mime).toBe('image/jpeg');
      const mean = await meanColour(picture.bytes);
      const want = colours[indexes[i]!]!;
      mean.forEach((value, c) => expect(Math.abs(value - want[c]!)).toBeLessThanOrEqual(6));
    }
  });

  it('samples by time when the frames have different delays', () => {
    // a long first frame (900 ms) then three of 100 ms: samples at 150, 450, 750 and 1050 ms
    expect(sampleFrameIndexes({ frames: 4, delays: [900, 100, 100, 100], durationMs: 1200 }, 4)).toEqual([0, 0, 0, 2]);
    expect(sampleFrameIndexes({ frames: 3, delays: undefined, durationMs: undefined }, 8)).toEqual([0, 1, 2]);
  });

  it('turns an animated WebP into frames too', async () => {
    const raw = Buffer.alloc(8 * 6 * 3 * 3);
    for (let f = 0; f < 3; f++) raw.fill(f * 100, f * 8 * 6 * 3, (f + 1) * 8 * 6 * 3);
    const webp = await sharp(raw, { raw: { width: 8, height: 18, channels: 3, pageHeight: 6 } }).webp({ delay: [100, 100, 100], lossless: true }).toBuffer();
    const expanded = await expandMedia(new Uint8Array(webp), { ...options, frames: 3 });
    expect(expanded.kind).toBe('animation');
    expect(await Promise.all(expanded.pictures.map(async (p) => (await meanColour(p.bytes))[0]))).toEqual([0, 100, 200].map((v) => expect.closeTo(v, -1)));
  });

  it('refuses a 10,000-frame GIF from its header, quickly', async () => {
    const gif = animatedGif(Array.from({ length: 10_000 }, (_, i) => [i % 256, 0, 0] as [number, number, number]), { width: 2, height: 2, delayMs: 10 });
    const started = Date.now();
    const error = await refusal(expandMedia(gif, options));
    expect(mediaRefusalOf(error)).toBe('animation-too-many-frames');
    expect(error.code).toBe('IMAGE_TOO_LARGE');
    expect(error.details).toMatchObject({ frames: 10_000, limit: MAX_ANIMATION_FRAMES });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('refuses an animation longer than the limit, and one with a damaged frame', async () => {
    const slow = animatedGif(frameColors(5), { delayMs: 2000 });
    const long = await refusal(expandMedia(slow, { ...options, maxSeconds: 5 }));
    expect(mediaRefusalOf(long)).toBe('video-too-long');
    expect(long.details).toMatchObject({ seconds: 10, limit: 5 });

    const damaged = animatedGif(frameColors(8), { damageFrame: 5 });
    const error = await refusal(expandMedia(damaged, options));
    expect(error.code).toBe('IMAGE_CORRUPT');
    expect(mediaRefusalOf(error)).toBe('animation-corrupt');
  });

  it('refuses an empty file and a file that is neither picture nor video', async () => {
    expect(mediaRefusalOf(await refusal(expandMedia(new Uint8Array(), options)))).toBe('file-empty');
    expect((await refusal(expandMedia(new TextEncoder().encode('just text'), options))).code).toBe('IMAGE_UNSUPPORTED');
  });
});

describe('videos without ffmpeg', () => {
  it('say that this server cannot read videos, and ffmpegAvailable() says so too', async () => {
    const env = { PATH: '/nonexistent-vistyle-path' };
    expect(await ffmpegAvailable(env)).toBe(false);
    const mp4 = new Uint8Array([0, 0, 0, 0x18, ...Buffer.from('ftypisom'), 0, 0, 2, 0, ...Buffer.from('isomiso2mp41')]);
    const error = await refusal(expandMedia(mp4, { ...options, env }));
    expect(error.code).toBe('IMAGE_UNSUPPORTED');
    expect(mediaRefusalOf(error)).toBe('video-no-ffmpeg');
  });
});

describe.skipIf(!hasFfmpeg)('videos through ffmpeg', () => {
  it('ffmpegAvailable() finds it on PATH', async () => {
    expect(await ffmpegAvailable()).toBe(true);
  });

  it('turns a short MP4 into N frames sampled evenly over its length', async () => {
    // four seconds: red, green, blue, white; 4 samples at 0.5, 1.5, 2.5, 3.5 s
    const video = colourVideo(['red', 'lime', 'blue', 'white']);
    expect(sampleTimes(4, 4)).toEqual([0.5, 1.5, 2.5, 3.5]);
    const expanded = await expandMedia(video, options);
    expect(expanded.kind).toBe('video');
    expect(expanded.durationS).toBeCloseTo(4, 0);
    expect(expanded.pictures).toHaveLength(4);
    const means = await Promise.all(expanded.pictures.map((p) => meanColour(p.bytes)));
    const expected = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]];
    means.forEach((mean, i) => mean.forEach((value, c) => expect(Math.abs(value - expected[i]![c]!)).toBeLessThanOrEqual(30)));
    for (const picture of expanded.pictures) expect(sniffMedia(picture.bytes)).toEqual({ kind: 'image', mime: 'image/jpeg' });
  });

  it('reads WebM, and takes 8 frames when asked', async () => {
    const expanded = await expandMedia(testVideo(2, 'webm'), { ...options, frames: 8 });
    expect(expanded.pictures).toHaveLength(8);
    const { width, height } = await sharp(expanded.pictures[0]!.bytes).metadata();
    expect([width, height]).toEqual([96, 64]); // small videos keep their size
  });

  it('shrinks large frames to at most 768 px', async () => {
    const expanded = await expandMedia(testVideo(1, 'mp4', '1280x720'), { ...options, frames: 1 });
    const { width, height } = await sharp(expanded.pictures[0]!.bytes).metadata();
    expect([width, height]).toEqual([768, 432]);
  });

  it('refuses a video over the length and size limits', async () => {
    const video = testVideo(3);
    const long = await refusal(expandMedia(video, { ...options, maxSeconds: 2 }));
    expect(mediaRefusalOf(long)).toBe('video-too-long');
    expect(long.details).toMatchObject({ seconds: 3, limit: 2 });
    const big = await refusal(expandMedia(video, { ...options, maxVideoBytes: 1024 }));
    expect(mediaRefusalOf(big)).toBe('video-too-large');
  });

  it('refuses a video with no video stream, a zero-length one and a damaged one, clearly', async () => {
    expect(mediaRefusalOf(await refusal(expandMedia(audioOnlyMp4(), options)))).toBe('video-no-picture');
    const zero = ffmpegFile(['-f', 'lavfi', '-i', 'testsrc=duration=1:size=64x48:rate=10', '-frames:v', '0', '-c:v', 'mpeg4']);
    expect(mediaRefusalOf(await refusal(expandMedia(zero, options)))).toBe('video-empty');
    const video = testVideo(2);
    const garbled = Buffer.from(video);
    garbled.fill(0x42, 64); // the ftyp box survives, the rest is gone
    const error = await refusal(expandMedia(garbled, options));
    expect(error.code).toBe('IMAGE_CORRUPT');
    expect(mediaRefusalOf(error)).toBe('video-unreadable');
  });

  it('reads at most two videos at once; the others wait their turn and all get their frames', async () => {
    const clip = testVideo(1);
    let most = 0;
    let queued = 0;
    const watch = setInterval(() => {
      most = Math.max(most, videoReads().running);
      queued = Math.max(queued, videoReads().waiting);
    }, 2);
    try {
      const all = await Promise.all(Array.from({ length: 5 }, () => expandMedia(clip, options)));
      for (const expanded of all) expect(expanded.pictures).toHaveLength(4);
    } finally {
      clearInterval(watch);
    }
    expect(queued).toBeGreaterThan(0);
    expect(videoReads()).toEqual({ running: 0, waiting: 0 });
    expect(most).toBeGreaterThanOrEqual(1);
    expect(most).toBeLessThanOrEqual(MAX_CONCURRENT_VIDEOS);
  });

  it('stops ffmpeg when the request is cancelled', async () => {
    const controller = new AbortController();
    controller.abort();
    const error = await refusal(expandMedia(testVideo(1), { ...options, signal: controller.signal }));
    expect(error.code).toBe('CANCELLED');
  });
});

describe('runTool', () => {
  it('kills a program past its time limit and past its output limit, never through a shell', async () => {
    const slow = await runTool(process.execPath, ['-e', 'setTimeout(() => {}, 10_000)'], { timeoutMs: 200, maxStdoutBytes: 1024 });
    expect(slow).toMatchObject({ timedOut: true, code: null });
    const chatty = await runTool(process.execPath, ['-e', 'process.stdout.write("x".repeat(1 << 20)); setTimeout(() => {}, 10_000)'], { timeoutMs: 5000, maxStdoutBytes: 1000 });
    expect(chatty.overflowed).toBe(true);
    expect(chatty.stdout.length).toBeLessThanOrEqual(1000);
    const literal = await runTool(process.execPath, ['-e', 'process.stdout.write(process.argv[1])', '$(echo hi); rm -rf /'], { timeoutMs: 5000, maxStdoutBytes: 1000 });
    expect(literal.stdout.toString()).toBe('$(echo hi); rm -rf /');
    const missing = await runTool('/nonexistent/ffmpeg', [], { timeoutMs: 1000, maxStdoutBytes: 10 });
    expect(missing.spawnError).toBe('ENOENT');
  });
});

describe('vistyle doctor', () => {
  it('reports ffmpeg the way the bot looks for it', async () => {
    const { checkFfmpeg } = await import('../../src/doctor/checks/files.js');
    expect(await checkFfmpeg({ PATH: '/nonexistent-vistyle-path' })).toMatchObject({ check: 'ffmpeg', status: 'warn', fix: expect.stringContaining('apt-get install ffmpeg') });
    if (hasFfmpeg) expect(await checkFfmpeg()).toMatchObject({ check: 'ffmpeg', status: 'ok' });
  });
});
