// The web page in real headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core; no
// browser download) against `vistyle serve` with the tiny model: load the page, choose grumpy,
// upload a photo (a seed photo from ../shared when there is one, else a fixture), watch the answer
// stream and finish, cancel a second request; with the keyboard only; on a phone-width screen; in
// Chinese from the browser's language; asking for a key when the server needs one. Screenshots go
// to test-artifacts/ (gitignored).
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type FileChooser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serve, type Served } from './support/serve.js';
import { recordingEngineFactory, type RecordingEngine } from './support/recording-engine.js';
import { messageText } from '../../src/bot/stateless.js';

const CHROMIUM = '/usr/bin/chromium';
const haveChromium = existsSync(CHROMIUM);
if (!haveChromium && process.env.CI === 'true') throw new Error(`${CHROMIUM} is required under CI (apt-get install chromium; see .ci/run)`);
if (!haveChromium) console.warn(`skipping the web page tests: ${CHROMIUM} is missing (apt-get install chromium)`);

const ARTIFACTS = resolve('test-artifacts');
const SEED_PHOTO = resolve('../shared/seed-data/test0.jpg');
const PHOTO = existsSync(SEED_PHOTO) ? SEED_PHOTO : resolve('tests/fixtures/images/test_image_64x48.png');

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

async function browser(options: { locale?: string; viewport?: { width: number; height: number } } = {}): Promise<{ context: BrowserContext; page: Page; close: () => Promise<void> }> {
  const profile = mkdtempSync(join(tmpdir(), 'vistyle-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    locale: options.locale ?? 'en-US',
    viewport: options.viewport ?? { width: 1100, height: 900 },
    timeout: 60_000,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  // The page must load nothing from elsewhere.
  page.on('request', (request) => {
    if (!request.url().startsWith('http://127.0.0.1:') && !request.url().startsWith('data:') && !request.url().startsWith('blob:')) {
      throw new Error(`the page requested ${request.url()}`);
    }
  });
  return {
    context,
    page,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

const lastAnswer = (page: Page) => page.locator('.turn.assistant').last();

describe.skipIf(!haveChromium)('the web page', () => {
  let served: Served;
  let engine: RecordingEngine;

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    const recording = recordingEngineFactory();
    served = await serve({ VISTYLE_USER_IN_FLIGHT: '2', VISTYLE_USER_PER_MINUTE: '0' }, { engineFactory: recording.factory });
    engine = recording.holder.engine!;
  });
  afterAll(() => served?.stop());

  it('asks grumpy about a photo, streams the answer, asks a follow-up, and cancels a request', async () => {
    const { page, close } = await browser();
    try {
      await page.goto(`${served.url}/`);
      await page.getByLabel(/Grumpy/).check();
      await expect.poll(() => page.locator('.style-option', { hasText: 'Grumpy' }).textContent()).toContain('Sample:');
      await page.setInputFiles('#file-input', PHOTO);
      await expect.poll(() => page.locator('#thumbs img').count()).toBe(1);
      await page.fill('#question', 'What is in this picture?');
      await page.click('#ask');

      // streamed text appears while it is still answering, then the answer finishes
      await expect.poll(async () => ((await lastAnswer(page).getAttribute('aria-busy')) === 'true' ? ((await lastAnswer(page).locator('.text').textContent()) ?? '') : 'done'), { timeout: 60_000, interval: 20 }).not.toBe('');
      await expect.poll(() => page.locator('#status').textContent(), { timeout: 60_000 }).toBe('Done.');
      const first = await engine.calls.at(-1)!.result;
      expect(first.finishReason).not.toBe('cancelled');
      expect(await lastAnswer(page).locator('.text').textContent()).toBe(first.text);
      expect(served.logs()).toMatch(/"style":"grumpy","outcome":"answered"/);
      await page.screenshot({ path: join(ARTIFACTS, 'page-answered.png'), fullPage: true });

      // a follow-up continues the conversation: the picture and the first answer go along
      await page.fill('#question', 'And what colour is it?');
      await page.keyboard.press('Enter'); // the question box has the focus after an answer
      await expect.poll(() => page.locator('#status').textContent(), { timeout: 60_000 }).toBe('Done.');
      const followUp = engine.calls.at(-1)!.request;
      expect(followUp.messages.filter((m) => m.role === 'user').map(messageText).slice(-2)).toEqual(['What is in this picture?', 'And what colour is it?']);
      expect(followUp.messages.find((m) => m.role === 'assistant' && m.content === first.text)).toBeDefined();
      expect(followUp.images).toHaveLength(1);

      // a third request, cancelled while it is in flight: held at the engine's door, because the
      // tiny model can finish a whole answer between two steps of a click under CI load
      const calls = engine.calls.length;
      const hold = engine.holdNext();
      await page.fill('#question', 'Tell me more, at length.');
      await page.click('#ask');
      await expect.poll(() => engine.calls.length, { timeout: 30_000, interval: 10 }).toBe(calls + 1);
      expect(await page.locator('#cancel').isVisible()).toBe(true);
      await page.click('#cancel');
      await expect.poll(() => page.locator('#status').textContent(), { timeout: 30_000 }).toBe('Cancelled.');
      const cancelled = await engine.calls.at(-1)!.result;
      expect(cancelled.finishReason).toBe('cancelled');
      expect(cancelled.tokens).toEqual([]);
      hold.release();
      await expect.poll(() => served.app.core.queueSnapshot().inFlight, { timeout: 10_000 }).toBe(0);
      expect(await page.locator('#ask').isDisabled()).toBe(false);
      expect(await page.locator('#cancel').isHidden()).toBe(true);
      await page.screenshot({ path: join(ARTIFACTS, 'page-cancelled.png'), fullPage: true });
    } finally {
      await close();
    }
  });

  it('works with the keyboard alone on a phone-width screen, in Chinese from the browser language', async () => {
    const { page, close } = await browser({ locale: 'zh-CN', viewport: { width: 375, height: 740 } });
    // Listen for the file chooser before anything else: playwright-core turns Chromium's chooser
    // interception on without waiting for it, so a listener added just before the key press can
    // lose the race under load (the chooser then opens uncaught and no event ever comes; seen in CI).
    const chooser = new Promise<FileChooser>((resolve) => page.once('filechooser', resolve));
    try {
      await page.goto(`${served.url}/`);
      await expect.poll(() => page.locator('#ask').textContent()).toBe('提问');
      await expect.poll(() => page.locator('.style-option').count()).toBeGreaterThan(3);
      expect(await page.locator('.style-option', { hasText: '暴躁老哥' }).count()).toBe(1);
      // nothing wider than the screen
      expect(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')).toBe(true);

      // Tab to the style radios, pick the second one with the arrow keys, then on to the question
      await page.keyboard.press('Tab');
      expect(await page.evaluate('document.activeElement.name')).toBe('style');
      await page.keyboard.press('ArrowDown');
      expect(await page.evaluate('document.activeElement.value')).toBe('grumpy');
      // Tab to the picture button; Space opens the file chooser
      await page.keyboard.press('Tab');
      expect(await page.evaluate('document.activeElement?.id')).toBe('file-input');
      await page.keyboard.press('Space');
      const opened = await Promise.race([chooser, new Promise<null>((resolve) => setTimeout(() => resolve(null), 30_000))]);
      expect(opened, 'Space on the focused picture button opens the file chooser').not.toBeNull();
      await opened!.setFiles(PHOTO);
      await expect.poll(() => page.locator('#thumbs img').count()).toBe(1);
      // the picture's remove button, then the question
      await page.keyboard.press('Tab');
      expect(await page.evaluate("document.activeElement?.getAttribute('aria-label')")).toBe('移除第 1 张图片');
      await page.keyboard.press('Tab');
      expect(await page.evaluate('document.activeElement?.id')).toBe('question');
      await page.keyboard.type('这是什么？');
      await page.keyboard.press('Enter');
      await expect.poll(() => page.locator('#status').textContent(), { timeout: 60_000 }).toBe('完成。');
      expect(engine.calls.at(-1)!.request.messages.at(-1)).toEqual({ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: '这是什么？' }] });
      await page.screenshot({ path: join(ARTIFACTS, 'page-phone-zh.png'), fullPage: true });
    } finally {
      await close();
    }
  });
});

describe.skipIf(!haveChromium)('the web page on a server with keys', () => {
  let served: Served;
  const key = 'sk-page-0123456789abcdef';

  beforeAll(async () => {
    served = await serve({ VISTYLE_API_KEYS: `page=${key}` });
  });
  afterAll(() => served?.stop());

  it('asks for the key, then loads the styles with it', async () => {
    const { page, close } = await browser();
    try {
      await page.goto(`${served.url}/`);
      await expect.poll(() => page.locator('#key-dialog').isVisible()).toBe(true);
      await page.fill('#key-input', key);
      await page.keyboard.press('Enter');
      await expect.poll(() => page.locator('.style-option').count()).toBeGreaterThan(3);
      expect(await page.evaluate("localStorage.getItem('vistyle.apiKey')")).toBe(key);
      expect(served.logs()).not.toContain(key);
    } finally {
      await close();
    }
  });
});
