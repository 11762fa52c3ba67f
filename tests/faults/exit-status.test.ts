// `vistyle start` exits with a status that says why a start-up cannot work, so that systemd's
// RestartPreventExitStatus stops retrying what will never work; the unit and docs/deploy.md
// list the same statuses as the code.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT, EXIT_DO_NOT_RETRY, startupExitStatus, VistyleError } from '../../src/errors.js';
import { FakeTelegram } from '../support/fake-telegram/index.js';
import { tinyModel } from '../support/tiny-model.js';
import { runCliProcess } from './support/bot-process.js';

const ROOT = new URL('../../', import.meta.url).pathname;

let home: string;
beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'vistyle-exit-'));
});
afterAll(() => rmSync(home, { recursive: true, force: true }));

describe('vistyle start exit statuses', () => {
  it('66 when the model is missing, with the line naming the folder', async () => {
    const modelDir = join(home, 'no-model-here');
    const { code, stderr } = await runCliProcess(['start'], {
      TELEGRAM_BOT_TOKEN: '123456:not-used-before-the-model',
      TELEGRAM_API_ROOT: 'http://127.0.0.1:9',
      VISTYLE_HOME: home,
      VISTYLE_MODEL_DIR: modelDir,
      VISTYLE_LOG_FORMAT: 'json',
    });
    expect(code).toBe(EXIT.MODEL_MISSING);
    expect(stderr).toContain(`vistyle: no built model at ${modelDir}`);
  });

  it('78 when the platform rejects the token', async () => {
    const fake = await FakeTelegram.start();
    try {
      const { modelDir } = await tinyModel();
      const { code, stderr } = await runCliProcess(['start'], {
        TELEGRAM_BOT_TOKEN: '999999:a-token-the-platform-does-not-know',
        TELEGRAM_API_ROOT: fake.apiRoot,
        VISTYLE_HOME: home,
        VISTYLE_MODEL_DIR: modelDir,
        VISTYLE_THREADS: '1',
        VISTYLE_LOG_FORMAT: 'json',
      });
      expect(code).toBe(EXIT.CONFIG);
      expect(stderr).toContain('vistyle: Telegram rejected the bot token (check TELEGRAM_BOT_TOKEN)');
      expect(stderr).not.toContain('a-token-the-platform-does-not-know');
    } finally {
      await fake.close();
    }
  });

  it('maps each start-up failure to its status', () => {
    const status = (code: ConstructorParameters<typeof VistyleError>[0], details?: Record<string, unknown>) =>
      startupExitStatus(new VistyleError(code, 'x', details ? { details } : undefined));
    expect(status('CONFIG_INVALID')).toBe(78);
    expect(status('PROVIDER_UNAVAILABLE')).toBe(78);
    expect(status('STYLES_INVALID')).toBe(78);
    expect(status('MODEL_NOT_FOUND')).toBe(66);
    expect(status('MODEL_INVALID')).toBe(66);
    expect(status('NETWORK')).toBe(69);
    expect(status('STORE_CORRUPT')).toBe(65);
    expect(status('STORE_UNAVAILABLE', { transient: false })).toBe(73);
    expect(status('STORE_UNAVAILABLE', { transient: true })).toBe(74);
    expect(status('INTERNAL')).toBe(1);
    expect(startupExitStatus(new Error('anything else'))).toBe(1);
  });

  it('the systemd unit does not retry exactly the statuses that cannot work, and docs/deploy.md lists every status', () => {
    const unit = readFileSync(join(ROOT, 'deploy/vistyle.service'), 'utf8');
    const line = unit.split('\n').find((l) => l.startsWith('RestartPreventExitStatus='));
    const statuses = line!.slice('RestartPreventExitStatus='.length).trim().split(/\s+/).map(Number);
    expect(statuses.sort((a, b) => a - b)).toEqual([...EXIT_DO_NOT_RETRY].sort((a, b) => a - b));
    expect(unit).toMatch(/^Restart=on-failure$/m);

    const docs = readFileSync(join(ROOT, 'docs/deploy.md'), 'utf8');
    const table = docs.slice(docs.indexOf('## Exit statuses'), docs.indexOf('## What happens when'));
    for (const value of Object.values(EXIT)) {
      const row = table.split('\n').find((l) => l.startsWith(`| ${value} |`));
      expect(row, `docs/deploy.md has a row for exit status ${value}`).toBeDefined();
      if (value !== 0 && value !== EXIT.FORCED) expect(row).toMatch(EXIT_DO_NOT_RETRY.includes(value) ? /\| no \|$/ : /\| yes \|$/);
    }
  });
});
