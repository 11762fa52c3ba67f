// Stop criteria that look at the generated text or tokens: stop strings (held back while they
// might still be forming, so a stop string never reaches the stream) and a loop guard that ends
// an answer stuck repeating the same few tokens.

/**
 * Feeds streamed text through and releases only what can no longer be the start of a stop string.
 * When a stop string appears, everything before it is released and `stopped` turns true.
 */
export class StopStringFilter {
  private readonly stops: string[];
  private pending = '';
  private stoppedAt = false;

  constructor(stopStrings: readonly string[]) {
    this.stops = stopStrings.filter((s) => s.length > 0);
  }

  get stopped(): boolean {
    return this.stoppedAt;
  }

  /** Adds a delta; returns the text that is now safe to emit. */
  push(delta: string): string {
    if (this.stoppedAt) return '';
    this.pending += delta;
    if (this.stops.length === 0) return this.take(this.pending.length);
    let first = -1;
    for (const stop of this.stops) {
      const at = this.pending.indexOf(stop);
      if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    if (first >= 0) {
      this.stoppedAt = true;
      const out = this.pending.slice(0, first);
      this.pending = '';
      return out;
    }
    return this.take(this.pending.length - this.heldSuffixLength());
  }

  /** At the end of generation: whatever was held back (it never became a stop string). */
  flush(): string {
    if (this.stoppedAt) return '';
    return this.take(this.pending.length);
  }

  /** Length of the longest suffix of `pending` that is a proper prefix of some stop string. */
  private heldSuffixLength(): number {
    let held = 0;
    for (const stop of this.stops) {
      const longest = Math.min(stop.length - 1, this.pending.length);
      for (let k = longest; k > held; k--) {
        if (this.pending.endsWith(stop.slice(0, k))) {
          held = k;
          break;
        }
      }
    }
    return held;
  }

  private take(count: number): string {
    const out = this.pending.slice(0, count);
    this.pending = this.pending.slice(count);
    return out;
  }
}

export interface LoopGuardOptions {
  /** Longest repeating unit, in tokens. */
  maxPeriod: number;
  /** The repetition must cover at least this many tokens... */
  minSpan: number;
  /** ...and repeat the unit at least this many times. */
  minRepeats: number;
}

export const DEFAULT_LOOP_GUARD: LoopGuardOptions = { maxPeriod: 32, minSpan: 48, minRepeats: 4 };

/**
 * True when the tail of `tokens` is one unit of at most `maxPeriod` tokens repeated back to back
 * over at least max(minSpan, minRepeats * period) tokens. Cost: O(maxPeriod * span) per call.
 */
export function isStuckInLoop(tokens: readonly number[], options: LoopGuardOptions = DEFAULT_LOOP_GUARD): boolean {
  const n = tokens.length;
  for (let period = 1; period <= options.maxPeriod; period++) {
    const span = Math.max(options.minSpan, options.minRepeats * period);
    if (span > n) break;
    let periodic = true;
    for (let i = n - span; i < n - period; i++) {
      if (tokens[i] !== tokens[i + period]) {
        periodic = false;
        break;
      }
    }
    if (periodic) return true;
  }
  return false;
}
