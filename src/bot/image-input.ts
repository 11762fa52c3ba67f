// Checks a user's picture before it costs anything: the size and MIME type the platform reports
// (before downloading; a video against the video limits, and only where ffmpeg can read it), then
// the download, bounded in bytes and time. What the bytes are is src/media's job (expandMedia);
// decoding a picture (and IMAGE_CORRUPT for a damaged one) is the engine's.
import { isVistyleError, VistyleError } from '../errors.js';
import { formatBytes } from './i18n.js';
import { mediaError } from '../media/errors.js';
import { ffmpegAvailable } from '../media/ffmpeg.js';
import { videoTooLarge } from '../media/pictures.js';
import { isVideoMime, sniffImage, type ImageKind } from '../media/sniff.js';
import type { ImageSource } from './types.js';

export { sniffImage, type ImageKind } from '../media/sniff.js';

/** MIME types that cannot be a picture we read (an unknown or generic type is checked by sniffing). */
function clearlyNotAnImage(mime: string): boolean {
  const type = mime.toLowerCase().split(';')[0]!.trim();
  if (type === '' || type === 'application/octet-stream' || type === 'binary/octet-stream') return false;
  if (!type.startsWith('image/')) return true;
  return type === 'image/svg+xml';
}

/** Refuses from the platform's metadata alone (no download). */
export function precheckImage(source: ImageSource, maxBytes: number): void {
  if (source.sizeBytes !== undefined && source.sizeBytes > maxBytes) {
    throw new VistyleError('IMAGE_TOO_LARGE', `the picture is ${source.sizeBytes} bytes (limit ${maxBytes})`, {
      details: { sizeBytes: source.sizeBytes, limit: formatBytes(maxBytes) },
    });
  }
  if (source.mime && clearlyNotAnImage(source.mime)) {
    throw new VistyleError('IMAGE_UNSUPPORTED', `not a picture: ${source.mime}`, { details: { mime: source.mime } });
  }
}

/** How long a picture may take to download before the request gives up on it. */
export const DEFAULT_DOWNLOAD_TIMEOUT_MS = 60_000;

/**
 * Refuses from the platform's metadata alone (no download), a picture against the picture limit,
 * a video (its MIME type says so) against the video limit and only where ffmpeg can read it.
 */
export async function precheckMedia(source: ImageSource, limits: { maxImageBytes: number; maxVideoBytes: number }): Promise<void> {
  if (!isVideoMime(source.mime)) return precheckImage(source, limits.maxImageBytes);
  if (source.sizeBytes === 0) throw mediaError('file-empty', 'the video is empty (0 bytes)');
  if (source.sizeBytes !== undefined && source.sizeBytes > limits.maxVideoBytes) throw videoTooLarge(source.sizeBytes, limits.maxVideoBytes);
  if (!(await ffmpegAvailable())) throw mediaError('video-no-ffmpeg', 'ffmpeg is not installed on this server (it reads videos)', { mime: source.mime });
}

/** The most bytes to download for this source: a video's limit when it says it is one. */
export function downloadLimit(source: ImageSource, limits: { maxImageBytes: number; maxVideoBytes: number }): number {
  return isVideoMime(source.mime) ? limits.maxVideoBytes : limits.maxImageBytes;
}

/**
 * Downloads the bytes, at most `maxBytes`. Errors are VistyleErrors (NETWORK for a failed
 * download, or one that takes longer than `timeoutMs`: the picture downloads while its request
 * waits in the queue, and a download that never finishes would otherwise hold the engine slot
 * until the request's own time-out).
 */
export async function downloadSource(
  source: ImageSource,
  maxBytes: number,
  signal: AbortSignal,
  timeoutMs: number = DEFAULT_DOWNLOAD_TIMEOUT_MS,
): Promise<Uint8Array> {
  const deadline = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  // A source that ignores its signal still loses the race against the deadline.
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      deadline.abort();
      reject(new VistyleError('NETWORK', `downloading the picture took longer than ${Math.round(timeoutMs / 1000)} s`));
    }, timeoutMs);
  });
  let bytes: Uint8Array;
  try {
    bytes = await Promise.race([source.fetch({ signal: AbortSignal.any([signal, deadline.signal]), maxBytes }), timedOut]);
  } catch (error) {
    if (isVistyleError(error)) throw error;
    if (signal.aborted) throw new VistyleError('CANCELLED', 'cancelled while downloading the picture');
    throw new VistyleError('NETWORK', `downloading the picture failed: ${(error as Error)?.message ?? String(error)}`, { cause: error });
  } finally {
    clearTimeout(timer);
  }
  if (bytes.byteLength > maxBytes) {
    throw new VistyleError('IMAGE_TOO_LARGE', `the picture is ${bytes.byteLength} bytes (limit ${maxBytes})`, {
      details: { sizeBytes: bytes.byteLength, limit: formatBytes(maxBytes) },
    });
  }
  return bytes;
}

/** Downloads and checks a picture (JPEG, PNG, GIF or WebP by its signature); see downloadSource. */
export async function fetchImage(
  source: ImageSource,
  maxBytes: number,
  signal: AbortSignal,
  timeoutMs: number = DEFAULT_DOWNLOAD_TIMEOUT_MS,
): Promise<{ bytes: Uint8Array; mime: ImageKind }> {
  const bytes = await downloadSource(source, maxBytes, signal, timeoutMs);
  const mime = sniffImage(bytes);
  if (!mime) {
    throw new VistyleError('IMAGE_UNSUPPORTED', 'the file is not a JPEG, PNG, GIF or WebP picture', {
      details: { declared: source.mime ?? null, bytes: bytes.byteLength },
    });
  }
  return { bytes, mime };
}
