import { mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { readStyledDataset } from '../../models/data/dataset.js';
import { makeStyledData, resolveDataApiConfig, type MakeDataOptions } from '../../models/data/maker.js';
import { createLogger } from '../../src/log.js';
import { LiveStyleRegistry } from '../../src/styles/registry.js';
import { startFakeChatServer, type FakeChatServer } from './fake-chat-server.js';

const KEY = 'sk-test-secret-key-0123456789';
const grumpy = new LiveStyleRegistry().get('grumpy')!;
let server: FakeChatServer;
let dir: string;

beforeAll(async () => {
  server = await startFakeChatServer();
});
afterAll(async () => {
  await server.close();
});
afterEach(() => {
  server.allGood = false;
  server.rejectResponseFormat = false;
  server.unauthorized = false;
  server.requests.length = 0;
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function captureLogs(): { logger: ReturnType<typeof createLogger>; text: () => string } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      lines.push(String(chunk));
      callback();
    },
  });
  return { logger: createLogger({ level: 'debug', destination }), text: () => lines.join('') };
}

function writeJsonl(rows: Array<Record<string, unknown>>): string {
  dir = mkdtempSync(join(tmpdir(), 'vistyle-data-'));
  const file = join(dir, 'input.jsonl');
  writeFileSync(file, rows.map((row) => JSON.stringify(row)).join('\n') + '\n');
  return file;
}

function options(input: string, extra: Partial<MakeDataOptions> = {}): MakeDataOptions {
  return {
    input,
    output: join(dir, 'out.jsonl'),
    style: grumpy,
    // Generous: a loaded 2-core CI machine must never turn a good answer into a time-out. The
    // hang test sets its own short time-out.
    api: { baseUrl: server.baseUrl, apiKey: KEY, model: 'deepseek-chat', timeoutMs: 10_000 },
    concurrency: 3,
    maxAttempts: 3,
    retryBaseMs: 20,
    retryMaxMs: 100,
    progress: null,
    ...extra,
  };
}

function outputRows(file: string): Array<Record<string, string>> {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Record<string, string>);
}

describe('vistyle data make against a fake OpenAI-compatible API', () => {
  it('turns good, fenced and once-broken replies into seed-compatible rows', async () => {
    const input = writeJsonl([
      { url: 'https://img/1.jpg', caption: 'two cats on a red blanket [good]' },
      { url: 'https://img/2.jpg', caption: 'a snowy street [fenced]' },
      { url: 'https://img/3.jpg', caption: 'a bakery window [broken-once]' },
    ]);
    const { logger, text } = captureLogs();
    const summary = await makeStyledData(options(input, { logger }));
    expect(summary).toMatchObject({ made: 3, failed: 0, skipped: 0, invalid: 0, stoppedBecause: null });
    expect(summary.requests).toBe(4); // the broken-once row was asked twice
    expect(summary.usage).toEqual({ promptTokens: 400, completionTokens: 80, totalTokens: 480 });

    const rows = outputRows(summary.output);
    expect(rows.map((r) => r.url).sort()).toEqual(['https://img/1.jpg', 'https://img/2.jpg', 'https://img/3.jpg']);
    const cats = rows.find((r) => r.url === 'https://img/1.jpg')!;
    expect(cats).toEqual({
      question: 'What is shown? (two cats on a red blanket)',
      ans: 'It is two cats on a red blanket, obviously!',
      url: 'https://img/1.jpg',
      caption: 'two cats on a red blanket [good]',
      style: 'grumpy',
    });
    // the trainer's reader takes the output as it is
    expect(readStyledDataset(summary.output).samples).toHaveLength(3);

    // what went over the wire
    const first = server.requests[0]!;
    expect(first.authorization).toBe(`Bearer ${KEY}`);
    expect(first.body.model).toBe('deepseek-chat');
    expect(first.body.response_format).toEqual({ type: 'json_object' });
    expect(first.body.messages[0]!.content).toContain(grumpy.dataPrompt!);
    expect(text()).not.toContain(KEY);
    expect(JSON.stringify(summary)).not.toContain(KEY);
  });

  it('retries 429 after the Retry-After the server asked for, and 5xx with backoff', async () => {
    server.retryAfterSeconds = '1';
    const input = writeJsonl([
      { url: 'u/429', caption: 'a dog [429-once]' },
      { url: 'u/500', caption: 'a bridge [500-twice]' },
    ]);
    const summary = await makeStyledData(options(input));
    expect(summary).toMatchObject({ made: 2, failed: 0 });
    const limited = server.requests.filter((r) => r.tag === '429-once');
    expect(limited).toHaveLength(2);
    expect(limited[1]!.at - limited[0]!.at).toBeGreaterThanOrEqual(950);
    expect(server.requests.filter((r) => r.tag === '500-twice')).toHaveLength(3);
  });

  it('aborts a request that hangs and tries again; gives up on rows that keep failing', async () => {
    const input = writeJsonl([
      { url: 'u/hang-once', caption: 'a lake [hang-once]' },
      { url: 'u/hang-always', caption: 'a tower [hang-always]' },
      { url: 'u/500-always', caption: 'a field [500-always]' },
      { url: 'u/broken', caption: 'a car [broken]' },
      { url: 'u/good', caption: 'a tree' },
    ]);
    const started = Date.now();
    const summary = await makeStyledData(options(input, { api: { baseUrl: server.baseUrl, apiKey: KEY, model: 'deepseek-chat', timeoutMs: 1000 } }));
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(summary).toMatchObject({ made: 2, failed: 3 });
    expect(server.requests.filter((r) => r.tag === 'hang-once')).toHaveLength(2);
    expect(server.requests.filter((r) => r.tag === 'hang-always')).toHaveLength(3);
    expect(server.requests.filter((r) => r.tag === '500-always')).toHaveLength(3);
    expect(server.requests.filter((r) => r.tag === 'broken')).toHaveLength(3);
    const errors = Object.fromEntries(summary.failures.map((f) => [f.url, f.error]));
    expect(errors['u/hang-always']).toMatch(/no answer within 1000 ms/);
    expect(errors['u/500-always']).toMatch(/HTTP 503/);
    expect(errors['u/broken']).toMatch(/JSON/);
    // the failures file lists them for inspection; the output has only the good rows
    const failed = outputRows(`${summary.output}.failed.jsonl`).map((r) => r.url).sort();
    expect(failed).toEqual(['u/500-always', 'u/broken', 'u/hang-always']);
    expect(outputRows(summary.output).map((r) => r.url).sort()).toEqual(['u/good', 'u/hang-once']);
  });

  it('resumes: a re-run skips done rows and makes only the missing ones', async () => {
    const input = writeJsonl([
      { url: 'u/1', caption: 'one' },
      { url: 'u/2', caption: 'two [500-always]' },
      { url: 'u/3', caption: 'three' },
      { url: 'u/1', caption: 'one again (duplicate url)' },
      { url: 'u/4', caption: 'four' },
    ]);
    const first = await makeStyledData(options(input, { limit: 3 }));
    expect(first).toMatchObject({ made: 2, failed: 1, skipped: 0 });
    // an interrupted earlier run may have left half a line
    appendFileSync(first.output, '{"question": "half a li');

    server.allGood = true;
    server.requests.length = 0;
    const second = await makeStyledData(options(input));
    expect(second).toMatchObject({ made: 2, failed: 0, skipped: 3 });
    expect(server.requests.map((r) => r.caption).sort()).toEqual(['four', 'two [500-always]']);
    const rows = readStyledDataset(second.output, { skipInvalid: true });
    expect(rows.invalid).toBe(1); // the half line, and nothing else
    expect(rows.samples.map((s) => s.url).sort()).toEqual(['u/1', 'u/2', 'u/3', 'u/4']);

    server.requests.length = 0;
    const third = await makeStyledData(options(input));
    expect(third).toMatchObject({ made: 0, skipped: 5 });
    expect(server.requests).toHaveLength(0);
  });

  it('creates the folder of the output (and of its failures file) when it does not exist yet', async () => {
    const input = writeJsonl([{ url: 'u/1', caption: 'one' }, { url: 'u/2', caption: 'two [500-always]' }]);
    const output = join(dir, 'data', 'grumpy', 'out.jsonl');
    const summary = await makeStyledData(options(input, { output }));
    expect(summary).toMatchObject({ made: 1, failed: 1 });
    expect(outputRows(output).map((r) => r.url)).toEqual(['u/1']);
    expect(outputRows(`${output}.failed.jsonl`).map((r) => r.url)).toEqual(['u/2']);
  });

  it('reads CSV with quoted commas, quotes and line breaks, and reports unusable rows', async () => {
    dir = mkdtempSync(join(tmpdir(), 'vistyle-data-'));
    const input = join(dir, 'captions.csv');
    writeFileSync(
      input,
      'id,caption,url\r\n' +
        '1,"A street, with snow and a ""Bakery"" sign\nand people",https://img/a.jpg\r\n' +
        '2,,https://img/b.jpg\r\n' +
        '3,plain caption,https://img/c.jpg\r\n',
    );
    const summary = await makeStyledData(options(input));
    expect(summary).toMatchObject({ made: 2, invalid: 1 });
    expect(server.requests.map((r) => r.caption).sort()).toEqual([
      'A street, with snow and a "Bakery" sign\nand people',
      'plain caption',
    ]);
  });

  it('asks again without response_format when the server refuses it', async () => {
    server.rejectResponseFormat = true;
    const input = writeJsonl([{ url: 'u/1', caption: 'one' }, { url: 'u/2', caption: 'two' }]);
    const summary = await makeStyledData(options(input, { concurrency: 1 }));
    expect(summary).toMatchObject({ made: 2, failed: 0 });
    expect(server.requests.filter((r) => r.body.response_format)).toHaveLength(1);
  });

  it('stops the run on a refused key, without the key in any message', async () => {
    server.unauthorized = true;
    const input = writeJsonl(Array.from({ length: 20 }, (_, i) => ({ url: `u/${i}`, caption: `photo ${i}` })));
    const { logger, text } = captureLogs();
    const summary = await makeStyledData(options(input, { concurrency: 2, logger }));
    expect(summary.made).toBe(0);
    expect(summary.stoppedBecause).toMatch(/401/);
    expect(server.requests.length).toBeLessThan(8);
    expect(summary.stoppedBecause).not.toContain(KEY);
    expect(text()).not.toContain(KEY);
  });

  it('stops the run when the account has no balance (402) or no quota (429 insufficient_quota), without retrying', async () => {
    for (const tag of ['no-balance', 'no-quota']) {
      server.requests.length = 0;
      const input = writeJsonl(Array.from({ length: 20 }, (_, i) => ({ url: `u/${i}`, caption: `photo ${i} [${tag}]` })));
      const summary = await makeStyledData(options(input, { concurrency: 2 }));
      expect(summary.made).toBe(0);
      expect(summary.stoppedBecause).toMatch(tag === 'no-balance' ? /HTTP 402: Insufficient Balance.*balance or quota/ : /HTTP 429: .*quota/);
      expect(server.requests.length).toBeLessThan(8);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('stops promptly when cancelled, keeping the rows already made', async () => {
    const input = writeJsonl([
      { url: 'u/first', caption: 'first' },
      ...Array.from({ length: 10 }, (_, i) => ({ url: `u/hang-${i}`, caption: `hang ${i} [hang-always]` })),
    ]);
    const controller = new AbortController();
    const started = Date.now();
    const run = makeStyledData(options(input, { concurrency: 1, signal: controller.signal, api: { baseUrl: server.baseUrl, apiKey: KEY, model: 'm', timeoutMs: 60_000 } }));
    while (!server.requests.some((r) => r.tag === 'hang-always')) await new Promise((r) => setTimeout(r, 10));
    controller.abort();
    const summary = await run;
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(summary).toMatchObject({ made: 1, failed: 0, stoppedBecause: 'cancelled' });
    expect(outputRows(summary.output).map((r) => r.url)).toEqual(['u/first']);
  });

  it('takes the key from VISTYLE_DATA_API_KEY, then DEEPSEEK_API_KEY, then OPENAI_API_KEY', () => {
    expect(resolveDataApiConfig({}, { OPENAI_API_KEY: 'o-key-123', DEEPSEEK_API_KEY: 'd-key-123' }).apiKey).toBe('d-key-123');
    expect(resolveDataApiConfig({}, { OPENAI_API_KEY: 'o-key-123', VISTYLE_DATA_API_KEY: 'v-key-123' }).apiKey).toBe('v-key-123');
    expect(resolveDataApiConfig({}, { DEEPSEEK_API_KEY: 'd-key-123' })).toMatchObject({ apiKey: 'd-key-123', baseUrl: 'https://api.deepseek.com', model: 'deepseek-chat' });
    const fallback = resolveDataApiConfig({ apiBase: 'https://api.openai.com/v1', apiModel: 'gpt-4o-mini' }, { OPENAI_API_KEY: 'o-key-123' });
    expect(fallback).toMatchObject({ apiKey: 'o-key-123', baseUrl: 'https://api.openai.com/v1', model: 'gpt-4o-mini' });
    expect(resolveDataApiConfig({}, { OPENAI_API_KEY: 'o-key-123', VISTYLE_DATA_API_BASE: 'http://127.0.0.1:8000/v1' }).apiKey).toBe('o-key-123');
    // an OpenAI key is never sent to the default (DeepSeek) API
    expect(() => resolveDataApiConfig({}, { OPENAI_API_KEY: 'o-key-123' })).toThrow(/OPENAI_API_KEY.*--api-base/);
    expect(() => resolveDataApiConfig({}, {})).toThrow(/VISTYLE_DATA_API_KEY/);
    expect(() => resolveDataApiConfig({ apiBase: 'ftp://x' }, { OPENAI_API_KEY: 'k-123456' })).toThrow(/api-base/);
  });
});
