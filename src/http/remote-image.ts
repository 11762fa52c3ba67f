// Pictures an API caller gives by URL: `data:` URLs are decoded in place; `https:` URLs are
// downloaded with the same limits as platform downloads (VISTYLE_MAX_IMAGE_BYTES, 60 s, the bytes'
// own signature checked: src/bot/image-input.ts's fetchImage) behind the SSRF guard
// (address-guard.ts): only https, at most 3 redirects (each checked again), no loopback, private or
// link-local address unless the operator allows them (VISTYLE_ALLOW_PRIVATE_IMAGE_URLS).
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { DEFAULT_DOWNLOAD_TIMEOUT_MS, fetchImage, type ImageKind } from '../bot/image-input.js';
import type { ImageSource } from '../bot/types.js';
import { formatBytes } from '../bot/i18n.js';
import { VistyleError } from '../errors.js';
import { BlockedAddressError, blockedAddressReason, guardedLookup } from './address-guard.js';

export interface ImageUrlOptions {
  maxBytes: number;
  /** Let URLs reach loopback, private and link-local addresses. */
  allowPrivate: boolean;
  signal: AbortSignal;
  timeoutMs?: number;
  /** Extra trusted CA certificates (tests with a self-signed server). */
  ca?: string | Buffer;
}

export interface FetchedImage {
  bytes: Uint8Array;
  mime: ImageKind;
}

const MAX_REDIRECTS = 3;

/**
 * The picture behind an image_url. Errors are VistyleErrors: IMAGE_UNSUPPORTED (not a picture, or
 * a URL scheme other than data: and https:), IMAGE_TOO_LARGE, NETWORK (unreachable, refused by the
 * guard, an HTTP error status, too slow), CANCELLED.
 */
export async function loadImageUrl(url: string, options: ImageUrlOptions): Promise<FetchedImage> {
  if (/^data:/i.test(url)) return fetchImage(dataUrlSource(url, options.maxBytes), options.maxBytes, options.signal);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new VistyleError('IMAGE_UNSUPPORTED', 'image_url.url is neither a data: URL nor an https: URL');
  }
  if (parsed.protocol !== 'https:') {
    throw new VistyleError('IMAGE_UNSUPPORTED', `image URLs must be https: or data: (got ${parsed.protocol})`);
  }
  const source: ImageSource = { fetch: ({ signal, maxBytes }) => download(parsed, { ...options, signal, maxBytes }, 0) };
  return fetchImage(source, options.maxBytes, options.signal, options.timeoutMs ?? DEFAULT_DOWNLOAD_TIMEOUT_MS);
}

/** A data: URL as an ImageSource (its size is known before decoding). */
function dataUrlSource(url: string, maxBytes: number): ImageSource {
  const comma = url.indexOf(',');
  if (comma < 0) throw new VistyleError('IMAGE_UNSUPPORTED', 'the data: URL has no data');
  const header = url.slice(5, comma);
  const payload = url.slice(comma + 1);
  const base64 = /;base64$/i.test(header);
  const mime = header.replace(/;base64$/i, '').split(';')[0]!.trim();
  const sizeBytes = base64 ? Math.floor((payload.replace(/=+$/, '').length * 3) / 4) : payload.length;
  return {
    sizeBytes,
    ...(mime ? { mime } : {}),
    fetch: async () => {
      if (sizeBytes > maxBytes) {
        throw new VistyleError('IMAGE_TOO_LARGE', `the picture is ${sizeBytes} bytes (limit ${maxBytes})`, { details: { sizeBytes, limit: formatBytes(maxBytes) } });
      }
      if (base64) return new Uint8Array(Buffer.from(payload, 'base64'));
      try {
        return new Uint8Array(Buffer.from(decodeURIComponent(payload), 'latin1'));
      } catch {
        throw new VistyleError('IMAGE_UNSUPPORTED', 'the data: URL is not valid');
      }
    },
  };
}

function download(url: URL, options: ImageUrlOptions, redirects: number): Promise<Uint8Array> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) !== 0 && !options.allowPrivate) {
    const reason = blockedAddressReason(host);
    if (reason) return Promise.reject(refused(new BlockedAddressError(host, reason)));
  }
  return new Promise<Uint8Array>((resolve, reject) => {
    const request = httpsRequest(
      url,
      {
        method: 'GET',
        lookup: guardedLookup(options.allowPrivate) as never,
        signal: options.signal,
        headers: { accept: 'image/*', 'user-agent': 'vistyle' },
        ...(options.ca ? { ca: options.ca } : {}),
      },
      (response) => {
        const status = response.statusCode ?? 0;
        if (status >= 300 && status < 400 && response.headers.location) {
          response.resume();
          if (redirects >= MAX_REDIRECTS) return reject(new VistyleError('NETWORK', `the image URL redirected more than ${MAX_REDIRECTS} times`));
          let next: URL;
          try {
            next = new URL(response.headers.location, url);
          } catch {
            return reject(new VistyleError('NETWORK', 'the image URL redirected to an invalid URL'));
          }
          if (next.protocol !== 'https:') return reject(new VistyleError('NETWORK', 'the image URL redirected away from https'));
          return download(next, options, redirects + 1).then(resolve, reject);
        }
        if (status < 200 || status >= 300) {
          response.resume();
          return reject(new VistyleError('NETWORK', `downloading the picture failed: HTTP ${status}`));
        }
        const declared = Number(response.headers['content-length']);
        if (Number.isFinite(declared) && declared > options.maxBytes) {
          response.destroy();
          return reject(tooLarge(declared, options.maxBytes));
        }
        const chunks: Buffer[] = [];
        let total = 0;
        response.on('data', (chunk: Buffer) => {
          total += chunk.length;
          if (total > options.maxBytes) {
            response.destroy();
            reject(tooLarge(total, options.maxBytes));
            return;
          }
          chunks.push(chunk);
        });
        response.on('end', () => resolve(new Uint8Array(Buffer.concat(chunks))));
        response.on('error', (error) => reject(error));
      },
    );
    request.on('error', (error) => reject(error instanceof BlockedAddressError ? refused(error) : error));
    request.end();
  });
}

function refused(error: BlockedAddressError): VistyleError {
  return new VistyleError('NETWORK', `the image URL is not allowed: ${error.message} (set VISTYLE_ALLOW_PRIVATE_IMAGE_URLS=true to allow it)`, {
    details: { blocked: error.reason },
  });
}

function tooLarge(bytes: number, maxBytes: number): VistyleError {
  return new VistyleError('IMAGE_TOO_LARGE', `the picture is over ${maxBytes} bytes`, { details: { sizeBytes: bytes, limit: formatBytes(maxBytes) } });
}
