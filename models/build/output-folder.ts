// Where `vistyle model build` writes: a temporary folder beside the target
// (`.<name>.partial-<pid>-<random>`), renamed into place once complete. A build that fails or is
// killed half-way leaves no half model at the target (a bot never loads one, and a running bot's
// model is never overwritten under it: the old files are unlinked, not rewritten, so its open
// sessions keep reading them); the next build removes the leftovers of builds that are gone.
// Not fsync'ed: the rename is atomic against a crashed process, and the models are rebuilt from
// the checkpoint after a power cut if need be.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { VistyleError } from '../../src/errors.js';
import { MANIFEST_FILE } from '../manifest.js';

/** Files a build writes (or an older, in-place build may have left half-written). */
const BUILD_OUTPUT = /\.(onnx|onnx\.data|json|tmp)$/;

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Leftover temporary folders of builds into `target` whose process is gone. */
function removeLeftovers(target: string): void {
  const parent = dirname(target);
  const pattern = new RegExp(`^\\.${basename(target).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(partial|old)-(\\d+)-[0-9a-f]+$`);
  for (const name of readdirSync(parent)) {
    const match = pattern.exec(name);
    if (match && !pidAlive(Number(match[2]))) rmSync(join(parent, name), { recursive: true, force: true });
  }
}

/**
 * Checks that `target` can take a built model and creates the temporary folder to build into.
 * A folder that holds anything but a (possibly half) built model is refused, never replaced.
 */
export function prepareBuildFolder(target: string): string {
  if (existsSync(target)) {
    if (!statSync(target).isDirectory()) {
      throw new VistyleError('CONFIG_INVALID', `cannot build into ${target}: it is a file, not a folder (choose another --out, or remove the file)`, {
        details: { path: target },
      });
    }
    const entries = readdirSync(target);
    const isModel = entries.includes(MANIFEST_FILE) || entries.every((name) => BUILD_OUTPUT.test(name));
    if (!isModel) {
      throw new VistyleError(
        'CONFIG_INVALID',
        `cannot build into ${target}: it holds other files (${entries.slice(0, 3).join(', ')}${entries.length > 3 ? ', ...' : ''}) and would be replaced; ` +
          'choose an empty or new folder for --out',
        { details: { path: target } },
      );
    }
  }
  try {
    mkdirSync(dirname(target), { recursive: true });
    removeLeftovers(target);
    const work = join(dirname(target), `.${basename(target)}.partial-${process.pid}-${randomBytes(4).toString('hex')}`);
    mkdirSync(work);
    return work;
  } catch (error) {
    if (error instanceof VistyleError) throw error;
    throw new VistyleError('CONFIG_INVALID', `cannot build into ${target}: ${(error as Error).message}`, { cause: error, details: { path: target } });
  }
}

/** Puts the finished build in place of whatever `target` held (renames; no copy). */
export function commitBuildFolder(work: string, target: string): void {
  if (existsSync(target) && readdirSync(target).length > 0) {
    // rename() cannot replace a non-empty folder: move the old one aside first, then drop it
    const old = join(dirname(target), `.${basename(target)}.old-${process.pid}-${randomBytes(4).toString('hex')}`);
    renameSync(target, old);
    renameSync(work, target);
    rmSync(old, { recursive: true, force: true });
  } else {
    renameSync(work, target); // replaces an empty folder
  }
}

/** Removes the temporary folder of a build that failed. */
export function discardBuildFolder(work: string): void {
  rmSync(work, { recursive: true, force: true });
}
