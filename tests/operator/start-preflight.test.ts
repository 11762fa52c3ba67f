// `vistyle start` runs the fast checks before loading the model: a token the platform rejects
// ends the start-up before the engine is created; a misspelt variable is logged.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runStart } from '../../src/cli/commands/start.js';
import { startupExitStatus, EXIT } from '../../src/errors.js';
import { FakeTelegram } from '../support/fake-telegram/index.js';

let home: string;
let telegram: FakeTelegram;
beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'vistyle-preflight-'));
  telegram = await FakeTelegram.start();
});
afterAll(async () => {
  await telegram.close();
  rmSync(home, { recursive: true, force: true });
});

describe('vistyle start before the model loads', () => {
  it('a rejected Telegram token fails the start-up with status 78 and the engine is never created', async () => {
    let engineCreated = false;
    let logs = '';
    const logDestination = new Writable({
      write(chunk, _encoding, done) {
        logs += String(chunk);
        done();
      },
    });
    const started = runStart({
      env: {
        TELEGRAM_BOT_TOKEN: '999:a-token-the-fake-does-not-know',
        TELEGRAM_API_ROOT: telegram.apiRoot,
        VISTYLE_HOME: home,
        VISTYLE_LOG_FORMAT: 'json',
        VISTYLE_MAX_QUEU: '5',
      },
      logDestination,
      engineFactory: async () => {
        engineCreated = true;
        throw new Error('the engine must not be created');
      },
    });
    const error = await started.then(() => null, (e: unknown) => e);
    expect((error as Error).message).toMatch(/^Telegram rejected the bot token \(check TELEGRAM_BOT_TOKEN\)/);
    expect(startupExitStatus(error)).toBe(EXIT.CONFIG);
    expect(engineCreated).toBe(false);
    expect(logs).toContain('VISTYLE_MAX_QUEU (set in the environment) is not a vistyle setting and is ignored; did you mean VISTYLE_MAX_QUEUE?');
    expect(logs).not.toContain('a-token-the-fake-does-not-know');
  });
});
