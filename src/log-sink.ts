// Where log lines go, and what happens when that place stops taking them. The bot must keep
// serving whatever happens to its logs, so a log write never throws, never blocks the event loop
// for long and never spins:
// - stderr (or any stream) that fails for good (EPIPE: the reader is gone; EBADF, EIO: the
//   terminal hung up; a destroyed stream) is given up on at the first error, once; from then on
//   lines go to VISTYLE_LOG_FILE when it is set, else they are dropped and counted.
// - stderr that fails for a while (ENOSPC, EAGAIN: a file on a full disk, a non-blocking
//   descriptor) or is not being read (a stuck reader: more than `maxBufferedBytes` queued) drops
//   lines, counted, and is tried again after a pause.
// - the log file on a full disk drops lines, counted, and is tried again every few seconds; the
//   first line written afterwards says how many were lost.
//
// Why it matters: Node's stdout/stderr never stay destroyed (their _destroy un-destroys them so
// the process can keep writing), so every write to a dead pipe fails again with EPIPE and emits a
// fresh 'error' event. With nobody listening, each was an uncaught exception, whose handler logged
// it to stderr, which failed again on the next tick: a loop at 100% CPU (issue 14).
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export type LogFormat = 'json' | 'pretty';

export interface LogSinkStats {
  /** Lines handed to the sink. */
  lines: number;
  /** Lines that reached no destination (stderr gone or stuck, log file failing). */
  dropped: number;
  /** Where lines go now. */
  state: 'primary' | 'file' | 'dropping';
  /** Why the primary destination was given up (an error code), if it was. */
  primaryFailure?: string;
}

export interface LogSinkOptions {
  /** The primary destination (process.stderr by default in log.ts). */
  target: NodeJS.WritableStream;
  /** Format of lines written to the target. The file always gets JSON unless `fileFormat` says. */
  format: LogFormat;
  /** Turns a JSON line into a pretty one (log-pretty.ts). */
  pretty?: (line: string) => string;
  /** Fallback file (VISTYLE_LOG_FILE) once the target has failed for good. */
  file?: string | null;
  fileFormat?: LogFormat;
  /** Queued bytes beyond which the target counts as stuck. Default 1 MiB. */
  maxBufferedBytes?: number;
  /** Pause before a transiently failing destination is tried again. Default 5 s. */
  retryMs?: number;
  now?: () => number;
}

/** Errors after which a destination does not come back (the reader or terminal is gone). */
const PERMANENT = new Set(['EPIPE', 'EBADF', 'EIO', 'ECONNRESET', 'ENOTCONN', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_WRITE_AFTER_END', 'EINVAL']);

function errorCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : 'UNKNOWN';
}

/** A log line in pino's JSON shape, for the sink's own notes. */
export function noteLine(level: 30 | 40 | 50, msg: string, fields: Record<string, unknown> = {}, now = Date.now()): string {
  return `${JSON.stringify({ level, time: now, app: 'vistyle', module: 'log', ...fields, msg })}\n`;
}

/** Appends lines to a file with plain synchronous writes (page cache: microseconds; never lost at exit). */
export class FileLog {
  private fd: number | undefined;
  private failingSince: number | undefined;
  private retryAt = 0;
  private droppedWhileFailing = 0;
  private lastFailure = '';
  /** The last write stopped part-way: the next one starts on a fresh line. */
  private torn = false;

  constructor(
    readonly path: string,
    private readonly retryMs: number,
    private readonly now: () => number,
  ) {}

  /** Writes one line; false (and the line counted as lost) while the file cannot be written. */
  write(line: string): boolean {
    const now = this.now();
    if (this.failingSince !== undefined && now < this.retryAt) {
      this.droppedWhileFailing++;
      return false;
    }
    try {
      if (this.failingSince !== undefined) {
        const lost = this.droppedWhileFailing + 1;
        this.append(
          (this.torn ? '\n' : '') +
            noteLine(40, `${lost - 1} log lines were lost while ${this.path} could not be written (${this.lastFailure})`, {
              lostLines: lost - 1,
              since: new Date(this.failingSince).toISOString(),
            }, now),
        );
        this.failingSince = undefined;
        this.droppedWhileFailing = 0;
        this.torn = false;
      }
      this.append(line);
      return true;
    } catch (error) {
      this.lastFailure = errorCode(error);
      this.failingSince ??= now;
      this.retryAt = now + this.retryMs;
      // a descriptor that failed is reopened on the next try (the file may have been removed)
      this.closeFd();
      return false;
    }
  }

  private append(text: string): void {
    if (this.fd === undefined) {
      mkdirSync(dirname(this.path), { recursive: true });
      this.fd = openSync(this.path, 'a');
    }
    const bytes = Buffer.from(text);
    let offset = 0;
    while (offset < bytes.length) {
      try {
        offset += writeSync(this.fd, bytes, offset);
      } catch (error) {
        if (offset > 0) this.torn = true;
        throw error;
      }
    }
  }

  private closeFd(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      // already unusable
    }
    this.fd = undefined;
  }

  close(): void {
    this.closeFd();
  }
}

/** The destination pino writes to (it only needs `write`). See the file comment. */
export class LogSink {
  private readonly target: NodeJS.WritableStream & { writableLength?: number };
  private file: FileLog | undefined;
  private readonly maxBuffered: number;
  private readonly retryMs: number;
  private readonly now: () => number;
  private lines = 0;
  private dropped = 0;
  /** The target failed for good: never written again. */
  private primaryFailure: string | undefined;
  /** The target failed for a while, or is stuck: dropping until then. */
  private pausedUntil = 0;
  private droppedWhilePaused = 0;
  private pauseReason = '';
  private readonly onTargetError = (error: unknown) => this.targetFailed(error);
  /** Write callbacks see failures that emit no 'error' event too. */
  private readonly onWritten = (error?: Error | null) => {
    if (error) this.targetFailed(error);
  };

  constructor(private options: LogSinkOptions) {
    this.target = options.target;
    this.maxBuffered = options.maxBufferedBytes ?? 1024 * 1024;
    this.retryMs = options.retryMs ?? 5_000;
    this.now = options.now ?? Date.now;
    this.file = options.file ? new FileLog(options.file, this.retryMs, this.now) : undefined;
    // A permanent listener: errors of writes already queued, and of other writers (console.*),
    // are noted here instead of becoming uncaught exceptions.
    this.target.on('error', this.onTargetError);
  }

  write(line: string): boolean {
    this.lines++;
    if (this.primaryFailure === undefined && this.writePrimary(line)) return true;
    if (this.primaryFailure !== undefined && this.file) {
      if (this.file.write(this.forFile(line))) return true;
    }
    this.dropped++;
    return true; // pino ignores the value; never ask it to wait
  }

  /** New format or fallback file (the same target). */
  configure(options: Pick<LogSinkOptions, 'format' | 'pretty' | 'file' | 'fileFormat'>): void {
    this.options = { ...this.options, ...options, fileFormat: options.fileFormat };
    if ((options.file ?? undefined) !== this.file?.path) {
      this.file?.close();
      this.file = options.file ? new FileLog(options.file, this.retryMs, this.now) : undefined;
    }
  }

  stats(): LogSinkStats {
    const state = this.primaryFailure === undefined ? 'primary' : this.file ? 'file' : 'dropping';
    return { lines: this.lines, dropped: this.dropped, state, ...(this.primaryFailure ? { primaryFailure: this.primaryFailure } : {}) };
  }

  /** Stops listening to the target (for sinks that are replaced, e.g. in tests). */
  close(): void {
    this.target.off('error', this.onTargetError);
    this.file?.close();
  }

  private writePrimary(line: string): boolean {
    const now = this.now();
    if (now < this.pausedUntil) {
      this.droppedWhilePaused++;
      return false;
    }
    if ((this.target.writableLength ?? 0) > this.maxBuffered) {
      // Nobody is reading (a stopped log shipper): keep memory bounded, look again later.
      this.pause('not being read', now);
      this.droppedWhilePaused++;
      return false;
    }
    const stream = this.target as { destroyed?: boolean; writableEnded?: boolean };
    if (stream.destroyed === true || stream.writableEnded === true) {
      // a destroyed stream (not stdio, which un-destroys itself) fails writes without an event
      this.targetFailed(Object.assign(new Error('the log stream is closed'), { code: 'ERR_STREAM_DESTROYED' }));
      return false;
    }
    try {
      if (this.droppedWhilePaused > 0) {
        const note = noteLine(40, `${this.droppedWhilePaused} log lines were dropped while the log output was ${this.pauseReason}`, {
          droppedLines: this.droppedWhilePaused,
        }, now);
        this.droppedWhilePaused = 0;
        this.target.write(this.forTarget(note), this.onWritten);
      }
      this.target.write(this.forTarget(line), (error?: Error | null) => this.written(line, error));
      return this.primaryFailure === undefined;
    } catch (error) {
      // a synchronous destination (a file as stderr) throws instead of emitting
      this.targetFailed(error);
      return false;
    }
  }

  /**
   * A line's write came back. One the target failed to take (written while a pipe's reader was
   * already gone: the error arrives after the write) goes to the fallback file once the target is
   * given up for good, else it counts as dropped; a transient failure drops it.
   */
  private written(line: string, error?: Error | null): void {
    if (!error) return;
    this.targetFailed(error);
    if (this.primaryFailure !== undefined && this.file?.write(this.forFile(line))) return;
    this.dropped++;
  }

  private targetFailed(error: unknown): void {
    if (this.primaryFailure !== undefined) return;
    const code = errorCode(error);
    if (!PERMANENT.has(code) && code !== 'UNKNOWN') {
      this.pause(code, this.now());
      return;
    }
    this.primaryFailure = code;
    const where = this.file ? `logging to ${this.file.path} from now on` : 'log lines are dropped (and counted) from now on; set VISTYLE_LOG_FILE to keep them';
    this.file?.write(this.forFile(noteLine(40, `the log output failed (${code}); ${where}`, { failure: code }, this.now())));
  }

  private pause(reason: string, now: number): void {
    this.pauseReason = reason;
    this.pausedUntil = now + this.retryMs;
  }

  private forTarget(line: string): string {
    return this.options.format === 'pretty' && this.options.pretty ? this.options.pretty(line) : line;
  }

  private forFile(line: string): string {
    return this.options.fileFormat === 'pretty' && this.options.pretty ? this.options.pretty(line) : line;
  }
}
