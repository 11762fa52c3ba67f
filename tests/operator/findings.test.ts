// The findings of issue 12 that are about single commands: `vistyle ask ""` is an error (not the
// default question), a 0-byte picture says it is empty, `data make` fails when no row was made.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runVistyle } from '../support/run-cli.js';
import { startFakeChatServer, type FakeChatServer } from '../data/fake-chat-server.js';
import { ROOT } from './support.js';

const PICTURE = join(ROOT, 'tests/fixtures/images/test_image_64x48.png');
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vistyle-findings-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// no model is needed: both are refused before anything loads
const env = { VISTYLE_MODEL_DIR: '/nonexistent/model', VISTYLE_STYLES_FILE: undefined };

describe('vistyle ask refuses what it cannot answer, before loading the model', () => {
  it('an empty question is an error with an example, not the style\'s default question', async () => {
    for (const question of ['', '   ']) {
      const run = await runVistyle(['ask', '--image', PICTURE, question], env);
      expect(run.code).toBe(1);
      expect(run.stdout).toBe('');
      expect(run.stderr).toBe('vistyle: the question is empty: give one, e.g. vistyle ask --image photo.jpg "What is in this picture?"\n');
    }
  });

  it('a 0-byte picture says it is empty', async () => {
    const empty = join(dir, 'empty.jpg');
    writeFileSync(empty, '');
    const run = await runVistyle(['ask', '--image', empty, 'What is it?'], env);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`vistyle: the image ${empty} is empty (0 bytes); give a JPEG, PNG, WebP or GIF file\n`);
    expect(run.stderr).not.toContain('no image was sent');
  });
});

describe('vistyle data make', () => {
  let server: FakeChatServer;
  beforeAll(async () => {
    server = await startFakeChatServer();
  });
  afterAll(() => server.close());

  const make = (rows: string[], out: string) => {
    const input = join(dir, `${out}.input.jsonl`);
    writeFileSync(input, rows.join('\n'));
    return runVistyle(
      ['data', 'make', '--input', input, '--style', 'grumpy', '--out', join(dir, out), '--api-base', server.baseUrl, '--max-attempts', '1', '--no-progress'],
      { VISTYLE_DATA_API_KEY: 'sk-test-key-0123456789', VISTYLE_STYLES_FILE: undefined },
    );
  };

  it('exits 1 when every row failed, with the first failure', async () => {
    const run = await make(['{"url":"u/1","caption":"cats [broken]"}', '{"url":"u/2","caption":"dogs [broken]"}'], 'all-failed.jsonl');
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/made 0, failed 2/);
    expect(run.stderr).toMatch(/^vistyle: every row failed \(2\); nothing was added to .*all-failed\.jsonl \(first failure: line \d+: /m);
  });

  it('exits 1 when no input row is usable; exits 0 when some rows were made', async () => {
    const unusable = await make(['{"url":"u/1"}', 'not json'], 'unusable.jsonl');
    expect(unusable.code).toBe(1);
    expect(unusable.stderr).toContain('vistyle: no usable input rows');
    const some = await make(['{"url":"u/1","caption":"cats [good]"}', '{"url":"u/2","caption":"dogs [broken]"}'], 'some.jsonl');
    expect(some.code, some.stderr).toBe(0);
    expect(some.stderr).toContain('run the same command again to retry the failed rows');
  });
});
