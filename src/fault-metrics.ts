// Prometheus metrics for the faults the bot rides out instead of stopping: log lines it could not
// write (stderr gone or stuck, log file on a full disk) and store writes it refused (database on
// a full or read-only disk). The values live with their owners (log.ts logStats(),
// Store.health()); these metrics read them at scrape time, into whichever registry serves them.
import { Counter, Gauge, type Registry } from 'prom-client';
import { logStats } from './log.js';

export interface FaultMetricSources {
  /** The bot's store (Store.health()). */
  store?: { health(): { writable: boolean; refusedWrites: number } };
}

export function registerFaultMetrics(registry: Registry, sources: FaultMetricSources = {}): void {
  const registers = [registry];
  new Counter({
    name: 'vistyle_log_lines_dropped_total',
    help: 'Log lines that reached no destination (stderr gone or not read, log file failing)',
    registers,
    collect() {
      this.reset();
      this.inc(logStats().dropped);
    },
  });
  new Gauge({
    name: 'vistyle_log_output_ok',
    help: '1 while logs reach stderr, 0 once stderr failed for good (they go to VISTYLE_LOG_FILE or are dropped)',
    registers,
    collect() {
      this.set(logStats().state === 'primary' ? 1 : 0);
    },
  });
  const store = sources.store;
  if (store) {
    new Counter({
      name: 'vistyle_store_writes_refused_total',
      help: 'Settings changes and conversation saves refused because the database could not be written (disk full, read-only)',
      registers,
      collect() {
        this.reset();
        this.inc(store.health().refusedWrites);
      },
    });
    new Gauge({
      name: 'vistyle_store_writable',
      help: '1 while the database takes writes, 0 while the last write failed (disk full, read-only)',
      registers,
      collect() {
        this.set(store.health().writable ? 1 : 0);
      },
    });
  }
}
