// One file a user sent -> the pictures the model sees. A still picture stays as it is; an animated
// GIF/WebP (sharp) or a short video (ffmpeg) becomes N frames sampled evenly over its length, given
// to the model as consecutive pictures of one message, the way LLaVA-Interleave treats video.
import { VistyleError } from '../errors.js';
import { animationFrames } from './animation.js';
import { mediaError } from './errors.js';
import { videoFrames } from './ffmpeg.js';
import { sniffMedia } from './sniff.js';

/** Longest side of a frame taken from an animation or a video (the model sees 384x384). */
export const FRAME_MAX_SIDE = 768;
/** How long ffprobe, and then ffmpeg, may take on one video. */
export const VIDEO_TOOL_TIMEOUT_MS = 30_000;

export interface ExpandOptions {
  /** Frames taken from an animation or a video (VISTYLE_VIDEO_FRAMES). */
  frames: number;
  /** Longest animation or video, in seconds (VISTYLE_VIDEO_MAX_SECONDS). */
  maxSeconds: number;
  /** Largest video file (VISTYLE_VIDEO_MAX_BYTES). */
  maxVideoBytes: number;
  signal?: AbortSignal;
  /** Where ffmpeg is looked for (its PATH); default process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface ExpandedMedia {
  kind: 'picture' | 'animation' | 'video';
  /** What the model sees, in order (one for a still picture). */
  pictures: { bytes: Uint8Array; mime: string }[];
  /** Frames in the source (animations), seconds long (animations with delays, videos). */
  sourceFrames?: number;
  durationS?: number;
}

/**
 * Throws IMAGE_UNSUPPORTED (neither a picture nor a video we read), and the media refusals
 * (errors.ts): file-empty, video-no-ffmpeg, video-too-large, video-too-long, video-no-picture,
 * video-empty, video-unreadable, animation-*. CANCELLED when `signal` fired meanwhile.
 */
export async function expandMedia(bytes: Uint8Array, options: ExpandOptions): Promise<ExpandedMedia> {
  const sniffed = sniffMedia(bytes);
  if (!sniffed) {
    throw new VistyleError('IMAGE_UNSUPPORTED', 'the file is not a JPEG, PNG, GIF or WebP picture, nor an MP4, MOV, WebM or AVI video', {
      details: { bytes: bytes.byteLength },
    });
  }
  if (sniffed.kind === 'empty') throw mediaError('file-empty', 'the file is empty (0 bytes)');
  try {
    if (sniffed.kind === 'video') {
      if (bytes.byteLength > options.maxVideoBytes) throw videoTooLarge(bytes.byteLength, options.maxVideoBytes);
      const video = await videoFrames(
        bytes,
        sniffed.container,
        { frames: options.frames, maxSeconds: options.maxSeconds, maxSide: FRAME_MAX_SIDE, timeoutMs: VIDEO_TOOL_TIMEOUT_MS },
        { ...(options.signal ? { signal: options.signal } : {}), ...(options.env ? { env: options.env } : {}) },
      );
      return {
        kind: 'video',
        pictures: video.frames.map((frame) => ({ bytes: frame, mime: 'image/jpeg' })),
        ...(video.durationS === undefined ? {} : { durationS: video.durationS }),
      };
    }
    if (sniffed.mime === 'image/gif' || sniffed.mime === 'image/webp') {
      const animation = await animationFrames(bytes, { frames: options.frames, maxSeconds: options.maxSeconds, maxSide: FRAME_MAX_SIDE });
      if (animation) {
        return {
          kind: 'animation',
          pictures: animation.frames.map((frame) => ({ bytes: frame, mime: 'image/jpeg' })),
          sourceFrames: animation.info.frames,
          ...(animation.info.durationMs === undefined ? {} : { durationS: animation.info.durationMs / 1000 }),
        };
      }
    }
    return { kind: 'picture', pictures: [{ bytes, mime: sniffed.mime }] };
  } catch (error) {
    if (options.signal?.aborted) throw new VistyleError('CANCELLED', 'cancelled while reading the video', { cause: error });
    throw error;
  }
}

export function videoTooLarge(size: number, limit: number): VistyleError {
  return mediaError('video-too-large', `the video is ${size} bytes (limit ${limit})`, { sizeBytes: size, limit: formatMegabytes(limit) });
}

function formatMegabytes(bytes: number): string {
  return `${Math.round((bytes / (1024 * 1024)) * 10) / 10} MB`;
}
