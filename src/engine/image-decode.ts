// Turning untrusted image bytes into RGB pixels with sharp, refusing what we should not decode:
// the container is sniffed from its magic bytes (only JPEG, PNG, WebP and GIF get to sharp), the
// header's size is checked against the pixel limit before any pixel is decoded, and truncated data
// fails instead of coming back half grey. Animated images give their first frame; EXIF orientation
// is applied; alpha is flattened onto white; greyscale, palette, 16-bit and CMYK become 8-bit sRGB.
import sharp, { type Metadata } from 'sharp';
import { VistyleError } from '../errors.js';
import type { RawImage } from './image-resample.js';

export type ImageFormat = 'jpeg' | 'png' | 'webp' | 'gif';

export interface ImageLimits {
  /** Encoded images larger than this many bytes are refused. */
  maxBytes: number;
  /** Images whose header declares more pixels (width x height of one frame) are refused. */
  maxPixels: number;
}

/** 20 MiB and 50 megapixels: any phone photo fits; a decompression bomb does not. */
export const DEFAULT_IMAGE_LIMITS: Readonly<ImageLimits> = Object.freeze({
  maxBytes: 20 * 1024 * 1024,
  maxPixels: 50_000_000,
});

export interface ImageHeader {
  format: ImageFormat;
  /** Size after EXIF orientation (what the decoded pixels will have). */
  width: number;
  height: number;
  /** Frames in an animated image (1 otherwise); only the first is decoded. */
  frames: number;
}

const ALLOWED = 'JPEG, PNG, WebP or GIF';

function startsWith(bytes: Uint8Array, signature: readonly number[], offset = 0): boolean {
  if (bytes.length < offset + signature.length) return false;
  return signature.every((b, i) => bytes[offset + i] === b);
}

const ascii = (text: string): number[] => [...text].map((c) => c.charCodeAt(0));

/** The format named by the file's magic bytes, or null when it is none of the four we accept. */
export function sniffImageFormat(bytes: Uint8Array): ImageFormat | null {
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return 'jpeg';
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return 'png';
  if (startsWith(bytes, ascii('GIF87a')) || startsWith(bytes, ascii('GIF89a'))) return 'gif';
  if (startsWith(bytes, ascii('RIFF')) && startsWith(bytes, ascii('WEBP'), 8)) return 'webp';
  return null;
}

// Formats people do send, named in the refusal so that the message says what went wrong.
function describeUnsupported(bytes: Uint8Array): string {
  if (startsWith(bytes, ascii('ftyp'), 4)) {
    const brand = String.fromCharCode(...bytes.subarray(8, 12));
    if (/^(heic|heix|hevc|heim|heis|mif1|msf1)$/.test(brand)) return 'a HEIC/HEIF image';
    if (/^avi[fs]$/.test(brand)) return 'an AVIF image';
    return 'a video or other ISO media file';
  }
  if (startsWith(bytes, ascii('II*\0')) || startsWith(bytes, ascii('MM\0*'))) return 'a TIFF image';
  if (startsWith(bytes, ascii('BM'))) return 'a BMP image';
  if (startsWith(bytes, ascii('%PDF'))) return 'a PDF document';
  const head = new TextDecoder('utf-8', { fatal: false }).decode(bytes.subarray(0, 512)).trimStart().toLowerCase();
  if (head.startsWith('<svg') || (head.startsWith('<?xml') && head.includes('<svg'))) return 'an SVG drawing';
  return 'not an image';
}

function assertWithinByteLimit(bytes: Uint8Array, limits: ImageLimits): void {
  if (bytes.byteLength > limits.maxBytes) {
    throw new VistyleError(
      'IMAGE_TOO_LARGE',
      `The image file is ${formatMiB(bytes.byteLength)}; the limit is ${formatMiB(limits.maxBytes)}.`,
      { details: { bytes: bytes.byteLength, maxBytes: limits.maxBytes } },
    );
  }
}

function formatMiB(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Checks size, magic bytes and the header, without decoding pixels. Throws IMAGE_TOO_LARGE,
 * IMAGE_UNSUPPORTED or IMAGE_CORRUPT.
 */
export async function readImageHeader(bytes: Uint8Array, limits: ImageLimits = DEFAULT_IMAGE_LIMITS): Promise<ImageHeader> {
  if (bytes.byteLength === 0) throw new VistyleError('IMAGE_UNSUPPORTED', `The file is empty; send a ${ALLOWED} image.`);
  assertWithinByteLimit(bytes, limits);
  const sniffed = sniffImageFormat(bytes);
  if (!sniffed) {
    throw new VistyleError('IMAGE_UNSUPPORTED', `The file is ${describeUnsupported(bytes)}; send a ${ALLOWED} image.`);
  }
  let meta: Metadata;
  try {
    meta = await sharp(toBuffer(bytes), { limitInputPixels: false }).metadata();
  } catch (cause) {
    throw new VistyleError('IMAGE_CORRUPT', `The ${sniffed.toUpperCase()} image is damaged and cannot be read.`, {
      cause,
      details: { format: sniffed, reason: cause instanceof Error ? cause.message : String(cause) },
    });
  }
  if (meta.format !== sniffed) {
    // e.g. a PNG signature in front of something else: refuse rather than guess.
    throw new VistyleError('IMAGE_CORRUPT', `The file looks like ${sniffed.toUpperCase()} but is not a valid one.`, {
      details: { sniffed, decoder: meta.format },
    });
  }
  const frameHeight = meta.pageHeight ?? meta.height;
  const pixels = meta.width * frameHeight;
  if (!(meta.width > 0 && frameHeight > 0)) {
    throw new VistyleError('IMAGE_CORRUPT', 'The image header declares no pixels.', { details: { format: sniffed } });
  }
  if (pixels > limits.maxPixels) {
    throw new VistyleError(
      'IMAGE_TOO_LARGE',
      `The image is ${meta.width}×${frameHeight} (${(pixels / 1e6).toFixed(1)} megapixels); the limit is ${(limits.maxPixels / 1e6).toFixed(1)} megapixels.`,
      { details: { width: meta.width, height: frameHeight, maxPixels: limits.maxPixels } },
    );
  }
  // Orientations 5-8 swap width and height.
  const swapped = meta.orientation !== undefined && meta.orientation >= 5 && meta.orientation <= 8;
  return {
    format: sniffed,
    width: swapped ? frameHeight : meta.width,
    height: swapped ? meta.width : frameHeight,
    frames: meta.pages ?? 1,
  };
}

export interface DecodeOptions {
  /**
   * Let sharp shrink the image to this size (oriented width x height) while decoding — JPEG
   * shrink-on-load plus a cubic reduction. Only used for large images on the fast path.
   */
  shrinkTo?: { width: number; height: number };
  /** The result of readImageHeader on these bytes, when the caller already has it. */
  header?: ImageHeader;
}

/**
 * Decodes the first frame to 8-bit RGB after readImageHeader's checks (which it runs itself).
 * Throws IMAGE_TOO_LARGE, IMAGE_UNSUPPORTED or IMAGE_CORRUPT.
 */
export async function decodeImage(
  bytes: Uint8Array,
  limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
  options: DecodeOptions = {},
): Promise<{ image: RawImage; header: ImageHeader }> {
  const header = options.header ?? (await readImageHeader(bytes, limits));
  let pipeline = sharp(toBuffer(bytes), {
    failOn: 'truncated', // truncated data is an error; mere warnings (odd markers) are not
    limitInputPixels: limits.maxPixels, // sharp's own guard, in case the header check is bypassed
    autoOrient: true,
    pages: 1,
    page: 0,
  });
  if (options.shrinkTo) {
    pipeline = pipeline.resize(options.shrinkTo.width, options.shrinkTo.height, { fit: 'fill', kernel: 'cubic' });
  }
  pipeline = pipeline.flatten({ background: '#ffffff' }).toColourspace('srgb');
  try {
    const { data, info } = await pipeline.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) {
      throw new VistyleError('IMAGE_UNSUPPORTED', `The image has an unsupported colour layout (${info.channels} channels).`);
    }
    const image: RawImage = {
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      width: info.width,
      height: info.height,
      channels: 3,
    };
    return { image, header };
  } catch (cause) {
    if (cause instanceof VistyleError) throw cause;
    const reason = cause instanceof Error ? cause.message : String(cause);
    if (/pixel limit/i.test(reason)) {
      throw new VistyleError('IMAGE_TOO_LARGE', 'The image has more pixels than the limit.', { cause, details: { reason } });
    }
    throw new VistyleError('IMAGE_CORRUPT', `The ${header.format.toUpperCase()} image is damaged or truncated and cannot be decoded.`, {
      cause,
      details: { format: header.format, reason },
    });
  }
}
