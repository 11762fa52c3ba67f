// The readiness checks `vistyle start` and `vistyle serve` register for the parts they own: the
// engine, the store and each platform adapter. Other parts (the queue and its workers) register
// their own checks into the same Readiness (src/health/readiness.ts).
import { accessSync, constants, statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Engine } from '../engine/types.js';
import type { CheckResult } from './readiness.js';

/**
 * What an engine may offer to say whether it answers now (the worker engine: its worker is up, not
 * restarting after a crash). Engines without it count as answering once loaded.
 */
export interface ReportsReadiness {
  readiness(): CheckResult;
}

function hasReadiness(value: unknown): value is ReportsReadiness {
  return typeof (value as Partial<ReportsReadiness> | null)?.readiness === 'function';
}

/** The engine's state, once it is loaded (before that, report `engine` not ready yourself). */
export function engineCheck(engine: Engine): () => CheckResult {
  return () => (hasReadiness(engine) ? engine.readiness() : { ready: true });
}

/** What the store reports about its writes (src/store/store.ts Store.health()). */
interface StoreHealthSource {
  health(): { writable: boolean; lastFailure?: string };
}

/**
 * The SQLite store can take writes: its last write went through (Store.health()), the database
 * file (or, before it exists, its folder) is writable and the disk has room.
 */
export function storeCheck(dbPath: string, store?: StoreHealthSource): () => CheckResult {
  return () => {
    const health = store?.health();
    if (health && !health.writable) {
      return { ready: false, detail: `the database refused a write${health.lastFailure ? ` (${health.lastFailure})` : ''}` };
    }
    try {
      accessSync(dbPath, constants.W_OK);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') return { ready: false, detail: `the database file is not writable (${(error as NodeJS.ErrnoException).code})` };
      try {
        accessSync(dirname(dbPath), constants.W_OK);
      } catch {
        return { ready: false, detail: 'the database folder is not writable' };
      }
    }
    try {
      const fs = statfsSync(dirname(dbPath));
      if (fs.bavail === 0) return { ready: false, detail: 'the disk holding the database is full' };
    } catch {
      // statfs is informative only
    }
    return { ready: true };
  };
}

/**
 * A platform adapter: not ready until its start() resolved; after that, its own `status()` when it
 * has one (the platform adapters' AdapterStatus: `{ state, connected, lastError }`, or a
 * CheckResult), else ready.
 */
export function adapterCheck(adapter: object, started: () => boolean): () => CheckResult {
  return () => {
    if (!started()) return { ready: false, detail: 'connecting' };
    const status = (adapter as { status?: () => unknown }).status;
    if (typeof status !== 'function') return { ready: true };
    const value = status.call(adapter) as { ready?: boolean; connected?: boolean; detail?: string; state?: string; lastError?: string | null } | undefined;
    const ready = value?.ready ?? value?.connected ?? false;
    if (ready) return { ready: true };
    const detail = value?.detail ?? [value?.state, value?.lastError].filter(Boolean).join(': ');
    return detail ? { ready: false, detail } : { ready: false };
  };
}
