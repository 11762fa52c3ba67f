// Small tmpfs mounts for disk-full tests (`mount -t tmpfs -o size=...`; needs root, as on this
// machine and in CI). Where mounting is not permitted the tests that need it are skipped with a
// message, except under CI=true, where they run and fail.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'vitest';

export interface Tmpfs {
  dir: string;
  /** Writes filler files until the file system is full; returns a function that frees them. */
  fill(): () => void;
  unmount(): void;
}

export function mountTmpfs(sizeBytes: number): Tmpfs {
  const dir = mkdtempSync(join(tmpdir(), 'vistyle-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes}`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    dir,
    fill() {
      const files: string[] = [];
      // big pieces, then page-sized ones, so that not even one more page is left
      for (const size of [256 * 1024, 4096, 512]) {
        for (;;) {
          const file = join(dir, `filler-${files.length}`);
          try {
            writeFileSync(file, Buffer.alloc(size, 1));
            files.push(file);
          } catch {
            rmSync(file, { force: true });
            break;
          }
        }
      }
      return () => {
        for (const file of files) rmSync(file, { force: true });
      };
    },
    unmount() {
      execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Whether this process may mount a tmpfs (tried once). */
function probe(): string | undefined {
  try {
    mountTmpfs(1024 * 1024).unmount();
    return undefined;
  } catch (error) {
    return (error as Error).message.split('\n')[0];
  }
}

const why = probe();
if (why && process.env.CI !== 'true') {
  console.warn(`skipping the tmpfs (disk full / read-only) tests: cannot mount a tmpfs here (${why}); they run as root in CI`);
}

/** `it`, or `it.skip` where a tmpfs cannot be mounted (never under CI=true). */
export const itWithMount = why && process.env.CI !== 'true' ? it.skip : it;

/** Bind-mounts `source` read-only at a new folder; returns it and how to unmount it. */
export function mountReadOnly(source: string): { dir: string; unmount(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'vistyle-ro-'));
  execFileSync('mount', ['--bind', source, dir], { stdio: 'pipe' });
  execFileSync('mount', ['-o', 'remount,bind,ro', dir], { stdio: 'pipe' });
  return {
    dir,
    unmount() {
      execFileSync('umount', ['-l', dir], { stdio: 'pipe' });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
