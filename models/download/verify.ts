// Checking a downloaded file against what the hub says it should be: sha256 for LFS files (and every
// file on ModelScope), the git blob id for small files kept in git, the size when that is all we have.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';

export interface ExpectedContent {
  size?: number;
  sha256?: string;
  gitBlobSha1?: string;
}

export type VerifyResult = { ok: true; how: 'sha256' | 'git-blob' | 'size' | 'none' } | { ok: false; why: string };

/** Feeds `bytes` bytes of a file (from the start) into a hash. */
export async function hashFilePrefix(path: string, hash: Hash, bytes?: number): Promise<void> {
  if (bytes === 0) return;
  const stream = createReadStream(path, bytes === undefined ? {} : { start: 0, end: bytes - 1 });
  for await (const chunk of stream) hash.update(chunk as Buffer);
}

export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  await hashFilePrefix(path, hash);
  return hash.digest('hex');
}

/** Git's object id of a blob: sha1 of `blob <size>\0` followed by the content. */
export async function gitBlobSha1OfFile(path: string): Promise<string> {
  const { size } = await stat(path);
  const hash = createHash('sha1');
  hash.update(`blob ${size}\0`);
  await hashFilePrefix(path, hash);
  return hash.digest('hex');
}

function short(hex: string): string {
  return `${hex.slice(0, 12)}…`;
}

/**
 * Checks a complete file. `knownSha256` is a digest already computed while downloading (saves
 * reading a large file twice).
 */
export async function verifyFile(path: string, expected: ExpectedContent, knownSha256?: string): Promise<VerifyResult> {
  const { size } = await stat(path);
  if (expected.size !== undefined && size !== expected.size) {
    return { ok: false, why: `size ${size} bytes, expected ${expected.size}` };
  }
  if (expected.sha256) {
    const actual = knownSha256 ?? (await sha256OfFile(path));
    return actual === expected.sha256
      ? { ok: true, how: 'sha256' }
      : { ok: false, why: `sha256 ${short(actual)}, expected ${short(expected.sha256)}` };
  }
  if (expected.gitBlobSha1) {
    const actual = await gitBlobSha1OfFile(path);
    return actual === expected.gitBlobSha1
      ? { ok: true, how: 'git-blob' }
      : { ok: false, why: `git blob ${short(actual)}, expected ${short(expected.gitBlobSha1)}` };
  }
  return { ok: true, how: expected.size !== undefined ? 'size' : 'none' };
}
