// How a download tells the person what it is doing: a byte progress bar (cli-progress) when stderr is
// a terminal, plain lines otherwise (logs, CI, systemd), nothing at all for library callers.
import cliProgress from 'cli-progress';

export interface PlanInfo {
  source: string;
  endpoint: string;
  modelId: string;
  revision: string;
  commit: string | undefined;
  dir: string;
  /** Files to fetch now (not already present). */
  fetch: { path: string; size: number | undefined }[];
  /** Files already present and verified. */
  present: string[];
  /** Bytes of the files to fetch, and how many of them are already on disk from an earlier run. */
  totalBytes: number;
  resumableBytes: number;
}

export interface DownloadReporter {
  plan(info: PlanInfo): void;
  fileStart(path: string, size: number | undefined, from: number): void;
  bytes(count: number): void;
  /** Bytes counted earlier were thrown away and will be fetched again. */
  discard(count: number): void;
  fileDone(path: string, size: number, verifiedBy: string): void;
  fileSkipped(path: string, verifiedBy: string): void;
  retry(path: string, reason: string, attempt: number, retries: number, delayMs: number): void;
  note(text: string): void;
  /** Always called at the end, success or not. */
  close(): void;
}

export const silentReporter: DownloadReporter = {
  plan: () => undefined,
  fileStart: () => undefined,
  bytes: () => undefined,
  discard: () => undefined,
  fileDone: () => undefined,
  fileSkipped: () => undefined,
  retry: () => undefined,
  note: () => undefined,
  close: () => undefined,
};

/** 1234567 -> "1.23 MB" (decimal units, as the hubs show sizes). */
export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(value >= 100 ? 0 : value >= 10 ? 1 : 2)} ${units[unit]}`;
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
}

/** Transfer rate over a sliding window of recent samples. */
class RateMeter {
  private samples: { at: number; value: number }[] = [];

  constructor(private readonly windowMs = 5000) {}

  add(value: number, at = Date.now()): void {
    this.samples.push({ at, value });
    while (this.samples.length > 2 && at - (this.samples[0]?.at ?? at) > this.windowMs) this.samples.shift();
  }

  /** Bytes per second, 0 until there is a measurable span. */
  rate(): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.at - first.at < 200) return 0;
    return ((last.value - first.value) * 1000) / (last.at - first.at);
  }

  reset(): void {
    this.samples = [];
  }
}

function describePlan(info: PlanInfo): string {
  const commit = info.commit ? ` (commit ${info.commit.slice(0, 10)})` : '';
  const fetching = info.fetch.length === 0
    ? 'all files already present'
    : `${info.fetch.length} file${info.fetch.length === 1 ? '' : 's'} to fetch, ${formatBytes(info.totalBytes - info.resumableBytes)}` +
      (info.resumableBytes > 0 ? ` (resuming; ${formatBytes(info.resumableBytes)} already on disk)` : '');
  return `pulling ${info.modelId} from ${info.source} ${info.endpoint}, revision ${info.revision}${commit} into ${info.dir}: ${fetching}`;
}

/** Plain lines for logs: one per file event, and a progress line every `intervalMs` on long files. */
export function lineReporter(stream: NodeJS.WritableStream = process.stderr, intervalMs = 10_000): DownloadReporter {
  const write = (text: string): void => {
    stream.write(`${text}\n`);
  };
  let current: { path: string; size: number | undefined; done: number; lastLine: number } | undefined;
  const meter = new RateMeter(10_000);
  return {
    plan: (info) => write(describePlan(info)),
    fileStart(path, size, from) {
      current = { path, size, done: from, lastLine: Date.now() };
      meter.reset();
      meter.add(from);
      const sizeText = size === undefined ? '' : ` (${formatBytes(size)})`;
      write(from > 0 ? `resuming ${path} at ${formatBytes(from)}${sizeText}` : `downloading ${path}${sizeText}`);
    },
    bytes(count) {
      if (!current) return;
      current.done += count;
      meter.add(current.done);
      const now = Date.now();
      if (now - current.lastLine >= intervalMs) {
        current.lastLine = now;
        const rate = meter.rate();
        const { size, done } = current;
        const percent = size ? ` ${Math.floor((done / size) * 100)}%` : '';
        const of = size ? ` of ${formatBytes(size)}` : '';
        const eta = size && rate > 0 ? `, ETA ${formatDuration((size - done) / rate)}` : '';
        write(`  ${current.path}${percent} (${formatBytes(done)}${of}, ${formatBytes(rate)}/s${eta})`);
      }
    },
    discard(count) {
      if (current) current.done = Math.max(0, current.done - count);
    },
    fileDone: (path, size, verifiedBy) => write(`${path}: ${formatBytes(size)}, ${verifiedBy} verified`),
    fileSkipped: (path, verifiedBy) => write(`${path}: already present (${verifiedBy} verified)`),
    retry: (path, reason, attempt, retries, delayMs) =>
      write(`${path}: ${reason}; retrying in ${formatDuration(delayMs / 1000)} (retry ${attempt} of ${retries})`),
    note: (text) => write(text),
    close: () => undefined,
  };
}

/** A byte progress bar over the whole download: total, rate, ETA and the current file. */
export function barReporter(stream: NodeJS.WritableStream = process.stderr): DownloadReporter {
  const bars = new cliProgress.MultiBar(
    {
      stream,
      format: ' {bar} {percentage}% | {done} / {size} | {rate} | ETA {eta_formatted} | {file}',
      barCompleteChar: '\u2588',
      barIncompleteChar: '\u2591',
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      etaBuffer: 200,
      fps: 8,
    },
    cliProgress.Presets.shades_classic,
  );
  let bar: cliProgress.SingleBar | undefined;
  let value = 0;
  let total = 0;
  let file = '';
  const meter = new RateMeter();
  const payload = (): Record<string, string> => ({
    done: formatBytes(value),
    size: formatBytes(total),
    rate: `${formatBytes(meter.rate())}/s`,
    file,
  });
  const log = (text: string): void => {
    if (bar) bars.log(`${text}\n`);
    else stream.write(`${text}\n`);
  };
  return {
    plan(info) {
      log(describePlan(info));
      if (info.fetch.length === 0) return;
      total = info.totalBytes;
      value = info.resumableBytes;
      meter.add(value);
      bar = bars.create(Math.max(total, 1), value, payload());
    },
    fileStart(path) {
      file = path;
      bar?.update(value, payload());
    },
    bytes(count) {
      value += count;
      meter.add(value);
      bar?.update(value, payload());
    },
    discard(count) {
      // fetched again later: grow the total rather than move the bar backwards
      total += count;
      bar?.setTotal(Math.max(total, 1));
    },
    fileDone(path, size, verifiedBy) {
      log(`${path}: ${formatBytes(size)}, ${verifiedBy} verified`);
    },
    fileSkipped: (path, verifiedBy) => log(`${path}: already present (${verifiedBy} verified)`),
    retry: (path, reason, attempt, retries, delayMs) =>
      log(`${path}: ${reason}; retrying in ${formatDuration(delayMs / 1000)} (retry ${attempt} of ${retries})`),
    note: (text) => log(text),
    close() {
      if (bar) {
        bar.update(value, payload());
        bars.stop();
        bar = undefined;
      }
    },
  };
}

/** The bar when `stream` is a terminal, lines otherwise. */
export function reporterFor(stream: NodeJS.WriteStream = process.stderr): DownloadReporter {
  return stream.isTTY ? barReporter(stream) : lineReporter(stream);
}
