// `vistyle start` as a real child process (from the TypeScript sources, through tsx) against a
// fake Telegram in the test's process, so a test can do to it what an operator's machine does:
// close its stdout/stderr, fill its disk, SIGTERM or SIGKILL it, and read its exit status and CPU.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeTelegram } from '../../support/fake-telegram/index.js';
import { tinyModel } from '../../support/tiny-model.js';

const ROOT = new URL('../../../', import.meta.url).pathname;
export const PNG = readFileSync(new URL('../../fixtures/images/test_image_64x48.png', import.meta.url));

export interface BotProcess {
  child: ChildProcess;
  fake: FakeTelegram;
  home: string;
  /** stdout + stderr, as long as the test reads them. */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Waits for a line in the output. */
  waitForOutput(text: string, timeoutMs?: number): Promise<void>;
  /** The parent stops reading: closes its ends of the child's stdout and stderr pipes. */
  closeOutput(): void;
  cleanup(): Promise<void>;
}

/** Runs the CLI (any command) as a child process with `env` added; for exit-status tests. */
export function runCliProcess(args: string[], env: Record<string, string>, timeoutMs = 120_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args], {
    cwd: ROOT,
    env: { ...process.env, VISTYLE_ENV_FILE: '/nonexistent/.env', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (chunk) => (stdout += chunk));
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`vistyle ${args.join(' ')} did not exit within ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Starts `vistyle start` on a fake Telegram with the tiny model; resolves once it is running. */
export async function startBotProcess(options: { env?: Record<string, string>; home?: string } = {}): Promise<BotProcess> {
  const { modelDir } = await tinyModel();
  const fake = await FakeTelegram.start();
  const home = options.home ?? mkdtempSync(join(tmpdir(), 'vistyle-faults-'));
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'start'], {
    cwd: ROOT,
    env: {
      ...process.env,
      VISTYLE_ENV_FILE: '/nonexistent/.env',
      TELEGRAM_BOT_TOKEN: fake.token,
      TELEGRAM_API_ROOT: fake.apiRoot,
      VISTYLE_MODEL_DIR: modelDir,
      VISTYLE_HOME: home,
      VISTYLE_THREADS: '1',
      VISTYLE_SHUTDOWN_DRAIN_SECONDS: '5',
      VISTYLE_LOG_FORMAT: 'json',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let reading = true;
  child.stdout!.on('data', (chunk) => reading && (output += chunk));
  child.stderr!.on('data', (chunk) => reading && (output += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const bot: BotProcess = {
    child,
    fake,
    home,
    output: () => output,
    exited,
    waitForOutput: async (text, timeoutMs = 60_000) => {
      const gone = exited.then(({ code, signal }) => {
        throw new Error(`vistyle exited (${code ?? signal}) before printing "${text}":\n${output}`);
      });
      await Promise.race([fake.waitFor(() => output.includes(text), timeoutMs, `"${text}" in the bot's output`), gone]);
    },
    closeOutput: () => {
      reading = false;
      child.stdout!.destroy();
      child.stderr!.destroy();
    },
    cleanup: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      await fake.close();
      if (!options.home) rmSync(home, { recursive: true, force: true });
    },
  };
  try {
    await bot.waitForOutput('vistyle is running', 120_000);
  } catch (error) {
    await bot.cleanup();
    throw error;
  }
  return bot;
}

/** CPU seconds (user + system) a process, or one of its threads, has used. */
export function cpuSeconds(pid: number, tid?: number): number {
  const path = tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`;
  const fields = readFileSync(path, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

/** The port of the health and metrics server the bot logged at start (VISTYLE_METRICS_PORT=0). */
export function metricsPort(output: string): number {
  const line = output.split('\n').find((l) => l.includes('"module":"http"') && l.includes('"url"'));
  const url = line ? (JSON.parse(line) as { url?: string }).url : undefined;
  const port = url ? Number(new URL(url).port) : undefined;
  if (!port) throw new Error(`no health/metrics server in the output:\n${output}`);
  return port;
}

export async function metric(port: number, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.split(' ').pop()) : undefined;
}
