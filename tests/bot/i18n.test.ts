import { describe, expect, it } from 'vitest';
import { errorMessage, languageFromCode, t } from '../../src/bot/i18n.js';
import { sniffImage } from '../../src/bot/image-input.js';
import type { ErrorCode } from '../../src/errors.js';
import { PNG_BYTES } from './support/harness.js';

const USER_FACING: ErrorCode[] = [
  'IMAGE_UNSUPPORTED', 'IMAGE_CORRUPT', 'IMAGE_TOO_LARGE', 'IMAGE_MISSING', 'QUESTION_EMPTY', 'PROMPT_TOO_LONG',
  'ENGINE_CRASHED', 'ENGINE_BUSY', 'CANCELLED', 'TIMEOUT', 'RATE_LIMITED', 'QUEUE_FULL', 'NOT_ALLOWED',
  'SHUTTING_DOWN', 'STYLE_UNKNOWN', 'NETWORK',
];
const CJK = /[\u3400-\u9fff]/;

describe('i18n', () => {
  it('maps platform language codes to zh or en', () => {
    expect(languageFromCode('zh-hans')).toBe('zh');
    expect(languageFromCode('zh-TW')).toBe('zh');
    expect(languageFromCode('zh_CN')).toBe('zh');
    expect(languageFromCode('en-GB')).toBe('en');
    expect(languageFromCode('de')).toBeUndefined();
    expect(languageFromCode(undefined)).toBeUndefined();
  });

  it('has a distinct, polite message for every user-facing error code in both languages', () => {
    const seen = new Set<string>();
    for (const code of USER_FACING) {
      const en = errorMessage('en', code, { limit: '20 MB', waiting: 3, name: 'x', available: 'a, b', seconds: 5 });
      const zh = errorMessage('zh', code, { limit: '20 MB', waiting: 3, name: 'x', available: 'a, b', seconds: 5 });
      expect(en).not.toMatch(CJK);
      expect(zh).toMatch(CJK);
      expect(en).not.toMatch(/\{\w+\}/); // every placeholder filled
      expect(zh).not.toMatch(/\{\w+\}/);
      if (code !== 'CANCELLED' && code !== 'IMAGE_MISSING' && code !== 'IMAGE_UNSUPPORTED') expect(seen.has(en)).toBe(false);
      seen.add(en);
    }
    expect(errorMessage('en', 'IMAGE_TOO_LARGE', { limit: '20 MB' })).toContain('20 MB');
    expect(errorMessage('en', 'INTERNAL')).not.toBe('');
  });

  it('fills parameters and leaves unknown ones visible', () => {
    expect(t('en', 'queued', { position: 3 })).toContain('3');
    expect(t('zh', 'queued', { position: 3 })).toContain('3');
    expect(t('en', 'queued')).toContain('{position}');
  });
});

describe('sniffImage', () => {
  it('recognises image signatures and nothing else', () => {
    expect(sniffImage(PNG_BYTES)).toBe('image/png');
    expect(sniffImage(new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 0]))).toBe('image/jpeg');
    expect(sniffImage(new TextEncoder().encode('GIF89a....'))).toBe('image/gif');
    expect(sniffImage(new TextEncoder().encode('RIFF\0\0\0\0WEBPVP8 '))).toBe('image/webp');
    expect(sniffImage(new TextEncoder().encode('%PDF-1.4'))).toBeUndefined();
    expect(sniffImage(new Uint8Array())).toBeUndefined();
  });
});
