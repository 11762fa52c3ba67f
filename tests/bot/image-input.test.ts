// The picture download step: a download that never finishes must not hold the request (and the
// engine slot it is queued for) forever, and cancelling still reads as a cancel.
import { describe, expect, it } from 'vitest';
import { fetchImage } from '../../src/bot/image-input.js';
import type { ImageSource } from '../../src/bot/types.js';
import { isVistyleError } from '../../src/errors.js';
import { PNG_BYTES } from './support/harness.js';

/** A source whose download never ends and that ignores its abort signal. */
const stalled: ImageSource = { fetch: () => new Promise<Uint8Array>(() => undefined) };

describe('fetchImage', () => {
  it('returns the bytes and their sniffed type', async () => {
    const image = await fetchImage({ fetch: async () => PNG_BYTES }, 1 << 20, new AbortController().signal);
    expect(image.mime).toBe('image/png');
    expect(image.bytes).toBe(PNG_BYTES);
  });

  it('gives up on a download that never finishes, as a NETWORK error, even if the source ignores its signal', async () => {
    const started = Date.now();
    const error = await fetchImage(stalled, 1 << 20, new AbortController().signal, 100).catch((e: unknown) => e);
    expect(isVistyleError(error, 'NETWORK')).toBe(true);
    expect((error as Error).message).toMatch(/took longer than/);
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
  });

  it('aborts the source at the deadline', async () => {
    let aborted = false;
    const source: ImageSource = {
      fetch: ({ signal }) =>
        new Promise<Uint8Array>((_, reject) => {
          signal?.addEventListener('abort', () => {
            aborted = true;
            reject(new Error('aborted'));
          });
        }),
    };
    const error = await fetchImage(source, 1 << 20, new AbortController().signal, 50).catch((e: unknown) => e);
    expect(isVistyleError(error, 'NETWORK')).toBe(true);
    expect(aborted).toBe(true);
  });

  it('reports a cancel during the download as CANCELLED', async () => {
    const cancel = new AbortController();
    const source: ImageSource = {
      fetch: ({ signal }) =>
        new Promise<Uint8Array>((_, reject) => signal?.addEventListener('abort', () => reject(new Error('aborted')))),
    };
    const pending = fetchImage(source, 1 << 20, cancel.signal, 10_000);
    cancel.abort();
    const error = await pending.catch((e: unknown) => e);
    expect(isVistyleError(error, 'CANCELLED')).toBe(true);
  });
});
