import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../../src/cli/main.js';
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

async function run(args: string[], env: Record<string, string | undefined>): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const saved: Record<string, string | undefined> = {};
  for (const name of ['VISTYLE_DATA_API_KEY', 'DEEPSEEK_API_KEY', 'OPENAI_API_KEY', 'VISTYLE_STYLES_FILE', ...Object.keys(env)]) {
    saved[name] = process.env[name];
    delete process.env[name];
  }
  Object.assign(process.env, Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)));
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    const code = await runCli(['node', 'vistyle', ...args]);
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
    process.exitCode = undefined;
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
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
