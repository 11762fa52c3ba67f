// Errors caused by a configured value say where the value came from: the environment, or which
// .env file. Unit tests of the bookkeeping, then the CLI as an operator meets it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { loadDotEnv } from '../../src/config/dotenv.js';
import { clearRecordedSources, explainConfiguredValues, sourceOf } from '../../src/config/provenance.js';
import { VistyleError } from '../../src/errors.js';
import { cleanEnv, runIn } from './support.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vistyle-provenance-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => clearRecordedSources());

function envFile(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

describe('where a value came from', () => {
  it('records what the .env file set, and lets the environment win', () => {
    const file = envFile('a.env', 'VISTYLE_PROVIDER=cuda\nVISTYLE_HOME=/from/file\n');
    const env: NodeJS.ProcessEnv = { VISTYLE_ENV_FILE: file, VISTYLE_HOME: '/from/shell' };
    expect(loadDotEnv(env)).toBe(file);
    expect(env.VISTYLE_PROVIDER).toBe('cuda');
    expect(env.VISTYLE_HOME).toBe('/from/shell');
    expect(sourceOf('VISTYLE_PROVIDER', env)).toEqual({ kind: 'file', file });
    expect(sourceOf('VISTYLE_HOME', env)).toEqual({ kind: 'environment' });
    expect(sourceOf('VISTYLE_MODEL_DIR', env)).toBeUndefined();
    // changed after the file was read: no longer the file's value
    env.VISTYLE_PROVIDER = 'cpu';
    expect(sourceOf('VISTYLE_PROVIDER', env)).toEqual({ kind: 'environment' });
  });

  it('a bad value names its variable and its file; a secret is named without its value', () => {
    const file = envFile('b.env', 'VISTYLE_PROVIDER=gpu\nDISCORD_TOKEN=very-secret-discord-token\n');
    const env: NodeJS.ProcessEnv = { VISTYLE_ENV_FILE: file };
    loadDotEnv(env);
    expect(() => loadConfig(env)).toThrow(`VISTYLE_PROVIDER=gpu was set in ${file}`);
    env.VISTYLE_PROVIDER = 'cpu';
    let message = '';
    try {
      loadConfig(env);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toContain('DISCORD_APPLICATION_ID is required with DISCORD_TOKEN');
    expect(message).toContain(`DISCORD_TOKEN was set in ${file}`);
    expect(message).not.toContain('very-secret-discord-token');
  });

  it('a path error is blamed on the variable whose path it is, the most precise one', () => {
    const env = { VISTYLE_HOME: '/srv/vistyle', VISTYLE_MODEL_DIR: '/srv/models/built' };
    const model = explainConfiguredValues(new VistyleError('MODEL_NOT_FOUND', 'no built model at /srv/models/built'), env);
    expect(model.message).toBe('no built model at /srv/models/built (VISTYLE_MODEL_DIR=/srv/models/built was set in the environment)');
    const store = explainConfiguredValues(new VistyleError('STORE_UNAVAILABLE', 'cannot open the database /srv/vistyle/vistyle.db: EACCES'), env);
    expect(store.message).toContain('(VISTYLE_HOME=/srv/vistyle was set in the environment)');
    // once only
    expect(explainConfiguredValues(store, env).message.match(/was set in/g)).toHaveLength(1);
  });

  it('a provider given by a flag is not blamed on VISTYLE_PROVIDER', () => {
    const error = explainConfiguredValues(new VistyleError('PROVIDER_UNAVAILABLE', 'the CUDA execution provider cannot load'), { VISTYLE_PROVIDER: 'cpu' });
    expect(error.message).toBe('the CUDA execution provider cannot load');
  });
});

describe('the CLI names the .env file behind an error', () => {
  it('vistyle ask with VISTYLE_HOME from .env (as the old example set it): the error names the file', async () => {
    const work = mkdtempSync(join(dir, 'cwd-'));
    const picture = join(work, 'photo.png');
    writeFileSync(picture, Buffer.from('89504e470d0a1a0a', 'hex'));
    writeFileSync(join(work, '.env'), 'VISTYLE_HOME=/nonexistent/vistyle-home\n');
    const noModel = await runIn(work, ['ask', '--image', picture, 'What is it?'], cleanEnv());
    expect(noModel.code).toBe(1);
    expect(noModel.stderr).toContain('vistyle: no built model at /nonexistent/vistyle-home/models/');
    expect(noModel.stderr).toContain(`(VISTYLE_HOME=/nonexistent/vistyle-home was set in ${join(work, '.env')})`);

    // the same value from the shell says so
    const fromShell = await runIn(work, ['ask', '--image', picture, 'What is it?'], cleanEnv({ VISTYLE_HOME: '/nonexistent/shell-home' }));
    expect(fromShell.stderr).toContain('(VISTYLE_HOME=/nonexistent/shell-home was set in the environment)');
  });

  it('VISTYLE_PROVIDER=cuda from .env on a machine without CUDA says where it came from and that the CPU needs nothing', async () => {
    const work = mkdtempSync(join(dir, 'cwd-'));
    writeFileSync(join(work, '.env'), 'VISTYLE_PROVIDER=cuda\n');
    // `vistyle demo` loads a model on the configured provider; the CUDA provider is not installed here
    const result = await runIn(work, ['demo'], cleanEnv({ HOME: work }));
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/vistyle: .*CUDA/);
    expect(result.stderr).toContain(`VISTYLE_PROVIDER=cuda was set in ${join(work, '.env')}; without it vistyle runs on the CPU`);
  });
});
