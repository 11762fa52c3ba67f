// Downloading one file so that an interrupted transfer costs nothing: bytes go to `<file>.incomplete`,
// a later attempt (in this run or the next one) asks for the rest with an HTTP Range request, and only
// a file whose size and checksum match what the hub listed is renamed into place.
import { createHash, type Hash } from 'node:crypto';
import { open, rename, stat, unlink } from 'node:fs/promises';
import { VistyleError } from '../../src/errors.js';
import { HttpClient, HttpStatusError, TransferError, headerFromHops, isRetryable, type OpenResponse } from './http.js';
import { backoffDelayMs, sleep, type RetryPolicy } from './retry.js';
import { hashFilePrefix, verifyFile, type ExpectedContent } from './verify.js';

export const INCOMPLETE_SUFFIX = '.incomplete';

/** Hard cap on attempts for one file, even when every attempt makes progress. */
const MAX_ATTEMPTS = 200;

export interface FileDownloadEvents {
  /** A transfer begins at byte `from` of a file of `total` bytes (undefined when unknown). */
  onTransfer?(from: number, total: number | undefined): void;
  onBytes?(bytes: number): void;
  /** Bytes counted so far were thrown away (the server ignored the Range, or a bad checksum). */
  onDiscard?(bytes: number): void;
  onRetry?(info: { reason: string; attempt: number; retries: number; delayMs: number }): void;
  onChecksumRetry?(why: string): void;
}

export interface FileDownloadJob {
  /** Path in the repository, for messages. */
  name: string;
  url: string;
  dest: string;
  expected: ExpectedContent;
}

export interface FileDownloadResult {
  size: number;
  /** Bytes received over the network in this run. */
  bytesReceived: number;
  /** Bytes of an earlier partial download that were kept. */
  resumedFrom: number;
  verifiedBy: 'sha256' | 'git-blob' | 'size' | 'none';
  sha256: string | undefined;
  /** X-Repo-Commit of the response, when the hub sent one. */
  commit: string | undefined;
}

/** Retries ran out (or the failure was not worth a retry) while transferring a file. */
export class FileDownloadError extends Error {
  readonly file: string;
  readonly attempts: number;

  constructor(file: string, attempts: number, cause: unknown) {
    super(`download of ${file} failed after ${attempts} attempt${attempts === 1 ? '' : 's'}`, { cause });
    this.name = 'FileDownloadError';
    this.file = file;
    this.attempts = attempts;
  }
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

async function removeIfPresent(path: string): Promise<void> {
  await unlink(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'ENOENT') throw error;
  });
}

/** `bytes 100-199/1000` -> { start: 100, total: 1000 }. */
export function parseContentRange(value: string | null): { start: number; total: number | undefined } | undefined {
  const match = value ? /^bytes\s+(\d+)-(\d+)\/(\d+|\*)$/i.exec(value.trim()) : null;
  if (!match) return undefined;
  return { start: Number(match[1]), total: match[3] === '*' ? undefined : Number(match[3]) };
}

interface RunningHash {
  hash: Hash;
  bytes: number;
}

export async function downloadFile(
  job: FileDownloadJob,
  client: HttpClient,
  policy: RetryPolicy,
  events: FileDownloadEvents = {},
  signal?: AbortSignal,
): Promise<FileDownloadResult> {
  const partial = job.dest + INCOMPLETE_SUFFIX;
  const expectedSize = job.expected.size;
  let running: RunningHash | undefined;
  let failures = 0;
  let attempts = 0;
  let checksumRetried = false;
  let bytesReceived = 0;
  let resumedFrom = -1;
  let commit: string | undefined;

  for (;;) {
    let partialSize = await sizeOf(partial);
    if (expectedSize !== undefined && partialSize !== undefined && partialSize > expectedSize) {
      // longer than the file can be: not a prefix of it
      await removeIfPresent(partial);
      partialSize = undefined;
    }
    const have = partialSize ?? 0;
    if (resumedFrom < 0) resumedFrom = have;
    const complete = expectedSize !== undefined && partialSize === expectedSize;

    if (!complete) {
      attempts++;
      let progressed = false;
      try {
        const transfer = await transferOnce(job, partial, have, running, client, events, signal);
        running = transfer.running;
        progressed = transfer.bytes > 0;
        bytesReceived += transfer.bytes;
        commit ??= transfer.commit;
      } catch (error) {
        if (error instanceof PartialProgress) {
          running = error.running;
          progressed = error.bytes > 0;
          bytesReceived += error.bytes;
          error = error.cause;
        }
        if (signal?.aborted || !isRetryable(error) || attempts >= MAX_ATTEMPTS) {
          throw error instanceof VistyleError ? error : new FileDownloadError(job.name, attempts, error);
        }
        // an attempt that moved the file forward does not count against the retries
        failures = progressed ? 1 : failures + 1;
        if (!progressed && failures > policy.retries) throw new FileDownloadError(job.name, attempts, error);
        const delayMs = progressed ? Math.min(policy.baseDelayMs, 1000) : backoffDelayMs(failures, policy);
        events.onRetry?.({ reason: reasonOf(error), attempt: failures, retries: policy.retries, delayMs });
        await sleep(delayMs, signal);
        continue;
      }
    }

    const size = (await sizeOf(partial)) ?? 0;
    const knownSha256 = running && running.bytes === size ? running.hash.copy().digest('hex') : undefined;
    const verdict = await verifyFile(partial, job.expected, knownSha256);
    if (verdict.ok) {
      await rename(partial, job.dest);
      return {
        size,
        bytesReceived,
        resumedFrom,
        verifiedBy: verdict.how,
        sha256: knownSha256 ?? job.expected.sha256,
        commit,
      };
    }
    await removeIfPresent(partial);
    running = undefined;
    events.onDiscard?.(size);
    if (!checksumRetried) {
      checksumRetried = true;
      events.onChecksumRetry?.(verdict.why);
      continue;
    }
    throw new VistyleError(
      'CHECKPOINT_INVALID',
      `${job.name} failed its checksum twice (${verdict.why}); the partial file was deleted. ` +
        'The hub or mirror served damaged data: try again later or another --source / endpoint.',
    );
  }
}

function reasonOf(error: unknown): string {
  if (error instanceof TransferError) return error.reason;
  if (error instanceof HttpStatusError) return `HTTP ${error.status}`;
  return error instanceof Error ? error.message : String(error);
}

/** A failed transfer that still wrote bytes: carries the hash state along with the error. */
class PartialProgress extends Error {
  readonly running: RunningHash | undefined;
  readonly bytes: number;
  override readonly cause: unknown;

  constructor(cause: unknown, running: RunningHash | undefined, bytes: number) {
    super('partial transfer');
    this.cause = cause;
    this.running = running;
    this.bytes = bytes;
  }
}

async function transferOnce(
  job: FileDownloadJob,
  partial: string,
  have: number,
  running: RunningHash | undefined,
  client: HttpClient,
  events: FileDownloadEvents,
  signal: AbortSignal | undefined,
): Promise<{ running: RunningHash; bytes: number; commit: string | undefined }> {
  let response: OpenResponse;
  try {
    response = await client.get(job.url, have > 0 ? { range: `bytes=${have}-` } : {}, signal);
  } catch (error) {
    if (error instanceof HttpStatusError && error.status === 416 && have > 0) {
      // the partial already holds the whole file (or more): start over, verification will tell
      await removeIfPresent(partial);
      events.onDiscard?.(have);
      throw new TransferError('range not satisfiable, restarting the file', job.url, false);
    }
    throw error;
  }

  let start = 0;
  let total: number | undefined;
  if (response.status === 206) {
    const range = parseContentRange(response.headers.get('content-range'));
    if (!range || range.start !== have) {
      await response.discard();
      await removeIfPresent(partial);
      events.onDiscard?.(have);
      throw new TransferError('server answered a different byte range, restarting the file', job.url, false);
    }
    start = range.start;
    total = range.total;
  } else {
    const length = response.headers.get('content-length');
    total = length !== null && /^\d+$/.test(length) ? Number(length) : undefined;
    if (have > 0) events.onDiscard?.(have); // the server ignored the Range: the file starts over
  }
  const expectedSize = job.expected.size;
  if (expectedSize !== undefined && total !== undefined && total !== expectedSize) {
    await response.discard();
    throw new VistyleError(
      'CHECKPOINT_INVALID',
      `${job.name}: the server sends ${total} bytes but the file listing says ${expectedSize}; the hub or mirror is inconsistent`,
    );
  }

  if (start === 0) {
    running = { hash: createHash('sha256'), bytes: 0 };
  } else if (!running || running.bytes !== start) {
    // resuming a partial from an earlier run: hash what is already on disk
    running = { hash: createHash('sha256'), bytes: 0 };
    await hashFilePrefix(partial, running.hash, start);
    running.bytes = start;
  }
  const handle = await open(partial, start === 0 ? 'w' : 'a');
  events.onTransfer?.(start, total ?? expectedSize);
  let written = 0;
  try {
    for await (const chunk of response.body) {
      await handle.write(chunk);
      running.hash.update(chunk);
      running.bytes += chunk.byteLength;
      written += chunk.byteLength;
      events.onBytes?.(chunk.byteLength);
    }
  } catch (error) {
    await handle.close();
    throw new PartialProgress(error, running, written);
  }
  await handle.close();
  const end = start + written;
  const wanted = total ?? expectedSize;
  if (wanted !== undefined && end < wanted) {
    throw new PartialProgress(new TransferError(`connection closed at byte ${end} of ${wanted}`, job.url, false), running, written);
  }
  const commit = headerFromHops(response, 'x-repo-commit');
  return { running, bytes: written, commit };
}
