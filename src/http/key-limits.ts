// Per-key limits of the API: requests waiting or running, and requests per minute (a sliding
// window), checked before a request joins the one queue. They replace the bots' per-user limits for
// API callers (a key without limits of its own gets VISTYLE_USER_IN_FLIGHT and
// VISTYLE_USER_PER_MINUTE); the queue cap applies to everyone alike. Counted in this process: with
// several front ends each counts its own callers.
import type { ApiKey } from './keys.js';

const MINUTE_MS = 60_000;

export type Admission =
  | { ok: true; release: () => void }
  | { ok: false; reason: 'in-flight' | 'per-minute'; retryAfterMs: number; limit: number };

export class KeyLimiter {
  private readonly inFlight = new Map<string, number>();
  private readonly recent = new Map<string, number[]>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Takes a place for one request of `key`, or says which limit refuses it. */
  admit(key: ApiKey): Admission {
    const now = this.now();
    const running = this.inFlight.get(key.name) ?? 0;
    if (running >= key.inFlight) return { ok: false, reason: 'in-flight', retryAfterMs: 1_000, limit: key.inFlight };
    if (key.perMinute > 0) {
      const recent = (this.recent.get(key.name) ?? []).filter((at) => at > now - MINUTE_MS);
      this.recent.set(key.name, recent);
      if (recent.length >= key.perMinute) {
        return { ok: false, reason: 'per-minute', retryAfterMs: recent[0]! + MINUTE_MS - now, limit: key.perMinute };
      }
      recent.push(now);
    }
    this.inFlight.set(key.name, running + 1);
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        const left = (this.inFlight.get(key.name) ?? 1) - 1;
        if (left > 0) this.inFlight.set(key.name, left);
        else this.inFlight.delete(key.name);
      },
    };
  }

  /** Requests of this key waiting or running now. */
  running(name: string): number {
    return this.inFlight.get(name) ?? 0;
  }
}
