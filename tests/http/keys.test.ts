// API keys: VISTYLE_API_KEYS and the keys file (plain keys or their SHA-256, per-key limits, style
// allow-lists); bad entries are CONFIG_INVALID errors that never show a key; the per-key limiter.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { KeyLimiter } from '../../src/http/key-limits.js';
import { ApiKeys, keyAllowsStyle } from '../../src/http/keys.js';
import { redactSecrets } from '../../src/log.js';

const defaults = { inFlight: 1, perMinute: 6 };
const dir = mkdtempSync(join(tmpdir(), 'vistyle-keys-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function keysFile(text: string): string {
  const file = join(dir, `keys-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, text);
  return file;
}

function loadError(options: Parameters<typeof ApiKeys.load>[0]): Error {
  try {
    ApiKeys.load(options);
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the keys to be refused');
}

describe('API keys', () => {
  it('reads name=key and bare entries from VISTYLE_API_KEYS, with the default limits', () => {
    const keys = ApiKeys.load({ envValue: 'alice=sk-alice-0123456789abcdef, sk-bare-0123456789abcdef', defaults });
    expect(keys.size).toBe(2);
    expect(keys.authenticate('Bearer sk-alice-0123456789abcdef')).toEqual({ name: 'alice', inFlight: 1, perMinute: 6, styles: null });
    expect(keys.authenticate('bearer   sk-bare-0123456789abcdef')?.name).toBe('key-2');
    expect(keys.authenticate('Bearer sk-alice-0123456789abcdeX')).toBeUndefined();
    expect(keys.authenticate('sk-alice-0123456789abcdef')).toBeUndefined();
    expect(keys.authenticate(undefined)).toBeUndefined();
    // registered with the logger's redaction as soon as they are read
    expect(redactSecrets('key sk-alice-0123456789abcdef here')).toBe('key [redacted] here');
  });

  it('reads a keys file with plain keys, SHA-256 keys, limits and allow-lists', () => {
    const secret = 'sk-hashed-0123456789abcdef';
    const file = keysFile(
      [
        'keys:',
        '  - { name: bob, key: sk-bob-0123456789abcdef, inFlight: 3, perMinute: 0, styles: [Grumpy, plain] }',
        `  - { name: carol, sha256: ${createHash('sha256').update(secret).digest('hex')} }`,
      ].join('\n'),
    );
    const keys = ApiKeys.load({ envValue: 'alice=sk-alice-abcdefghijklmnop', file, defaults });
    expect(keys.size).toBe(3);
    const bob = keys.authenticate('Bearer sk-bob-0123456789abcdef')!;
    expect(bob).toEqual({ name: 'bob', inFlight: 3, perMinute: 0, styles: ['grumpy', 'plain'] });
    expect(keyAllowsStyle(bob, 'grumpy')).toBe(true);
    expect(keyAllowsStyle(bob, 'salesman')).toBe(false);
    expect(keys.authenticate(`Bearer ${secret}`)).toEqual({ name: 'carol', ...defaults, styles: null });
  });

  it('refuses bad entries without ever showing a key', () => {
    const short = loadError({ envValue: 'alice=tooshort1', defaults });
    expect(short.message).toMatch(/VISTYLE_API_KEYS: key "alice" is shorter than 16 characters/);
    expect(short.message).not.toContain('tooshort1');

    const twice = loadError({ envValue: 'a=sk-same-0123456789abcdef b=sk-same-0123456789abcdef', defaults });
    expect(twice.message).toMatch(/same key/);
    expect(twice.message).not.toContain('sk-same');

    const both = keysFile('keys:\n  - { name: dave, key: sk-dave-0123456789abcdef, sha256: ' + 'a'.repeat(64) + ' }\n');
    expect(loadError({ file: both, defaults }).message).toMatch(/key "dave" needs exactly one of key and sha256/);

    const badField = keysFile('keys:\n  - { name: erin, key: sk-erin-0123456789abcdef, inflight: 2 }\n');
    const error = loadError({ file: badField, defaults });
    expect(error.message).toMatch(/VISTYLE_API_KEYS_FILE: .*keys\.0/);
    expect(error.message).not.toContain('sk-erin');

    expect(loadError({ file: join(dir, 'missing.yaml'), defaults }).message).toMatch(/cannot read .*missing\.yaml \(ENOENT\)/);
  });
});

describe('per-key limits', () => {
  it('limits requests in flight and per minute, and says when to retry', () => {
    let now = 1_000_000;
    const limiter = new KeyLimiter(() => now);
    const key = { name: 'k', inFlight: 2, perMinute: 3, styles: null };
    const first = limiter.admit(key);
    const second = limiter.admit(key);
    expect(first.ok && second.ok).toBe(true);
    const third = limiter.admit(key);
    expect(third).toMatchObject({ ok: false, reason: 'in-flight', limit: 2 });
    if (first.ok) first.release();
    if (first.ok) first.release(); // releasing twice frees one place only
    expect(limiter.running('k')).toBe(1);
    now += 10_000;
    const fourth = limiter.admit(key);
    expect(fourth.ok).toBe(true);
    if (second.ok) second.release();
    if (fourth.ok) fourth.release();
    const fifth = limiter.admit(key);
    expect(fifth).toMatchObject({ ok: false, reason: 'per-minute', retryAfterMs: 50_000 });
    now += 50_001;
    expect(limiter.admit(key).ok).toBe(true);
  });
});
