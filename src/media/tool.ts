// Runs an external program (ffmpeg, ffprobe) on untrusted input the safe way: found on PATH by
// us, spawned directly (never through a shell, so no argument is ever interpreted), with a time
// limit, an AbortSignal, and bounded output — past the limits the process is killed, not waited
// for. The result says how it ended; callers turn that into the user's message.
import { spawn } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';

/** The executable `name` in the PATH directories of `env`, or undefined. */
export function findOnPath(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir || !isAbsolute(dir)) continue; // a relative PATH entry would depend on the working directory
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      if (statSync(candidate).isFile()) return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export interface RunOptions {
  /** Killed (SIGKILL) after this long. */
  timeoutMs: number;
  /** Killed once stdout grows past this many bytes (`overflowed` is then set). */
  maxStdoutBytes: number;
  /** Only the last this-many bytes of stderr are kept (for the log line). Default 8 KiB. */
  maxStderrBytes?: number;
  /** Aborting kills the process. */
  signal?: AbortSignal;
}

export interface RunResult {
  /** Exit status; null when killed. */
  code: number | null;
  stdout: Buffer;
  /** The end of stderr, as text. */
  stderr: string;
  timedOut: boolean;
  overflowed: boolean;
  aborted: boolean;
  /** The program could not be started (ENOENT, EACCES...). */
  spawnError?: string;
}

export function runTool(file: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  const maxStderr = options.maxStderrBytes ?? 8192;
  return new Promise<RunResult>((resolve) => {
    const result: RunResult = { code: null, stdout: Buffer.alloc(0), stderr: '', timedOut: false, overflowed: false, aborted: false };
    if (options.signal?.aborted) {
      resolve({ ...result, aborted: true });
      return;
    }
    const child = spawn(file, [...args], { stdio: ['ignore', 'pipe', 'pipe'], shell: false, windowsHide: true });
    const stdout: Buffer[] = [];
    let stdoutBytes = 0;
    let stderr = Buffer.alloc(0);
    let settled = false;
    const kill = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    const timer = setTimeout(() => {
      result.timedOut = true;
      kill();
    }, options.timeoutMs);
    const onAbort = () => {
      result.aborted = true;
      kill();
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const finish = (code: number | null, spawnError?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      result.code = code;
      result.stdout = Buffer.concat(stdout);
      result.stderr = stderr.toString('utf8');
      if (spawnError !== undefined) result.spawnError = spawnError;
      resolve(result);
    };
    child.stdout.on('data', (chunk: Buffer) => {
      if (result.overflowed) return;
      stdoutBytes += chunk.length;
      if (stdoutBytes > options.maxStdoutBytes) {
        result.overflowed = true;
        kill();
        return;
      }
      stdout.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = Buffer.concat([stderr, chunk]);
      if (stderr.length > maxStderr) stderr = stderr.subarray(stderr.length - maxStderr);
    });
    child.on('error', (error: NodeJS.ErrnoException) => finish(null, error.code ?? error.message));
    child.on('close', (code) => finish(code));
  });
}
