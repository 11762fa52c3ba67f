// Why a user's animation or video was refused. Each refusal is a VistyleError with one of the
// picture codes (so logs, metrics and the HTTP API treat it like any bad picture) and a `reason`
// in its details that picks the user's message (src/bot/i18n.ts, `media.<reason>`): "this server
// cannot read videos" says something quite different from "that picture is damaged".
import { VistyleError, type ErrorCode } from '../errors.js';

export type MediaRefusal =
  /** A file of zero bytes. */
  | 'file-empty'
  /** A video, and no ffmpeg/ffprobe on PATH. */
  | 'video-no-ffmpeg'
  /** A video container without a video stream (sound only, or cover art). */
  | 'video-no-picture'
  /** A video stream with no frame to show (zero length). */
  | 'video-empty'
  /** Longer than VISTYLE_VIDEO_MAX_SECONDS (videos and animations). */
  | 'video-too-long'
  /** Larger than VISTYLE_VIDEO_MAX_BYTES. */
  | 'video-too-large'
  /** ffmpeg could not decode it (damaged, an unknown codec) or took too long. */
  | 'video-unreadable'
  /** An animated GIF/WebP with more frames than MAX_ANIMATION_FRAMES. */
  | 'animation-too-many-frames'
  /** An animated GIF/WebP whose frames add up to more pixels than we decode. */
  | 'animation-too-large'
  /** A frame of an animated GIF/WebP is damaged. */
  | 'animation-corrupt';

const CODES: Record<MediaRefusal, ErrorCode> = {
  'file-empty': 'IMAGE_CORRUPT',
  'video-no-ffmpeg': 'IMAGE_UNSUPPORTED',
  'video-no-picture': 'IMAGE_UNSUPPORTED',
  'video-empty': 'IMAGE_CORRUPT',
  'video-too-long': 'IMAGE_TOO_LARGE',
  'video-too-large': 'IMAGE_TOO_LARGE',
  'video-unreadable': 'IMAGE_CORRUPT',
  'animation-too-many-frames': 'IMAGE_TOO_LARGE',
  'animation-too-large': 'IMAGE_TOO_LARGE',
  'animation-corrupt': 'IMAGE_CORRUPT',
};

export const MEDIA_REFUSALS = Object.keys(CODES) as MediaRefusal[];

/** A refusal; `details` values that are strings or numbers fill the user's message ({seconds}, {limit}...). */
export function mediaError(reason: MediaRefusal, message: string, details: Record<string, unknown> = {}, cause?: unknown): VistyleError {
  return new VistyleError(CODES[reason], message, { details: { ...details, reason }, ...(cause === undefined ? {} : { cause }) });
}

/** The refusal reason of an error made by mediaError, if it is one. */
export function mediaRefusalOf(error: unknown): MediaRefusal | undefined {
  const reason = (error as VistyleError | undefined)?.details?.reason;
  return typeof reason === 'string' && (MEDIA_REFUSALS as string[]).includes(reason) ? (reason as MediaRefusal) : undefined;
}
