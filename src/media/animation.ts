// Animated GIF and WebP through sharp (libvips reads every frame: `pages`, `delay`). A still one
// is left as it is (the engine reads it); an animated one becomes N frames sampled evenly over its
// length, each flattened onto white (as the engine does) and re-encoded as a small JPEG. The
// header is checked first, so a 10,000-frame GIF or one whose frames add up to gigapixels is
// refused before any frame is decoded.
import sharp, { type Metadata } from 'sharp';
import { mediaError } from './errors.js';

/** Animations with more frames than this are refused (a GIF of a whole film, or a crafted one). */
export const MAX_ANIMATION_FRAMES = 1000;
/** Decoding frame k of a GIF decodes the frames before it: all frames together stay under this. */
export const MAX_ANIMATION_PIXELS = 400_000_000;

export interface AnimationLimits {
  /** Frames to take, evenly over the length. */
  frames: number;
  /** Longest animation accepted, in seconds (from the frame delays). */
  maxSeconds: number;
  /** Longest side of each frame (smaller animations keep their size). */
  maxSide: number;
}

export interface AnimationInfo {
  frames: number;
  width: number;
  /** Height of one frame. */
  height: number;
  /** Sum of the frame delays in ms; undefined when the file gives none. */
  durationMs: number | undefined;
  delays: number[] | undefined;
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Frame count, size and length of a GIF/WebP; IMAGE_CORRUPT (animation-corrupt) when the header is unreadable. */
export async function animationInfo(bytes: Uint8Array): Promise<AnimationInfo> {
  let meta: Metadata;
  try {
    meta = await sharp(toBuffer(bytes), { animated: true, limitInputPixels: false }).metadata();
  } catch (cause) {
    throw mediaError('animation-corrupt', `the animation is damaged: ${(cause as Error)?.message ?? String(cause)}`, {}, cause);
  }
  const frames = meta.pages ?? 1;
  const height = meta.pageHeight ?? (frames > 0 ? Math.round(meta.height / frames) : meta.height);
  const delays = Array.isArray(meta.delay) && meta.delay.length === frames ? meta.delay : undefined;
  const durationMs = delays ? delays.reduce((sum, d) => sum + Math.max(0, d), 0) : undefined;
  return { frames, width: meta.width, height, durationMs: durationMs && durationMs > 0 ? durationMs : undefined, delays };
}

/**
 * The frame shown at the middle of each of N equal slices of the animation's length (by its
 * delays; by frame number when it has none).
 */
export function sampleFrameIndexes(info: Pick<AnimationInfo, 'frames' | 'delays' | 'durationMs'>, count: number): number[] {
  const n = Math.max(1, Math.min(count, info.frames));
  if (!info.delays || !info.durationMs) {
    return Array.from({ length: n }, (_, i) => Math.min(info.frames - 1, Math.floor(((i + 0.5) * info.frames) / n)));
  }
  const ends: number[] = [];
  let at = 0;
  for (const delay of info.delays) ends.push((at += Math.max(0, delay)));
  return Array.from({ length: n }, (_, i) => {
    const time = ((i + 0.5) * info.durationMs!) / n;
    const index = ends.findIndex((end) => end > time);
    return index < 0 ? info.frames - 1 : index;
  });
}

/**
 * N frames of an animated GIF/WebP, or null for a still one. Throws (mediaError)
 * animation-too-many-frames, animation-too-large, video-too-long, animation-corrupt.
 */
export async function animationFrames(bytes: Uint8Array, limits: AnimationLimits): Promise<{ frames: Uint8Array[]; info: AnimationInfo; indexes: number[] } | null> {
  const info = await animationInfo(bytes);
  if (info.frames <= 1) return null;
  if (info.frames > MAX_ANIMATION_FRAMES) {
    throw mediaError('animation-too-many-frames', `the animation has ${info.frames} frames; at most ${MAX_ANIMATION_FRAMES} are read`, {
      frames: info.frames,
      limit: MAX_ANIMATION_FRAMES,
    });
  }
  if (info.width * info.height * info.frames > MAX_ANIMATION_PIXELS) {
    throw mediaError('animation-too-large', `the animation's frames add up to ${Math.round((info.width * info.height * info.frames) / 1e6)} megapixels`, {
      width: info.width,
      height: info.height,
      frames: info.frames,
    });
  }
  if (info.durationMs !== undefined && info.durationMs / 1000 > limits.maxSeconds) {
    throw mediaError('video-too-long', `the animation is ${(info.durationMs / 1000).toFixed(1)} s long; the limit is ${limits.maxSeconds} s`, {
      seconds: Math.ceil(info.durationMs / 1000),
      limit: limits.maxSeconds,
    });
  }
  const indexes = sampleFrameIndexes(info, limits.frames);
  const frames: Uint8Array[] = [];
  for (const page of indexes) {
    try {
      const jpeg = await sharp(toBuffer(bytes), { page, pages: 1, failOn: 'warning', limitInputPixels: MAX_ANIMATION_PIXELS })
        .resize(limits.maxSide, limits.maxSide, { fit: 'inside', withoutEnlargement: true })
        .flatten({ background: '#ffffff' })
        .jpeg({ quality: 90 })
        .toBuffer();
      frames.push(new Uint8Array(jpeg.buffer, jpeg.byteOffset, jpeg.byteLength));
    } catch (cause) {
      throw mediaError('animation-corrupt', `frame ${page + 1} of the animation is damaged: ${(cause as Error)?.message ?? String(cause)}`, { frame: page + 1 }, cause);
    }
  }
  return { frames, info, indexes };
}
