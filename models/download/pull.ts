// Fetching a checkpoint from a hub into a folder: list the revision, keep only the files the model
// needs, skip those already present and verified, download the rest with resume and checksums, and
// leave a record of what was fetched (`.vistyle-download.json`) beside them.
import { mkdir, open, readFile, rm, stat, statfs, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { VistyleError } from '../../src/errors.js';
import { registerSecret } from '../../src/log.js';
import { DEFAULT_MODEL_ID, pulledCheckpointDir } from '../../src/paths.js';
import { VERSION } from '../../src/version.js';
import { downloadFile, FileDownloadError, INCOMPLETE_SUFFIX } from './file-download.js';
import { HttpClient, HttpStatusError, TransferError, safeUrl } from './http.js';
import { huggingFaceToken, resolveHub, type Hub, type HubSource, type RemoteFile } from './hubs.js';
import { formatBytes, silentReporter, type DownloadReporter } from './progress.js';
import { DEFAULT_RETRY_POLICY, withRetries, type RetryPolicy } from './retry.js';
import { CHECKPOINT_FILES, selectCheckpointFiles, shardsOfIndex } from './select.js';
import { verifyFile } from './verify.js';

export const DOWNLOAD_RECORD_FILE = '.vistyle-download.json';
const LOCK_FILE = '.vistyle-pull.lock';
/** Which version of each file the `.incomplete` partials belong to, while a pull is unfinished. */
const PARTIALS_FILE = '.vistyle-partials.json';
/** Retries of the first request when the hub cannot be reached at all. */
const OFFLINE_RETRIES = 2;

export interface DownloadCheckpointOptions {
  source?: HubSource;
  modelId?: string;
  /** Branch, tag or commit; default `main` (Hugging Face) or `master` (ModelScope). */
  revision?: string;
  /** Destination folder; default `<VISTYLE_HOME>/models/<owner>--<name>/checkpoint`. */
  dir?: string;
  /** Environment for endpoints and the token (default process.env). */
  env?: Record<string, string | undefined>;
  reporter?: DownloadReporter;
  retry?: Partial<RetryPolicy>;
  /** Wait this long for a response's headers (default 60 s). */
  responseTimeoutMs?: number;
  /** Give up on a transfer that sends nothing for this long (default 60 s); it is then resumed. */
  stallTimeoutMs?: number;
  signal?: AbortSignal;
}

export interface DownloadedFile {
  path: string;
  size: number;
  sha256?: string;
  gitBlobSha1?: string;
  /** fetched: downloaded in this run; present: already there and verified. */
  status: 'fetched' | 'present';
  verifiedBy: string;
}

export interface DownloadCheckpointResult {
  dir: string;
  source: HubSource;
  endpoint: string;
  modelId: string;
  revision: string;
  commit: string | undefined;
  files: DownloadedFile[];
  /** Bytes received over the network in this run. */
  bytesReceived: number;
}

/** The record written beside the files. */
export interface DownloadRecord {
  format: 'vistyle-download';
  version: 1;
  modelId: string;
  source: HubSource;
  endpoint: string;
  revision: string;
  commit: string | null;
  completedAt: string;
  files: { path: string; size: number; sha256?: string; gitBlobSha1?: string }[];
}

function displayEndpoint(hub: Hub): string {
  return safeUrl(hub.endpoint).replace(/\/$/, '');
}

function hubName(hub: Hub): string {
  return hub.source === 'modelscope' ? 'ModelScope' : 'Hugging Face';
}

/** One-line errors for a failed file listing. */
function listingError(error: unknown, hub: Hub, modelId: string, revision: string): unknown {
  const endpoint = displayEndpoint(hub);
  const mirrorHint = `check your connection or set ${hub.endpointEnv} to a mirror`;
  if (error instanceof TransferError) {
    return error.beforeResponse
      ? new VistyleError('NETWORK', `cannot reach ${endpoint} (${error.reason}): ${mirrorHint}`, { cause: error })
      : new VistyleError('NETWORK', `lost the connection to ${endpoint} while listing ${modelId} (${error.reason}): ${mirrorHint}`, { cause: error });
  }
  if (error instanceof HttpStatusError) {
    const hubSays = error.hubErrorMessage ? `: ${error.hubErrorMessage}` : '';
    if (error.status === 401 || error.status === 403) {
      const fix = hub.source === 'huggingface' ? 'set HF_TOKEN to a token that can read it' : 'check that the model is public';
      return new VistyleError('NETWORK', `${hubName(hub)} refused access to ${modelId} (HTTP ${error.status}${hubSays}): ${fix}`, { cause: error });
    }
    if (error.status === 404) {
      const what = error.hubErrorCode === 'RevisionNotFound' ? `revision ${revision} of ${modelId}` : `${modelId} at revision ${revision}`;
      return new VistyleError('CONFIG_INVALID', `${what} not found on ${hubName(hub)} (${endpoint})${hubSays}`, { cause: error });
    }
    return new VistyleError('NETWORK', `${endpoint} answered HTTP ${error.status} to the file listing${hubSays}: try again later, or ${mirrorHint}`, { cause: error });
  }
  return error;
}

/** One-line errors for a file that could not be downloaded. */
function fileError(error: unknown, hub: Hub, file: string, partialBytes: number): unknown {
  if (!(error instanceof FileDownloadError)) return error;
  const cause = error.cause;
  const kept = partialBytes > 0 ? ` (${formatBytes(partialBytes)} kept in ${file}${INCOMPLETE_SUFFIX})` : '';
  const again = `run the same command again to resume${kept}`;
  if (cause instanceof TransferError) {
    const where = cause.beforeResponse ? `cannot reach ${new URL(cause.url).origin} (${cause.reason})` : cause.reason;
    return new VistyleError('NETWORK', `download of ${file} failed after ${error.attempts} attempts: ${where}; ${again}`, { cause });
  }
  if (cause instanceof HttpStatusError) {
    if (cause.status === 401 || cause.status === 403) {
      const fix = hub.source === 'huggingface' ? 'set HF_TOKEN to a token that can read it' : 'check that the model is public';
      return new VistyleError('NETWORK', `${hubName(hub)} refused ${file} (HTTP ${cause.status}): ${fix}`, { cause });
    }
    return new VistyleError('NETWORK', `download of ${file} failed: HTTP ${cause.status} from ${safeUrl(cause.url)}; ${again}`, { cause });
  }
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new VistyleError('NETWORK', `download of ${file} failed: ${reason}`, { cause });
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch {
    return undefined;
  }
}

/** Only one pull at a time may write into a folder. */
async function acquireLock(dir: string): Promise<() => Promise<void>> {
  const path = join(dir, LOCK_FILE);
  for (let tries = 0; tries < 2; tries++) {
    try {
      const handle = await open(path, 'wx');
      await handle.writeFile(String(process.pid));
      await handle.close();
      return async () => {
        await unlink(path).catch(() => undefined);
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && processAlive(pid)) {
        throw new VistyleError('CONFIG_INVALID', `another vistyle model pull (pid ${pid}) is downloading into ${dir}; wait for it or stop it`);
      }
      await unlink(path).catch(() => undefined); // left by a pull that died
    }
  }
  throw new VistyleError('CONFIG_INVALID', `cannot lock ${dir} for downloading (${LOCK_FILE})`);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function readRecord(dir: string): Promise<DownloadRecord | undefined> {
  try {
    const record = JSON.parse(await readFile(join(dir, DOWNLOAD_RECORD_FILE), 'utf8')) as DownloadRecord;
    return record.format === 'vistyle-download' && Array.isArray(record.files) ? record : undefined;
  } catch {
    return undefined;
  }
}

async function checkFreeSpace(dir: string, needed: number): Promise<void> {
  if (needed <= 0) return;
  let free: number;
  try {
    const fs = await statfs(dir);
    free = Number(fs.bavail) * Number(fs.bsize);
  } catch {
    return; // not knowable here: let the writes tell
  }
  // a little headroom for the filesystem itself
  if (free < needed + 16 * 1024 * 1024) {
    throw new VistyleError(
      'CONFIG_INVALID',
      `not enough disk space in ${dir}: the download needs ${formatBytes(needed)}, ${formatBytes(free)} is free (choose another --dir or VISTYLE_HOME)`,
    );
  }
}

/**
 * Downloads the checkpoint files of `modelId` at `revision` from a hub into a folder. Returns once
 * every needed file is present and verified; throws a one-line VistyleError otherwise.
 */
export async function downloadCheckpoint(options: DownloadCheckpointOptions = {}): Promise<DownloadCheckpointResult> {
  const env = options.env ?? process.env;
  const source = options.source ?? 'huggingface';
  const modelId = options.modelId ?? DEFAULT_MODEL_ID;
  const hub = resolveHub(source, env);
  const revision = options.revision?.trim() || hub.defaultRevision;
  const dir = resolve(options.dir ?? pulledCheckpointDir(modelId));
  const reporter = options.reporter ?? silentReporter;
  const policy: RetryPolicy = { ...DEFAULT_RETRY_POLICY, ...options.retry };
  const signal = options.signal;

  const token = hub.acceptsToken ? huggingFaceToken(env) : undefined;
  registerSecret(token);
  const client = new HttpClient({
    userAgent: `vistyle/${VERSION}; node/${process.versions.node}`,
    token,
    tokenOrigin: new URL(hub.endpoint).origin,
    responseTimeoutMs: options.responseTimeoutMs ?? 60_000,
    stallTimeoutMs: options.stallTimeoutMs ?? 60_000,
  });

  try {
    const listing = await withRetries(
      async () => hub.parseListing(await client.getJson(hub.listingUrl(modelId, revision), signal), modelId, revision),
      policy,
      (notice) => {
        // stay quiet while the hub is simply unreachable: offline ends in exactly one line
        if (notice.error instanceof TransferError && notice.error.beforeResponse) return;
        const reason = notice.error instanceof TransferError ? notice.error.reason : notice.error instanceof HttpStatusError ? `HTTP ${notice.error.status}` : String(notice.error);
        reporter.retry('file listing', reason, notice.attempt, notice.retries, notice.delayMs);
      },
      signal,
      // no route to the hub at all (offline, DNS): say so after a short while rather than minutes
      (error, failures) => !(error instanceof TransferError && error.beforeResponse) || failures < OFFLINE_RETRIES,
    ).catch((error: unknown) => {
      throw listingError(error, hub, modelId, revision);
    });

    const selected = selectCheckpointFiles(listing.files, `${modelId} at revision ${revision} on ${hubName(hub)}`);
    // pin every file to the listed commit so that a push during the download cannot mix revisions
    const fileRevision = listing.commit ?? revision;

    await mkdir(dir, { recursive: true });
    const release = await acquireLock(dir);
    try {
      return await fetchFiles();
    } finally {
      await release();
    }

    async function fetchFiles(): Promise<DownloadCheckpointResult> {
      const results = new Map<string, DownloadedFile>();
      const toFetch: RemoteFile[] = [];
      for (const file of selected) {
        const dest = join(dir, file.path);
        if ((await fileSize(dest)) !== undefined && (file.size !== undefined || file.sha256 || file.gitBlobSha1)) {
          const verdict = await verifyFile(dest, file);
          if (verdict.ok) {
            results.set(file.path, { ...recordOf(file, (await fileSize(dest)) ?? 0), status: 'present', verifiedBy: verdict.how });
            continue;
          }
        }
        toFetch.push(file);
      }

      let totalBytes = 0;
      let resumableBytes = 0;
      // a partial file left by a pull of another revision is not a prefix of this one: drop it
      const partials = await readPartials(dir);
      for (const file of toFetch) {
        const known = partials[file.path];
        if (known !== undefined && known !== identityOf(file)) await rm(join(dir, file.path) + INCOMPLETE_SUFFIX, { force: true });
        partials[file.path] = identityOf(file);
      }
      await writeFile(join(dir, PARTIALS_FILE), `${JSON.stringify(partials)}\n`);

      for (const file of toFetch) {
        totalBytes += file.size ?? 0;
        const partial = await fileSize(join(dir, file.path) + INCOMPLETE_SUFFIX);
        if (partial !== undefined && file.size !== undefined && partial <= file.size) resumableBytes += partial;
      }
      await checkFreeSpace(dir, totalBytes - resumableBytes);

      reporter.plan({
        source,
        endpoint: displayEndpoint(hub),
        modelId,
        revision,
        commit: listing.commit,
        dir,
        fetch: toFetch.map((file) => ({ path: file.path, size: file.size })),
        present: [...results.keys()],
        totalBytes,
        resumableBytes,
      });
      for (const [path, file] of results) reporter.fileSkipped(path, file.verifiedBy);

      let bytesReceived = 0;
      let commit = listing.commit;
      for (const file of toFetch) {
        const dest = join(dir, file.path);
        try {
          const result = await downloadFile(
            { name: file.path, url: hub.fileUrl(modelId, fileRevision, file.path), dest, expected: file },
            client,
            policy,
            {
              onTransfer: (from, total) => reporter.fileStart(file.path, total, from),
              onBytes: (count) => reporter.bytes(count),
              onDiscard: (count) => reporter.discard(count),
              onRetry: (info) => reporter.retry(file.path, info.reason, info.attempt, info.retries, info.delayMs),
              onChecksumRetry: (why) => reporter.note(`${file.path}: checksum mismatch (${why}); deleted it, downloading it again`),
            },
            signal,
          );
          bytesReceived += result.bytesReceived;
          commit ??= result.commit;
          const record = recordOf(file, result.size);
          if (!record.sha256 && result.sha256) record.sha256 = result.sha256;
          results.set(file.path, { ...record, status: 'fetched', verifiedBy: result.verifiedBy });
          reporter.fileDone(file.path, result.size, result.verifiedBy);
        } catch (error) {
          throw fileError(error, hub, file.path, (await fileSize(dest + INCOMPLETE_SUFFIX)) ?? 0);
        }
      }

      await checkShards(dir, selected);
      const files = selected.map((file) => results.get(file.path)).filter((file): file is DownloadedFile => file !== undefined);
      await pruneStale(dir, new Set(files.map((file) => file.path)));
      const record: DownloadRecord = {
        format: 'vistyle-download',
        version: 1,
        modelId,
        source,
        endpoint: displayEndpoint(hub),
        revision,
        commit: commit ?? null,
        completedAt: new Date().toISOString(),
        files: files.map(({ path, size, sha256, gitBlobSha1 }) => ({ path, size, ...(sha256 ? { sha256 } : {}), ...(gitBlobSha1 ? { gitBlobSha1 } : {}) })),
      };
      await writeFile(join(dir, DOWNLOAD_RECORD_FILE), `${JSON.stringify(record, null, 2)}\n`);
      await rm(join(dir, PARTIALS_FILE), { force: true });
      return { dir, source, endpoint: displayEndpoint(hub), modelId, revision, commit, files, bytesReceived };
    }
  } catch (error) {
    if (signal?.aborted) throw cancelled(signal.reason);
    throw error;
  } finally {
    reporter.close();
  }
}

/** What a cancelled download throws: the abort reason when it is ours to show, else CANCELLED. */
function cancelled(reason: unknown): VistyleError {
  if (reason instanceof VistyleError) return reason;
  return new VistyleError('CANCELLED', 'download cancelled; run the same command again to resume');
}

/** A string that changes when the content of a listed file changes. */
function identityOf(file: RemoteFile): string {
  return file.sha256 ?? file.gitBlobSha1 ?? (file.size !== undefined ? `size:${file.size}` : 'unknown');
}

async function readPartials(dir: string): Promise<Record<string, string>> {
  try {
    const parsed = JSON.parse(await readFile(join(dir, PARTIALS_FILE), 'utf8')) as unknown;
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, string>) : {};
  } catch {
    return {};
  }
}

function recordOf(file: RemoteFile, size: number): Omit<DownloadedFile, 'status' | 'verifiedBy'> {
  const record: Omit<DownloadedFile, 'status' | 'verifiedBy'> = { path: file.path, size };
  if (file.sha256) record.sha256 = file.sha256;
  if (file.gitBlobSha1) record.gitBlobSha1 = file.gitBlobSha1;
  return record;
}

/** A sharded checkpoint must hold every shard its index names. */
async function checkShards(dir: string, selected: RemoteFile[]): Promise<void> {
  if (!selected.some((file) => file.path === 'model.safetensors.index.json')) return;
  let index: unknown;
  try {
    index = JSON.parse(await readFile(join(dir, 'model.safetensors.index.json'), 'utf8'));
  } catch {
    throw new VistyleError('CHECKPOINT_INVALID', 'model.safetensors.index.json is not valid JSON');
  }
  const have = new Set(selected.map((file) => file.path));
  const missing = shardsOfIndex(index).filter((shard) => !have.has(shard));
  if (missing.length > 0) {
    throw new VistyleError('CHECKPOINT_INVALID', `model.safetensors.index.json names shards the hub does not list: ${missing.join(', ')}`);
  }
}

/**
 * Removes checkpoint files that an earlier pull into this folder fetched and the current revision
 * no longer has (e.g. single weights replaced by shards), so the builder cannot pick up stale ones.
 * Only files named in the earlier record are touched; other files in the folder are left alone.
 */
async function pruneStale(dir: string, current: Set<string>): Promise<void> {
  const previous = await readRecord(dir);
  if (!previous) return;
  for (const file of previous.files) {
    const known = CHECKPOINT_FILES.includes(file.path) || /^model(-\d{5}-of-\d{5})?\.safetensors(\.index\.json)?$/.test(file.path);
    if (known && !current.has(file.path) && !file.path.includes('/')) {
      await rm(join(dir, file.path), { force: true });
    }
  }
}
