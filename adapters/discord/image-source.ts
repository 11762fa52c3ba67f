// A Discord attachment as the core's lazy ImageSource: size, type and pixel size come from the
// attachment metadata, so an oversized or non-image file is refused without downloading it; the
// download itself stops at the byte limit and honours cancellation. Pictures, GIFs and videos
// (`video/*`: the core samples frames) are what a message is asked about.
import type { Attachment } from 'discord.js';
import type { ImageSource } from '../../src/bot/types.js';
import { VistyleError } from '../../src/errors.js';

/** The attachment fields the adapter uses (discord.js Attachment, or the same from a raw payload). */
export type AttachmentLike = Pick<Attachment, 'id' | 'url' | 'size' | 'contentType' | 'name' | 'width' | 'height'>;

export function attachmentImageSource(attachment: AttachmentLike): ImageSource {
  const source: ImageSource = {
    sizeBytes: attachment.size,
    fileName: attachment.name,
    fetch: ({ signal, maxBytes }) => download(attachment, signal, maxBytes),
  };
  if (attachment.contentType) source.mime = attachment.contentType;
  if (attachment.width) source.width = attachment.width;
  if (attachment.height) source.height = attachment.height;
  return source;
}

/** Pictures, GIFs and videos, by content type or, when Discord gives none, by file name. */
export function isMediaAttachment(attachment: AttachmentLike): boolean {
  const type = attachment.contentType?.toLowerCase() ?? '';
  return type.startsWith('image/') || type.startsWith('video/') || /\.(jpe?g|png|webp|gif|mp4|m4v|mov|webm|mkv)$/i.test(attachment.name);
}

/**
 * The attachments to ask about, in order: every picture, GIF and video; when there is none, the
 * first file (so that the core can say why it is not one).
 */
export function pickAttachments<T extends AttachmentLike>(attachments: Iterable<T>): T[] {
  const all = [...attachments];
  const media = all.filter(isMediaAttachment);
  return media.length > 0 ? media : all.slice(0, 1);
}

async function download(attachment: AttachmentLike, signal: AbortSignal, maxBytes: number): Promise<Uint8Array> {
  if (attachment.size > maxBytes) {
    throw new VistyleError('IMAGE_TOO_LARGE', `attachment is ${attachment.size} bytes (limit ${maxBytes})`, {
      details: { sizeBytes: attachment.size, maxBytes },
    });
  }
  let response: Response;
  try {
    response = await fetch(attachment.url, { signal });
  } catch (error) {
    if (signal.aborted) throw new VistyleError('CANCELLED', 'download cancelled', { cause: error });
    throw new VistyleError('NETWORK', 'could not download the attachment from Discord', {
      cause: error,
      details: { attachmentId: attachment.id },
    });
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel().catch(() => undefined);
    throw new VistyleError('NETWORK', `downloading the attachment failed with HTTP ${response.status}`, {
      details: { attachmentId: attachment.id, status: response.status },
    });
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        throw new VistyleError('IMAGE_TOO_LARGE', `attachment is larger than ${maxBytes} bytes`, {
          details: { maxBytes },
        });
      }
      chunks.push(value);
    }
  } catch (error) {
    await reader.cancel().catch(() => undefined);
    if (error instanceof VistyleError) throw error;
    if (signal.aborted) throw new VistyleError('CANCELLED', 'download cancelled', { cause: error });
    throw new VistyleError('NETWORK', 'the attachment download broke off', { cause: error, details: { attachmentId: attachment.id } });
  }
  const bytes = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}
