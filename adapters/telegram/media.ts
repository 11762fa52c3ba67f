// Pictures in Telegram messages: photos (several sizes; we take the largest one the Bot API will
// hand out and the core accepts), GIFs (`animation`, which Telegram turns into MP4), videos and
// video notes (the core samples frames from them), and documents (a file sent "as a file"; its
// MIME type, name and size go to the core, which refuses what is clearly not a picture before
// downloading and sniffs the bytes of the rest). The bytes are fetched lazily, through getFile and the file download URL,
// only when the core asks for them, and never past the core's byte limit.
import { readFile, stat } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { fileURLToPath } from 'node:url';
import type { Telegram } from 'telegraf';
import type { Message, PhotoSize } from 'telegraf/types';
import { VistyleError } from '../../src/errors.js';
import { formatBytes } from '../../src/bot/i18n.js';
import type { ImageSource } from '../../src/bot/types.js';
import { isApiError } from './api-errors.js';

/** getFile refuses files above this on the public Bot API. */
export const BOT_API_DOWNLOAD_LIMIT = 20 * 1024 * 1024;

/**
 * The largest size the bot can download and the core accepts; when even the smallest is too big,
 * the smallest (its reported size lets the core refuse it politely without downloading).
 */
export function pickPhotoSize(sizes: readonly PhotoSize[], maxBytes: number): PhotoSize | undefined {
  const limit = Math.min(maxBytes, BOT_API_DOWNLOAD_LIMIT);
  const byArea = [...sizes].sort((a, b) => a.width * a.height - b.width * b.height);
  const fitting = byArea.filter((size) => (size.file_size ?? 0) <= limit);
  return fitting.at(-1) ?? byArea[0];
}

/**
 * What a message carries for the model: a photo (its largest usable size), a GIF (Telegram sends
 * it as an MP4 `animation`), a `video`, a round `video_note`, or a file (`document`: a picture,
 * a video or anything else, which the core refuses politely). At most one per message; an album is
 * several messages.
 */
export function picturesOf(message: Message, telegram: Telegram, maxImageBytes: number): ImageSource[] {
  if ('photo' in message && message.photo.length > 0) {
    const size = pickPhotoSize(message.photo, maxImageBytes);
    if (!size) return [];
    const source: ImageSource = {
      width: size.width,
      height: size.height,
      mime: 'image/jpeg',
      fetch: (options) => downloadWithinBotApiLimit(telegram, size.file_id, size.file_size, options),
    };
    if (size.file_size !== undefined) source.sizeBytes = size.file_size;
    return [source];
  }
  // An animation message also has `document` (Bot API: for backward compatibility): look first.
  const clip =
    'animation' in message ? message.animation : 'video' in message ? message.video : 'video_note' in message ? message.video_note : undefined;
  if (clip) {
    const source: ImageSource = {
      // video notes are always MP4, and Telegram gives them no MIME type
      mime: ('mime_type' in clip && clip.mime_type) || 'video/mp4',
      fetch: (options) => downloadWithinBotApiLimit(telegram, clip.file_id, clip.file_size, options),
    };
    if (clip.file_size !== undefined) source.sizeBytes = clip.file_size;
    if ('file_name' in clip && clip.file_name) source.fileName = clip.file_name;
    if ('width' in clip) [source.width, source.height] = [clip.width, clip.height];
    return [source];
  }
  if ('document' in message) {
    const document = message.document;
    const source: ImageSource = { fetch: (options) => downloadWithinBotApiLimit(telegram, document.file_id, document.file_size, options) };
    if (document.file_size !== undefined) source.sizeBytes = document.file_size;
    if (document.mime_type !== undefined) source.mime = document.mime_type;
    if (document.file_name !== undefined) source.fileName = document.file_name;
    return [source];
  }
  return [];
}

/**
 * The core refuses files over its own limit before downloading; one under it (when that limit is
 * set above 20 MB) but over what getFile hands out is refused here, naming the Bot API's limit.
 */
function downloadWithinBotApiLimit(
  telegram: Telegram,
  fileId: string,
  fileSize: number | undefined,
  options: { signal: AbortSignal; maxBytes: number },
): Promise<Uint8Array> {
  if (fileSize !== undefined && fileSize > BOT_API_DOWNLOAD_LIMIT) return Promise.reject(overBotApiLimit());
  return downloadImage(telegram, fileId, options);
}

function overBotApiLimit(cause?: unknown): VistyleError {
  return new VistyleError('IMAGE_TOO_LARGE', 'Telegram does not let bots download files this large', {
    cause,
    details: { limit: formatBytes(BOT_API_DOWNLOAD_LIMIT) },
  });
}

/**
 * getFile + download, stopping at `maxBytes`. A local Bot API server (`--local`) answers with an
 * absolute path instead, which telegraf turns into a file: URL.
 */
export async function downloadImage(
  telegram: Telegram,
  fileId: string,
  { signal, maxBytes }: { signal: AbortSignal; maxBytes: number },
): Promise<Uint8Array> {
  let link: URL;
  try {
    link = await telegram.getFileLink(fileId);
  } catch (error) {
    if (isApiError(error, 400, /too big/i)) throw overBotApiLimit(error);
    throw new VistyleError('NETWORK', 'could not get the picture from Telegram (getFile failed)', { cause: error });
  }
  signal.throwIfAborted();
  return link.protocol === 'file:' ? await readLocalFile(link, maxBytes) : await fetchLimited(link, signal, maxBytes);
}

async function readLocalFile(link: URL, maxBytes: number): Promise<Uint8Array> {
  const path = fileURLToPath(link);
  const info = await stat(path);
  if (info.size > maxBytes) throw tooLarge(info.size, maxBytes);
  return new Uint8Array(await readFile(path));
}

/** GET with node:http(s) (lighter per request than fetch), stopping past `maxBytes`. */
function fetchLimited(link: URL, signal: AbortSignal, maxBytes: number): Promise<Uint8Array> {
  return new Promise<Uint8Array>((resolve, reject) => {
    let settled = false;
    const fail = (error: unknown) => {
      if (settled) return;
      settled = true;
      reject(error);
    };
    const get = link.protocol === 'https:' ? httpsGet : httpGet;
    const request = get(link, { signal }, (response) => {
      if (response.statusCode !== 200) {
        response.resume();
        fail(new VistyleError('NETWORK', `downloading the picture from Telegram failed (HTTP ${response.statusCode})`));
        return;
      }
      const declared = Number(response.headers['content-length'] ?? Number.NaN);
      if (declared > maxBytes) {
        response.destroy();
        fail(tooLarge(declared, maxBytes));
        return;
      }
      const chunks: Buffer[] = [];
      let total = 0;
      response.on('data', (chunk: Buffer) => {
        total += chunk.length;
        if (total > maxBytes) {
          response.destroy();
          fail(tooLarge(total, maxBytes));
          return;
        }
        chunks.push(chunk);
      });
      response.on('end', () => {
        if (settled) return;
        settled = true;
        resolve(new Uint8Array(Buffer.concat(chunks, total)));
      });
      response.on('error', (error) => fail(downloadError(error, signal)));
      response.on('aborted', () => fail(downloadError(new Error('the download broke off'), signal)));
    });
    request.setTimeout(60_000, () => request.destroy(new Error('the download timed out')));
    request.on('error', (error) => fail(downloadError(error, signal)));
  });
}

/** The URL holds the token: the message never includes it (the cause is kept for debugging). */
function downloadError(error: unknown, signal: AbortSignal): unknown {
  if (signal.aborted) return signal.reason ?? error;
  return new VistyleError('NETWORK', 'could not download the picture from Telegram', { cause: error });
}

function tooLarge(size: number, maxBytes: number): VistyleError {
  return new VistyleError('IMAGE_TOO_LARGE', `the picture is ${size} bytes; the limit is ${maxBytes}`, {
    details: { sizeBytes: size, maxBytes },
  });
}
