// What a user's file is, from its first bytes: one of the picture formats the engine reads (JPEG,
// PNG, GIF, WebP — GIF and WebP may be animated), a video container ffmpeg may read (MP4/MOV,
// WebM/Matroska, AVI), or neither. The container decides the demuxer ffmpeg is told to use, so a
// file never picks its own (an HLS playlist or a concat script would make ffmpeg open other files).

export type ImageKind = 'image/jpeg' | 'image/png' | 'image/gif' | 'image/webp';

/** ffmpeg's demuxer names for the containers we accept. */
export type VideoContainer = 'mov' | 'matroska' | 'avi';

export type SniffedMedia =
  | { kind: 'image'; mime: ImageKind }
  | { kind: 'video'; container: VideoContainer; mime: string }
  | { kind: 'empty' };

/** ISO base media brands that are still pictures (HEIC/HEIF, AVIF), not videos. */
const IMAGE_BRANDS = /^(heic|heix|hevc|hevx|heim|heis|mif1|msf1|avif|avis)$/;
/** QuickTime files without an ftyp box start with one of these atoms. */
const QUICKTIME_ATOMS = new Set(['moov', 'mdat', 'wide', 'free', 'skip', 'pnot']);

function ascii(bytes: Uint8Array, start: number, end: number): string {
  return String.fromCharCode(...bytes.subarray(start, Math.min(end, bytes.length)));
}

/** The picture format of these bytes from their signature, or undefined. */
export function sniffImage(bytes: Uint8Array): ImageKind | undefined {
  const at = (i: number) => bytes[i];
  if (bytes.length >= 3 && at(0) === 0xff && at(1) === 0xd8 && at(2) === 0xff) return 'image/jpeg';
  if (bytes.length >= 8 && [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((b, i) => at(i) === b)) return 'image/png';
  if (bytes.length >= 6 && (ascii(bytes, 0, 6) === 'GIF87a' || ascii(bytes, 0, 6) === 'GIF89a')) return 'image/gif';
  if (bytes.length >= 12 && ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 12) === 'WEBP') return 'image/webp';
  return undefined;
}

/** The media kind of these bytes, or undefined when it is none we read. */
export function sniffMedia(bytes: Uint8Array): SniffedMedia | undefined {
  if (bytes.byteLength === 0) return { kind: 'empty' };
  const image = sniffImage(bytes);
  if (image) return { kind: 'image', mime: image };
  if (bytes.length >= 12 && ascii(bytes, 4, 8) === 'ftyp') {
    const brand = ascii(bytes, 8, 12).trim();
    if (IMAGE_BRANDS.test(brand)) return undefined;
    return { kind: 'video', container: 'mov', mime: brand === 'qt' ? 'video/quicktime' : 'video/mp4' };
  }
  if (bytes.length >= 8 && QUICKTIME_ATOMS.has(ascii(bytes, 4, 8))) return { kind: 'video', container: 'mov', mime: 'video/quicktime' };
  if (bytes.length >= 4 && bytes[0] === 0x1a && bytes[1] === 0x45 && bytes[2] === 0xdf && bytes[3] === 0xa3) {
    return { kind: 'video', container: 'matroska', mime: 'video/webm' };
  }
  if (bytes.length >= 12 && ascii(bytes, 0, 4) === 'RIFF' && ascii(bytes, 8, 12) === 'AVI ') return { kind: 'video', container: 'avi', mime: 'video/x-msvideo' };
  return undefined;
}

/** Whether a MIME type the platform reports names a video (checked against the video limits). */
export function isVideoMime(mime: string | undefined): boolean {
  return !!mime && /^video\//i.test(mime.trim());
}
