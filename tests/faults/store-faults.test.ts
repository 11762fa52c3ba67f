// The bot's SQLite store under real disk faults: a full file system (a small tmpfs), a damaged
// file at start (truncated, overwritten), a read-only file system at start, and a process killed
// (SIGKILL) in the middle of a write burst.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EXIT, startupExitStatus, isVistyleError, type VistyleError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { Store } from '../../src/store/store.js';
import { itWithMount, mountReadOnly, mountTmpfs } from './support/tmpfs.js';

const ROOT = new URL('../../', import.meta.url).pathname;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vistyle-store-faults-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const image = (seed: number, size = 4000) => new Uint8Array(size).fill(seed);
const turn = (n: number, extra: Partial<Parameters<Store['saveTurn']>[0]> = {}) => ({
  platform: 'telegram',
  chatId: `chat-${n % 7}`,
  userId: String(n),
  image: { bytes: image(n % 250), mime: 'image/png' },
  question: `question ${n}`,
  answer: `answer ${n} `.repeat(40),
  style: 'plain',
  messageIds: [`m${n}`],
  ...extra,
});

/** A logger whose JSON lines are collected. */
function capturedLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: createLogger({ destination, format: 'json' }), lines };
}

function openError(path: string): VistyleError {
  try {
    Store.open(path).close();
  } catch (error) {
    if (isVistyleError(error)) return error;
    throw error;
  }
  throw new Error(`Store.open(${path}) succeeded`);
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** A database of many pages, closed cleanly (its WAL checkpointed into the file). */
function populatedDatabase(path: string, turns = 60): void {
  const store = Store.open(path);
  for (let n = 0; n < turns; n++) store.saveTurn(turn(n));
  store.setStyle('user', 'telegram', '1', 'grumpy');
  store.close();
}

describe('a full disk', () => {
  itWithMount('refuses writes politely while reads go on, logs once a minute, and writes again once space returns', () => {
    const tmpfs = mountTmpfs(4 * 1024 * 1024);
    try {
      const { logger, lines } = capturedLogger();
      const store = Store.open(join(tmpfs.dir, 'vistyle.db'), { logger });
      const first = store.saveTurn(turn(1));
      store.setStyle('user', 'telegram', '1', 'grumpy');

      const free = tmpfs.fill();
      const refusals: VistyleError[] = [];
      for (let n = 2; n < 6; n++) {
        try {
          store.saveTurn(turn(n));
        } catch (error) {
          refusals.push(error as VistyleError);
        }
      }
      try {
        store.setStyle('user', 'telegram', '1', 'salesman');
      } catch (error) {
        refusals.push(error as VistyleError);
      }
      expect(refusals).toHaveLength(5);
      for (const refusal of refusals) {
        expect(refusal.code).toBe('STORE_UNAVAILABLE');
        expect(refusal.details).toMatchObject({ sqlite: 'SQLITE_FULL' });
      }
      // reads are not affected
      expect(store.getSettings('user', 'telegram', '1').style).toBe('grumpy');
      expect(store.findByMessage('telegram', turn(1).chatId, 'm1')?.id).toBe(first);
      expect(store.health()).toEqual({ writable: false, refusedWrites: 5, lastFailure: 'SQLITE_FULL' });
      // five refusals within the minute: one line
      const warnings = lines.filter((line) => line.level === 40);
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.msg).toMatch(/the disk is full.*answers go on/);

      free();
      store.setStyle('user', 'telegram', '1', 'salesman');
      const later = store.saveTurn(turn(7));
      expect(store.getSettings('user', 'telegram', '1').style).toBe('salesman');
      expect(store.getConversation(later)?.turns).toHaveLength(1);
      expect(store.health().writable).toBe(true);
      expect(lines.at(-1)).toMatchObject({ level: 30, msg: 'the database takes writes again', refusedWrites: 5 });
      store.close();

      const raw = new BetterSqlite3(join(tmpfs.dir, 'vistyle.db'), { readonly: true });
      expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
      raw.close();
    } finally {
      tmpfs.unmount();
    }
  });
});

describe('a damaged database at start', () => {
  it('is refused with one line naming the file and how to recover, and left exactly as it was (truncated)', () => {
    const path = join(dir, 'vistyle.db');
    populatedDatabase(path);
    truncateSync(path, Math.floor(statSync(path).size / 2));
    const before = sha256(path);

    const error = openError(path);
    expect(error.code).toBe('STORE_CORRUPT');
    expect(error.message).not.toContain('\n');
    expect(error.message).toContain(`the database ${path} is damaged`);
    expect(error.message).toContain(`mv ${path} ${path}.damaged`);
    expect(error.message).toContain('.recover');
    expect(startupExitStatus(error)).toBe(EXIT.STORE_CORRUPT);
    // never recreated or "repaired" behind the operator's back
    expect(sha256(path)).toBe(before);
  });

  it('is refused when a page in the middle is damaged, which only the check at open finds', () => {
    const path = join(dir, 'vistyle.db');
    populatedDatabase(path);
    const pageSize = 4096;
    const pages = statSync(path).size / pageSize;
    const fd = openSync(path, 'r+');
    // garbage over a b-tree page of the data (not the schema on page 1, which every open reads)
    writeSync(fd, Buffer.alloc(pageSize, 0x5a), 0, pageSize, Math.floor(pages / 2) * pageSize);
    closeSync(fd);
    const before = sha256(path);
    const error = openError(path);
    expect(error.code).toBe('STORE_CORRUPT');
    expect(error.message).toContain(`the database ${path} is damaged`);
    expect(sha256(path)).toBe(before);
  });

  it('is refused when its header is overwritten (not a database any more)', () => {
    const path = join(dir, 'vistyle.db');
    populatedDatabase(path, 5);
    const fd = openSync(path, 'r+');
    writeSync(fd, Buffer.alloc(100, 0x42), 0, 100, 0);
    closeSync(fd);
    const before = sha256(path);
    const error = openError(path);
    expect(error.code).toBe('STORE_CORRUPT');
    expect(error.message).toContain(path);
    expect(sha256(path)).toBe(before);
  });

  it('`vistyle start` exits 65 with that one line, before loading the model', async () => {
    const path = join(dir, 'vistyle.db');
    writeFileSync(path, Buffer.alloc(8192, 0x42));
    const { code, stderr } = await runStart({ VISTYLE_DB_PATH: path });
    expect(code).toBe(EXIT.STORE_CORRUPT);
    const lines = stderr.trim().split('\n').filter((line) => !line.startsWith('{'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^vistyle: the database ${path} is damaged .*mv ${path}`));
  });
});

describe('a read-only file system at start', () => {
  itWithMount('`vistyle start` exits 73 naming the file and what to check', async () => {
    populatedDatabase(join(dir, 'vistyle.db'), 3);
    const readOnly = mountReadOnly(dir);
    try {
      const path = join(readOnly.dir, 'vistyle.db');
      const error = openError(path);
      expect(error.code).toBe('STORE_UNAVAILABLE');
      expect(startupExitStatus(error)).toBe(EXIT.STORE_UNWRITABLE);
      const { code, stderr } = await runStart({ VISTYLE_DB_PATH: path });
      expect(code).toBe(EXIT.STORE_UNWRITABLE);
      expect(stderr).toContain(`cannot open the database ${path}`);
      expect(stderr).toContain('read-only');
    } finally {
      readOnly.unmount();
    }
  });
});

describe('SIGKILL in a write burst', () => {
  it('the next open finds the database intact, with every acknowledged write', async () => {
    const path = join(dir, 'vistyle.db');
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'tests/faults/support/write-burst.ts'), path], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let acknowledged = '';
    child.stdout!.on('data', (chunk) => (acknowledged += chunk));
    const exited = new Promise((resolve) => child.on('exit', resolve));
    // kill it somewhere in the middle of the burst
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (acknowledged.split('\n').length > 300) {
          clearInterval(timer);
          resolve();
        }
      }, 5);
      child.on('exit', () => reject(new Error('the write burst ended before it was killed')));
    });
    child.kill('SIGKILL');
    await exited;
    const acks = acknowledged.split('\n').filter((line) => /^\d+$/.test(line)).map(Number);
    expect(acks.length).toBeGreaterThan(300);

    // Store.open runs quick_check itself (it would throw STORE_CORRUPT); the full check as well:
    const store = Store.open(path);
    const raw = new BetterSqlite3(path, { readonly: true });
    expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
    raw.close();
    for (const n of acks) {
      expect(store.findByMessage('telegram', `burst-${n}`, `m${n}`)?.turns.at(-1)?.question, `write ${n}`).toBe(`question ${n}`);
      expect(store.getSettings('user', 'telegram', String(n)).style, `setting ${n}`).toBe('grumpy');
    }
    store.close();
  });
});

/** `vistyle start` as a child process, failing before any platform is contacted. */
async function runStart(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const { runCliProcess } = await import('./support/bot-process.js');
  const run = await runCliProcess(['start'], {
    TELEGRAM_BOT_TOKEN: '123456:fake-token-for-tests',
    TELEGRAM_API_ROOT: 'http://127.0.0.1:9',
    VISTYLE_HOME: dir,
    VISTYLE_MODEL_DIR: join(dir, 'no-model'),
    VISTYLE_LOG_FORMAT: 'json',
    ...env,
  });
  return { code: run.code, stderr: run.stderr };
}
