import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runVistyle } from '../support/run-cli.js';
import { startFakeChatServer, type FakeChatServer } from './fake-chat-server.js';

const KEY = 'sk-cli-test-key-abcdef123456';
let server: FakeChatServer;
let dir: string;

beforeAll(async () => {
  server = await startFakeChatServer();
  dir = mkdtempSync(join(tmpdir(), 'vistyle-data-cli-'));
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The data API keys and styles file are cleared for every run, then `env` applies. */
function run(args: string[], env: Record<string, string | undefined>) {
  const cleared = { VISTYLE_DATA_API_KEY: undefined, DEEPSEEK_API_KEY: undefined, OPENAI_API_KEY: undefined, VISTYLE_STYLES_FILE: undefined };
  return runVistyle(args, { ...cleared, ...env });
}

describe('vistyle data make / check', () => {
  const input = (): string => {
    const file = join(dir, 'captions.jsonl');
    writeFileSync(file, ['{"url":"u/1","caption":"two cats"}', '{"url":"u/2","caption":"a street"}', '{"url":"u/3","caption":"a bakery"}'].join('\n'));
    return file;
  };

  it('makes rows through the API named by the flags and prints a summary', async () => {
    const out = join(dir, 'cantonese.jsonl');
    const result = await run(
      ['data', 'make', '--input', input(), '--style', 'cantonese', '--out', out, '--api-base', server.baseUrl, '--api-model', 'my-model', '--limit', '2', '--concurrency', '2', '--no-progress', '--json'],
      { DEEPSEEK_API_KEY: KEY },
    );
    expect(result.code, result.stderr).toBe(0);
    const summary = JSON.parse(result.stdout.trim()) as { made: number; usage: { totalTokens: number } };
    expect(summary.made).toBe(2);
    expect(summary.usage.totalTokens).toBe(240);
    expect(server.requests.every((r) => r.body.model === 'my-model' && r.authorization === `Bearer ${KEY}`)).toBe(true);
    expect(server.requests[0]!.body.messages[0]!.content).toContain('广东话');
    const rows = readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { style: string });
    expect(rows.map((r) => r.style)).toEqual(['cantonese', 'cantonese']);

    const check = await run(['data', 'check', out, '--json'], {});
    expect(JSON.parse(check.stdout)).toMatchObject({ samples: 2, images: 2, styles: ['cantonese'] });

    const text = await run(['data', 'make', '--input', input(), '--style', 'cantonese', '--out', out, '--api-base', server.baseUrl, '--no-progress'], { VISTYLE_DATA_API_KEY: KEY });
    expect(text.code).toBe(0);
    expect(text.stderr).toContain('made 1, failed 0, skipped 2');
    expect(text.stderr).not.toContain(KEY);
  });

  it('fails with one line: no key, an unknown style, a refused key', async () => {
    const out = join(dir, 'x.jsonl');
    const noKey = await run(['data', 'make', '--input', input(), '--style', 'grumpy', '--out', out, '--no-progress'], {});
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toMatch(/VISTYLE_DATA_API_KEY.*DEEPSEEK_API_KEY.*OPENAI_API_KEY/);

    const unknown = await run(['data', 'make', '--input', input(), '--style', 'nope', '--out', out, '--no-progress'], { OPENAI_API_KEY: KEY });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('unknown style "nope"');

    server.unauthorized = true;
    try {
      const refused = await run(
        ['data', 'make', '--input', input(), '--style', 'grumpy', '--out', out, '--api-base', server.baseUrl, '--no-progress'],
        { OPENAI_API_KEY: KEY },
      );
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain('401');
      expect(refused.stderr).not.toContain(KEY);
    } finally {
      server.unauthorized = false;
    }
  });
});
