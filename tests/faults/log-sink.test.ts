// The log output under real faults, one piece at a time: a pipe whose reader has exited (EPIPE),
// a reader that does not read, a fallback log file on a full tmpfs; the two formats; and the
// engine worker's lines reaching the main thread's output.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger, registerSecret, setRootLogger } from '../../src/log.js';
import { prettyLine } from '../../src/log-pretty.js';
import { LogSink } from '../../src/log-sink.js';
import { itWithMount, mountTmpfs } from './support/tmpfs.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vistyle-log-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const line = (msg: string, level = 30) => `${JSON.stringify({ level, time: Date.now(), app: 'vistyle', module: 'test', msg })}\n`;
const tick = () => new Promise((resolve) => setTimeout(resolve, 20));

const readers: ChildProcess[] = [];
afterEach(() => {
  for (const reader of readers.splice(0)) reader.kill('SIGKILL');
});

/** The write end of a pipe whose reader has closed its end (and lives on): writes get EPIPE. */
async function deadPipe(): Promise<NodeJS.WritableStream> {
  const child = spawn('sh', ['-c', 'exec 0<&-; echo closed; exec sleep 30'], { stdio: ['pipe', 'pipe', 'ignore'] });
  readers.push(child);
  await new Promise((resolve) => child.stdout!.once('data', resolve));
  return child.stdin!;
}

function exited(child: ChildProcess): Promise<unknown> {
  return new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.on('exit', resolve)));
}

describe('LogSink', () => {
  it('gives up on a pipe whose reader is gone at the first EPIPE, once, and goes on in the fallback file, the line the pipe failed to take first', async () => {
    const target = await deadPipe();
    const file = join(dir, 'logs', 'vistyle.log');
    const sink = new LogSink({ target, format: 'json', file });
    let errorsSeen = 0;
    target.on('error', () => errorsSeen++);
    sink.write(line('lost in the pipe'));
    await tick();
    expect(sink.stats()).toMatchObject({ state: 'file', primaryFailure: 'EPIPE' });
    for (let i = 0; i < 100; i++) sink.write(line(`kept ${i}`));
    await tick();
    // the dead pipe is not written again: no more errors after the first
    expect(errorsSeen).toBe(1);
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { msg: string });
    expect(lines[0]!.msg).toBe(`the log output failed (EPIPE); logging to ${file} from now on`);
    // the line written into the dead pipe (its EPIPE came back after the write) is not lost
    expect(lines.slice(1).map((l) => l.msg)).toEqual(['lost in the pipe', ...Array.from({ length: 100 }, (_, i) => `kept ${i}`)]);
    expect(sink.stats().dropped).toBe(0);
    sink.close();
  });

  it('without a fallback file, drops and counts what comes after the EPIPE, and the line that met it', async () => {
    const target = await deadPipe();
    const sink = new LogSink({ target, format: 'json' });
    sink.write(line('first'));
    await tick();
    for (let i = 0; i < 10; i++) sink.write(line(`dropped ${i}`));
    expect(sink.stats()).toMatchObject({ lines: 11, dropped: 11, state: 'dropping', primaryFailure: 'EPIPE' });
    sink.close();
  });

  it('keeps its queue bounded when the reader does not read, and says what it dropped once the reader catches up', async () => {
    const out = join(dir, 'read-late.txt');
    // reads nothing for a while, then everything
    const reader = spawn('sh', ['-c', `sleep 1; cat > ${out}`], { stdio: ['pipe', 'ignore', 'ignore'] });
    const target = reader.stdin!;
    let clock = 0;
    const sink = new LogSink({ target, format: 'json', maxBufferedBytes: 256 * 1024, retryMs: 1000, now: () => clock });
    const big = line('x'.repeat(1000));
    for (let i = 0; i < 2000; i++) sink.write(big); // 2 MB, far more than the pipe holds
    const stats = sink.stats();
    expect(stats.dropped).toBeGreaterThan(1000);
    expect((target as unknown as { writableLength: number }).writableLength).toBeLessThanOrEqual(256 * 1024 + big.length);

    await new Promise((resolve) => setTimeout(resolve, 1500)); // the reader reads now
    await new Promise((resolve) => (target.writableLength === 0 ? resolve(undefined) : target.once('drain', resolve)));
    clock += 1000; // the pause is over
    sink.write(line('after'));
    target.end();
    await exited(reader);
    const text = readFileSync(out, 'utf8');
    expect(text).toContain(`"msg":"${stats.dropped} log lines were dropped while the log output was not being read"`);
    expect(text.trim().split('\n').at(-1)).toContain('"msg":"after"');
    sink.close();
  });

  itWithMount('drops and counts lines while the log file\'s disk is full, then writes again and says how many were lost', async () => {
    const tmpfs = mountTmpfs(1024 * 1024);
    try {
      const target = await deadPipe();
      const file = join(tmpfs.dir, 'vistyle.log');
      let clock = 0;
      const sink = new LogSink({ target, format: 'json', file, retryMs: 5000, now: () => clock });
      sink.write(line('before the break'));
      await tick();
      sink.write(line('in the file'));
      const free = tmpfs.fill();
      for (let i = 0; i < 50; i++) sink.write(line(`no room ${i} ${'x'.repeat(1000)}`));
      expect(sink.stats().dropped).toBeGreaterThanOrEqual(45); // a few fit in the file's last page
      free();
      clock += 5000;
      sink.write(line('room again'));
      const text = readFileSync(file, 'utf8');
      const lines = text.trim().split('\n');
      expect(lines.at(-1)).toContain('"msg":"room again"');
      expect(lines.at(-2)).toMatch(/"msg":"\d+ log lines were lost while .*vistyle\.log could not be written \(ENOSPC\)"/);
      expect(sink.stats().state).toBe('file');
      sink.close();
    } finally {
      tmpfs.unmount();
    }
  });
});

describe('log formats', () => {
  it('pretty lines: time, level, module, message, then the fields; stacks indented below', () => {
    const json = JSON.stringify({
      level: 40,
      time: new Date(2026, 0, 2, 3, 4, 5, 67).getTime(),
      app: 'vistyle',
      module: 'bot',
      platform: 'telegram',
      question: 'what is this?',
      error: { type: 'Error', message: 'boom', stack: 'Error: boom\n    at here' },
      msg: 'request failed',
    });
    expect(prettyLine(json)).toBe(
      '03:04:05.067 WARN  bot: request failed platform=telegram question="what is this?" error={"type":"Error","message":"boom"}\n' +
        '    Error: boom\n        at here\n',
    );
    expect(prettyLine(json, { color: true })).toContain('\x1b[33mWARN \x1b[0m');
    expect(prettyLine('not json')).toBe('not json\n');
  });

  it('JSON unless the destination is a terminal; VISTYLE_LOG_FORMAT or the option decides otherwise', () => {
    const capture = (isTTY: boolean) => {
      const chunks: string[] = [];
      const destination = Object.assign(
        new Writable({
          write(chunk, _encoding, done) {
            chunks.push(String(chunk));
            done();
          },
        }),
        { isTTY },
      );
      return { destination, chunks };
    };
    const pipe = capture(false);
    createLogger({ destination: pipe.destination }).info({ n: 1 }, 'hello');
    expect(JSON.parse(pipe.chunks[0]!)).toMatchObject({ msg: 'hello', n: 1 });

    const tty = capture(true);
    createLogger({ destination: tty.destination }).info({ n: 1 }, 'hello');
    expect(tty.chunks[0]).toMatch(/^\S*\d\d:\d\d:\d\d\.\d{3}\S* \S*INFO\s*\S* hello \S*n=1/);

    const forced = capture(true);
    createLogger({ destination: forced.destination, format: 'json' }).info('hello');
    expect(JSON.parse(forced.chunks[0]!).msg).toBe('hello');
  });
});

describe('worker threads', () => {
  it("a worker's lines come out of the main thread's log output, secrets redacted", async () => {
    const chunks: string[] = [];
    const destination = new Writable({
      write(chunk, _encoding, done) {
        chunks.push(String(chunk));
        done();
      },
    });
    const secret = 'worker-secret-123456';
    registerSecret(secret);
    setRootLogger(createLogger({ destination, format: 'json' }));
    const require = createRequire(import.meta.url);
    const pkgPath = require.resolve('tsx/package.json');
    const tsxApi = pathToFileURL(join(pkgPath, '..', (JSON.parse(readFileSync(pkgPath, 'utf8')) as { exports: Record<string, { import: { default: string } }> }).exports['./esm/api']!.import.default)).href;
    const logModule = new URL('../../src/log.ts', import.meta.url).href;
    const body = `const { rootLogger } = await api.tsImport(${JSON.stringify(logModule)}, ${JSON.stringify(import.meta.url)}); rootLogger().child({ module: 'engine' }).warn({ token: 'x' }, 'from the worker: ${secret}');`;
    const worker = new Worker(`import(${JSON.stringify(tsxApi)}).then(async (api) => { ${body} });`, { eval: true });
    await new Promise((resolve) => worker.on('exit', resolve));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const received = chunks.map((c) => JSON.parse(c) as Record<string, unknown>).find((l) => l.module === 'engine');
    expect(received).toMatchObject({ level: 40, msg: 'from the worker: [redacted]', token: '[redacted]' });
    expect(existsSync(dir)).toBe(true);
  });
});
