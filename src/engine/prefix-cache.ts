// Prefix (KV) reuse across requests: snapshots of the cache for prompts already computed, kept
// in an LRU bounded in bytes, and found again by comparing token ids one by one.
//
// An entry holds the ids whose keys/values its snapshot holds, the pictures among them (where
// each run of image rows starts, and what made its features: the picture's SHA-256 and the
// vision adapter), and the decoder adapter it was computed with (an adapter changes every
// position's keys and values). A new prompt reuses the longest prefix it shares with an entry of
// the same adapter: the same ids at every position, and the same picture in every image run
// inside that prefix (an image run is all-or-nothing). A hit never rests on a hash of the ids.
//
// What is kept: each finished answer's whole sequence (prompt + answer: the next question in the
// conversation starts with it), which replaces the conversation's earlier, shorter entries; and a
// prompt's text before its first picture (the style's system prompt and examples: every request
// of that style starts with it), kept as an entry of its own so that it outlives conversations.
import type { KvSnapshot } from './kv-cache.js';

export interface ImageSpan {
  start: number;
  end: number;
  /** What the run's features came from (picture hash and vision adapter). */
  key: string;
}

export interface PrefixEntry {
  readonly ids: readonly number[];
  readonly images: readonly ImageSpan[];
  readonly loraKey: string;
  readonly snapshot: KvSnapshot;
  /** A style prefix (text before the first picture): never dropped for a longer entry. */
  readonly shared: boolean;
  lastUsed: number;
  pins: number;
}

export interface PrefixMatch {
  entry: PrefixEntry;
  /** Positions of the entry's snapshot that the prompt shares. */
  length: number;
}

export interface PrefixCacheStats {
  entries: number;
  bytes: number;
  budget: number;
  hits: number;
  misses: number;
}

/** Positions `ids`/`images` share with an entry (0 when none). */
export function sharedLength(entry: Pick<PrefixEntry, 'ids' | 'images'>, ids: readonly number[], images: readonly ImageSpan[]): number {
  const limit = Math.min(entry.ids.length, ids.length);
  let n = 0;
  while (n < limit && entry.ids[n] === ids[n]) n++;
  for (const span of images) {
    if (span.start >= n) break;
    const theirs = entry.images.find((s) => s.start === span.start);
    if (!theirs || theirs.key !== span.key || theirs.end !== span.end || span.end > n) n = span.start;
  }
  // the entry's own pictures must not end inside the shared part with a different picture either
  for (const span of entry.images) {
    if (span.start < n && !images.some((s) => s.start === span.start && s.key === span.key && s.end === span.end)) n = Math.min(n, span.start);
  }
  return n;
}

export class PrefixCache {
  private readonly entries: PrefixEntry[] = [];
  private bytes = 0;
  private clock = 0;
  private hits = 0;
  private misses = 0;

  constructor(
    /** Bytes the snapshots may hold together. 0 disables prefix reuse. */
    readonly budget: number,
    private readonly release: (snapshot: KvSnapshot) => void,
  ) {}

  get enabled(): boolean {
    return this.budget > 0;
  }

  stats(): PrefixCacheStats {
    return { entries: this.entries.length, bytes: this.bytes, budget: this.budget, hits: this.hits, misses: this.misses };
  }

  /**
   * The entry sharing the longest prefix with a prompt (at most `maxLength` positions), pinned
   * against eviction until unpin(); null when none shares at least one position.
   */
  lookup(ids: readonly number[], images: readonly ImageSpan[], loraKey: string, maxLength: number): PrefixMatch | null {
    let best: PrefixMatch | null = null;
    for (const entry of this.entries) {
      if (entry.loraKey !== loraKey) continue;
      const length = Math.min(sharedLength(entry, ids, images), maxLength, entry.snapshot.length);
      // the longest; of equally long ones the most recently used (so a short match shared by
      // many entries keeps the LRU order of the rest)
      if (length > 0 && (!best || length > best.length || (length === best.length && entry.lastUsed > best.entry.lastUsed))) best = { entry, length };
    }
    if (!best) {
      this.misses++;
      return null;
    }
    // a cut inside a picture's run would restore half its rows: cut before the run instead
    for (const span of images) if (span.start < best.length && span.end > best.length) best.length = span.start;
    if (best.length <= 0) {
      this.misses++;
      return null;
    }
    this.hits++;
    best.entry.pins++;
    best.entry.lastUsed = ++this.clock;
    return best;
  }

  unpin(entry: PrefixEntry): void {
    entry.pins = Math.max(0, entry.pins - 1);
    this.evict();
  }

  /** Whether some entry of this adapter (a shared one, with sharedOnly) already holds all of `ids`. */
  covers(ids: readonly number[], images: readonly ImageSpan[], loraKey: string, options: { sharedOnly?: boolean } = {}): boolean {
    return this.entries.some((e) => e.loraKey === loraKey && (!options.sharedOnly || e.shared) && sharedLength(e, ids, images) >= ids.length);
  }

  /**
   * Keeps a snapshot (the cache takes ownership: it is released when evicted). Entries it makes
   * redundant (a shorter, unshared sequence it starts with) are dropped. Returns false, releasing
   * the snapshot, when it is larger than the whole budget.
   */
  add(entry: Omit<PrefixEntry, 'lastUsed' | 'pins'>): boolean {
    const bytes = entry.snapshot.bytes;
    if (!this.enabled || bytes > this.budget) {
      this.release(entry.snapshot);
      return false;
    }
    for (const old of [...this.entries]) {
      if (old.shared || old.pins > 0 || old.loraKey !== entry.loraKey) continue;
      if (sharedLength(old, entry.ids, entry.images) >= old.snapshot.length) this.remove(old);
    }
    this.entries.push({ ...entry, lastUsed: ++this.clock, pins: 0 });
    this.bytes += bytes;
    this.evict();
    return true;
  }

  private remove(entry: PrefixEntry): void {
    const index = this.entries.indexOf(entry);
    if (index < 0) return;
    this.entries.splice(index, 1);
    this.bytes -= entry.snapshot.bytes;
    this.release(entry.snapshot);
  }

  /** Least recently used first, until the entries fit the budget (pinned ones stay). */
  private evict(): void {
    while (this.bytes > this.budget) {
      const victim = this.entries.filter((e) => e.pins === 0).sort((a, b) => a.lastUsed - b.lastUsed)[0];
      if (!victim) return;
      this.remove(victim);
    }
  }

  clear(): void {
    for (const entry of [...this.entries]) this.remove(entry);
  }
}
