import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { idListMatches, loadConfig, loadEngineConfig } from '../../src/config/config.js';
import { createLogger } from '../../src/log.js';

const base = { VISTYLE_HOME: '/tmp/vistyle-home-test' };

describe('loadConfig', () => {
  it('has sensible defaults and no adapters without tokens', () => {
    const config = loadConfig({ ...base });
    expect(config.telegram).toBeUndefined();
    expect(config.discord).toBeUndefined();
    expect(config.dbPath).toBe('/tmp/vistyle-home-test/vistyle.db');
    expect(config.limits.engineSlots).toBeUndefined(); // the engine's default (4), reported as info.slots
    expect(config.limits.userInFlight).toBe(1);
    expect(config.limits.requestTimeoutMs).toBeGreaterThan(0);
    expect(config.access.allowedUsers).toEqual([]);
    expect(config.metrics).toBeUndefined();
  });

  it('reads adapters, limits, lists and metrics', () => {
    const config = loadConfig({
      ...base,
      TELEGRAM_BOT_TOKEN: '123456:ABCDEF-secret',
      TELEGRAM_API_ROOT: 'http://127.0.0.1:8081',
      TELEGRAM_WEBHOOK_URL: 'https://bot.example.com/hook',
      TELEGRAM_WEBHOOK_SECRET: 'hook_secret-1',
      TELEGRAM_WEBHOOK_PORT: '9000',
      DISCORD_TOKEN: 'discord-token-value',
      DISCORD_APPLICATION_ID: '123456789012345678',
      DISCORD_MENTION_MODE: 'on',
      VISTYLE_ENGINE_SLOTS: '2',
      VISTYLE_USER_PER_MINUTE: '3',
      VISTYLE_REQUEST_TIMEOUT_SECONDS: '30',
      VISTYLE_ALLOWED_USERS: '1, telegram:2  discord:3',
      VISTYLE_ADMIN_IDS: '99',
      VISTYLE_METRICS_PORT: '9464',
      VISTYLE_DB_PATH: '/data/x.db',
    });
    expect(config.telegram).toEqual({
      token: '123456:ABCDEF-secret',
      apiRoot: 'http://127.0.0.1:8081',
      webhook: { url: 'https://bot.example.com/hook', secretToken: 'hook_secret-1', port: 9000, host: '0.0.0.0' },
    });
    expect(config.discord).toMatchObject({ token: 'discord-token-value', applicationId: '123456789012345678', mentionMode: true });
    expect(config.limits).toMatchObject({ engineSlots: 2, userPerMinute: 3, requestTimeoutMs: 30_000 });
    expect(config.access.allowedUsers).toEqual(['1', 'telegram:2', 'discord:3']);
    expect(config.metrics).toEqual({ port: 9464, host: '127.0.0.1' });
    expect(config.dbPath).toBe('/data/x.db');
  });

  it('names the variable in the error for an invalid value', () => {
    expect(() => loadConfig({ ...base, VISTYLE_ENGINE_SLOTS: 'two' })).toThrow(/VISTYLE_ENGINE_SLOTS/);
    expect(() => loadConfig({ ...base, VISTYLE_ENGINE_SLOTS: '0' })).toThrow(/VISTYLE_ENGINE_SLOTS: expected at least 1/);
    expect(() => loadConfig({ ...base, VISTYLE_PROVIDER: 'tpu' })).toThrow(/VISTYLE_PROVIDER: expected cpu or cuda/);
    expect(() => loadConfig({ ...base, TELEGRAM_API_ROOT: 'not a url' })).toThrow(/TELEGRAM_API_ROOT/);
    expect(() => loadConfig({ ...base, DISCORD_MENTION_MODE: 'maybe' })).toThrow(/DISCORD_MENTION_MODE/);
    try {
      loadConfig({ ...base, VISTYLE_MAX_QUEUE: '-5' });
      expect.unreachable();
    } catch (error) {
      expect(error).toMatchObject({ code: 'CONFIG_INVALID' });
    }
  });

  it('requires the companion variables of webhook mode and Discord', () => {
    expect(() => loadConfig({ ...base, TELEGRAM_BOT_TOKEN: 'tok-123456', TELEGRAM_WEBHOOK_URL: 'https://x.example/h' })).toThrow(/TELEGRAM_WEBHOOK_SECRET/);
    expect(() => loadConfig({ ...base, DISCORD_TOKEN: 'discord-token-value' })).toThrow(/DISCORD_APPLICATION_ID/);
  });

  it('never echoes a secret in an error, and registers tokens for log redaction', () => {
    const token = 'tg-token-with-bad value';
    let message = '';
    try {
      loadConfig({ ...base, TELEGRAM_BOT_TOKEN: 'abcdef:valid-token-xyz', TELEGRAM_WEBHOOK_URL: 'https://x.example/h', TELEGRAM_WEBHOOK_SECRET: token });
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/TELEGRAM_WEBHOOK_SECRET/);
    expect(message).not.toContain(token);

    let out = '';
    const sink = new Writable({ write(chunk, _enc, done) { out += String(chunk); done(); } });
    const logger = createLogger({ destination: sink, level: 'info' });
    logger.info({ url: 'https://api.telegram.org/botabcdef:valid-token-xyz/getMe' }, 'calling');
    expect(out).not.toContain('abcdef:valid-token-xyz');
    expect(out).toContain('[redacted]');
  });

  it('treats empty values as unset', () => {
    const config = loadConfig({ ...base, TELEGRAM_BOT_TOKEN: '', VISTYLE_ENGINE_SLOTS: '  ' });
    expect(config.telegram).toBeUndefined();
    expect(config.limits.engineSlots).toBeUndefined();
  });
});

describe('the engine settings', () => {
  it('come from the same rules in loadConfig and loadEngineConfig (what `vistyle ask` reads)', () => {
    const env = { ...base, VISTYLE_PROVIDER: 'cpu', VISTYLE_THREADS: '2', VISTYLE_MAX_CONTEXT_TOKENS: '4096', VISTYLE_ENGINE_SLOTS: '3', VISTYLE_PREFIX_CACHE_MB: '0', VISTYLE_MAX_MEMORY_MB: '3000' };
    const engine = loadEngineConfig(env);
    expect(engine).toEqual({ provider: 'cpu', deviceId: 0, threads: 2, maxContextTokens: 4096, slots: 3, prefixCacheBytes: 0, maxMemoryBytes: 3000 * 2 ** 20 });
    const { dir, ...model } = loadConfig(env).model;
    expect(dir).toBeTruthy();
    const { slots, ...rest } = engine;
    expect(model).toEqual(rest);
    expect(loadConfig(env).limits.engineSlots).toBe(slots);
    // a bad bot variable does not stop `ask`; a bad engine variable is named
    expect(loadEngineConfig({ ...env, VISTYLE_MAX_QUEUE: 'lots' }).threads).toBe(2);
    expect(() => loadEngineConfig({ ...env, VISTYLE_THREADS: 'many' })).toThrow(/VISTYLE_THREADS: expected a number \(got "many"\)/);
    expect(() => loadEngineConfig({ ...env, VISTYLE_MAX_MEMORY_MB: '10' })).toThrow(/VISTYLE_MAX_MEMORY_MB: expected at least 64/);
  });
});

describe('idListMatches', () => {
  it('matches bare ids on any platform and qualified ids on theirs only', () => {
    expect(idListMatches(['1', 'telegram:2'], 'discord', '1')).toBe(true);
    expect(idListMatches(['1', 'telegram:2'], 'telegram', '2')).toBe(true);
    expect(idListMatches(['1', 'telegram:2'], 'discord', '2')).toBe(false);
    expect(idListMatches([], 'discord', '2')).toBe(false);
  });
});
