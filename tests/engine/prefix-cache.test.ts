// The prefix cache's bookkeeping on its own (src/engine/prefix-cache.ts): matching by ids and
// pictures, the byte budget, pins, and entries a longer one makes redundant.
import { describe, expect, it } from 'vitest';
import type { KvSnapshot } from '../../src/engine/kv-cache.js';
import { PrefixCache, sharedLength, type ImageSpan } from '../../src/engine/prefix-cache.js';

const snap = (length: number, bytesPer = 10): KvSnapshot => ({ length, bytes: length * bytesPer });
const IMG = 9;
// ids: 1 2 3 [9 9 9 9] 4 5 ...
const ids = (tail: number[]): number[] => [1, 2, 3, IMG, IMG, IMG, IMG, ...tail];
const span = (key: string): ImageSpan[] => [{ start: 3, end: 7, key }];

describe('sharedLength', () => {
  it('compares ids one by one and pictures by what made them, never cutting a picture in half', () => {
    const entry = { ids: ids([4, 5, 6]), images: span('A') };
    expect(sharedLength(entry, ids([4, 5, 6, 7]), span('A'))).toBe(10);
    expect(sharedLength(entry, ids([4, 8]), span('A'))).toBe(8);
    expect(sharedLength(entry, ids([4, 5, 6]), span('B'))).toBe(3); // another picture: up to its run
    expect(sharedLength({ ids: ids([]).slice(0, 5), images: [{ start: 3, end: 7, key: 'A' }] }, ids([4]), span('A'))).toBe(3);
    expect(sharedLength(entry, [1, 2, 7], [])).toBe(2);
  });
});

describe('PrefixCache', () => {
  it('finds the longest prefix of the same adapter, pins it, and keeps within the budget', () => {
    const released: KvSnapshot[] = [];
    const cache = new PrefixCache(250, (s) => released.push(s));
    const a = snap(10);
    cache.add({ ids: ids([4, 5, 6]), images: span('A'), loraKey: '', snapshot: a, shared: false });
    expect(cache.lookup(ids([4, 5, 6, 7]), span('A'), 'lora-x', 10)).toBeNull(); // another adapter
    const hit = cache.lookup(ids([4, 5, 6, 7]), span('A'), '', 10)!;
    expect(hit.length).toBe(10);
    expect(cache.lookup(ids([4, 5, 6]), span('A'), '', 9)!.length).toBe(9); // at most maxLength
    // a pinned entry survives a flood; unpinned, the least recently used goes first
    const shared = snap(3);
    cache.add({ ids: [7, 7, 7], images: [], loraKey: '', snapshot: shared, shared: true });
    cache.add({ ids: [8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8], images: [], loraKey: '', snapshot: snap(13), shared: false });
    expect(released).toEqual([shared]); // 260 bytes > 250: the LRU unpinned one
    cache.unpin(hit.entry);
    cache.unpin(hit.entry); // the second lookup's pin
    expect(released).not.toContain(a);
    cache.add({ ids: [6, 6, 6, 6, 6], images: [], loraKey: '', snapshot: snap(5), shared: false });
    expect(released).toContain(a);
    expect(cache.stats().bytes).toBeLessThanOrEqual(250);
    // larger than the whole budget: refused, and released
    const huge = snap(30);
    expect(cache.add({ ids: [1], images: [], loraKey: '', snapshot: huge, shared: false })).toBe(false);
    expect(released).toContain(huge);
  });

  it('drops an entry a longer one of the same conversation covers, but keeps shared style prefixes', () => {
    const released: KvSnapshot[] = [];
    const cache = new PrefixCache(10_000, (s) => released.push(s));
    const style = snap(3);
    const turn1 = snap(9);
    cache.add({ ids: [1, 2, 3], images: [], loraKey: '', snapshot: style, shared: true });
    cache.add({ ids: ids([4, 5]), images: span('A'), loraKey: '', snapshot: turn1, shared: false });
    cache.add({ ids: ids([4, 5, 6, 7, 8]), images: span('A'), loraKey: '', snapshot: snap(12), shared: false });
    expect(released).toEqual([turn1]);
    expect(cache.covers([1, 2, 3], [], '', { sharedOnly: true })).toBe(true);
    expect(cache.stats().entries).toBe(2);
  });
});
