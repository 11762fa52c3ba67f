// The `vistyle` CLI as an operator runs it: a child process (the TypeScript sources through tsx),
// in a folder of the test's choosing (where its .env is), with an environment that holds none of
// this machine's vistyle, platform or data-API settings unless the test gives them.
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const ROOT = new URL('../../', import.meta.url).pathname;
export const CLI_TS = join(ROOT, 'src/cli/main.ts');
export const TSX_LOADER = join(ROOT, 'node_modules/tsx/dist/loader.mjs');

const OURS = /^(VISTYLE_|TELEGRAM_|DISCORD_|DEEPSEEK_|OPENAI_|HF_|MODELSCOPE_)/;

/** process.env without any vistyle-related variable, plus `extra`. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!OURS.test(name)) env[name] = value;
  return { ...env, ...extra };
}

export interface ProcessRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `vistyle ARGS` in `cwd` with exactly `env`. */
export function runIn(cwd: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 180_000): Promise<ProcessRun> {
  const child = spawn(process.execPath, ['--import', TSX_LOADER, CLI_TS, ...args], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`vistyle ${args.join(' ')} did not exit within ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A folder with an executable `vistyle` that runs this checkout's CLI (for shell lines). */
export function vistyleOnPath(dir: string): string {
  const bin = join(dir, 'bin');
  mkdirSync(bin, { recursive: true });
  const script = join(bin, 'vistyle');
  writeFileSync(script, `#!/bin/sh\nexec "${process.execPath}" --import "${TSX_LOADER}" "${CLI_TS}" "$@"\n`);
  chmodSync(script, 0o755);
  return bin;
}

/** The lines of a doctor report whose check is `check`. */
export function doctorLines(stdout: string, check: string): string[] {
  return stdout.split('\n').filter((line) => new RegExp(`^\\S+\\s+${check}\\s`).test(line));
}
