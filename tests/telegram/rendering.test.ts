// The Telegram adapter's rendering and resilience, through real telegraf, the fake Bot API and the
// real bot core. The engine here is a scripted one (it streams a given text): these tests need
// answers with known Markdown and known length, which a random tiny model cannot give. What the
// real engine produces is covered by e2e.test.ts.
import { messageText } from '../../src/engine/prompt.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { t } from '../../src/bot/i18n.js';
import { helpText } from '../../src/bot/commands.js';
import type { Engine } from '../../src/engine/types.js';
import { ScriptedEngine } from '../support/scripted-engine.js';
import { FakeTelegram, type FakeTelegramOptions } from '../support/fake-telegram/index.js';
import { expectPaced, LogCapture, settledReplies, sleep, startBot, tempDir, type BotUnderTest, type StartOptions } from './harness.js';

const PNG = readFileSync(new URL('../fixtures/images/test_image_64x48.png', import.meta.url));

const temp = tempDir();
let fake: FakeTelegram | undefined;
const bots: BotUnderTest[] = [];
let counter = 0;

afterEach(async () => {
  for (const bot of bots.splice(0)) await bot.stop();
  await fake?.close();
  fake = undefined;
});
afterAll(() => temp.remove());

async function setUp(engine: Engine, options: { fake?: FakeTelegramOptions; logs?: LogCapture } & Partial<Pick<StartOptions, 'webhook' | 'env' | 'tuning'>> = {}) {
  fake = await FakeTelegram.start(options.fake);
  const startOptions: StartOptions = { fake, engine, dbPath: join(temp.dir, `r${counter++}.db`) };
  if (options.logs) startOptions.logs = options.logs;
  if (options.tuning) startOptions.tuning = options.tuning;
  if (options.webhook) startOptions.webhook = options.webhook;
  if (options.env) startOptions.env = options.env;
  const bot = await startBot(startOptions);
  bots.push(bot);
  return { fake, bot };
}

const MARKDOWN_ANSWER = 'It is a **cat** on a *red* sofa.\n\nIt looks at `<the camera>` & waits.';
const MARKDOWN_SEEN = 'It is a cat on a red sofa.\n\nIt looks at <the camera> & waits.';

describe('Telegram rendering', () => {
  it('formats the final answer (HTML entities) but streams plain text', async () => {
    const { fake } = await setUp(new ScriptedEngine(() => MARKDOWN_ANSWER, 400, 12), { fake: { drafts: false } });
    const alice = fake.user(2001);
    const photo = await fake.sendPhoto(alice, PNG, { caption: 'what?' });
    const [reply] = await settledReplies(fake, alice.id, photo.message_id);
    expect(reply!.text).toBe(MARKDOWN_SEEN);
    expect(reply!.parseMode).toBe('HTML');
    expect(reply!.entities.map((e) => [e.type, reply!.text.slice(e.offset, e.offset + e.length)])).toEqual([
      ['bold', 'cat'],
      ['italic', 'red'],
      ['code', '<the camera>'],
    ]);
    const streamed = fake.callsTo('editMessageText', alice.id).filter((c) => c.ok && c.params.parse_mode === undefined && c.params.reply_markup);
    expect(streamed.length).toBeGreaterThanOrEqual(1);
    expect(streamed.some((c) => String(c.params.text).includes('**cat**'))).toBe(true);
  });

  it('falls back to plain text when Telegram rejects the entities', async () => {
    const { fake } = await setUp(new ScriptedEngine(() => MARKDOWN_ANSWER, 5), { fake: { drafts: false } });
    fake.failNext('editMessageText', { error_code: 400, description: "Bad Request: can't parse entities: Unsupported start tag \"x\" at byte offset 3" }, {
      when: (p) => p.parse_mode === 'HTML',
    });
    const alice = fake.user(2002);
    const photo = await fake.sendPhoto(alice, PNG, { caption: 'what?' });
    const [reply] = await settledReplies(fake, alice.id, photo.message_id);
    expect(reply!.text).toBe(MARKDOWN_ANSWER);
    expect(reply!.parseMode).toBeUndefined();
  });

  it('splits a long answer into messages of at most 4096 characters at paragraph boundaries', async () => {
    const paragraphs = Array.from({ length: 12 }, (_, i) => `Paragraph ${i + 1}. ${'word '.repeat(180).trim()} **end ${i + 1}**.`);
    const answer = paragraphs.join('\n\n');
    expect(answer.length).toBeGreaterThan(2 * 4096);
    const { fake } = await setUp(new ScriptedEngine(() => answer, 1, 2000));
    const alice = fake.user(2003);
    const photo = await fake.sendPhoto(alice, PNG, { caption: 'tell me everything' });
    const replies = await fake.waitFor(() => {
      const messages = fake!.visibleMessagesIn(alice.id).filter((m) => m.replyToMessageId === photo.message_id && !m.replyMarkup);
      return messages.map((m) => m.text).join('\n\n').includes('end 12') ? messages : undefined;
    });
    expect(replies.length).toBeGreaterThanOrEqual(3);
    for (const message of replies) {
      expect(message.text.length).toBeLessThanOrEqual(4096);
      expect(message.text).toMatch(/^Paragraph \d+\./); // every message starts at a paragraph
      expect(message.text).toMatch(/end \d+\.$/);
    }
    const seen = replies.map((m) => m.text).join('\n\n');
    expect(seen).toBe(answer.replace(/\*\*/g, ''));
    // the messages went out at most one a second
    const sends = fake.callsTo('sendMessage', alice.id).filter((c) => c.ok);
    expectPaced(sends.map((c) => c.at), 1000);
  });

  it('waits out a 429 on the final message and still delivers it', async () => {
    const { fake } = await setUp(new ScriptedEngine(() => 'Short and final.', 1, 100), { fake: { drafts: false } });
    fake.failNext('editMessageText', { error_code: 429, description: 'Too Many Requests: retry after 3', retry_after: 3 }, {
      when: (p) => p.text === 'Short and final.',
    });
    const alice = fake.user(2004);
    const photo = await fake.sendPhoto(alice, PNG);
    const [reply] = await settledReplies(fake, alice.id, photo.message_id);
    expect(reply!.text).toBe('Short and final.');
    const finals = fake.callsTo('editMessageText', alice.id).filter((c) => c.params.text === 'Short and final.');
    expect(finals.map((c) => c.ok)).toEqual([false, true]);
    expect(finals[1]!.at - finals[0]!.at).toBeGreaterThanOrEqual(3000);
    expect(fake.floodViolations).toEqual([]);
  });
});

describe('Telegram answers the model should not have written', () => {
  it('strips control characters from streamed and final text, and sends a polite text for a blank answer', async () => {
    const dirty = 'A \u0000cat\u0007 on a\r\nsofa.\u001b[0m Nice\u009b.';
    const engine = new ScriptedEngine((request) => (messageText(request.messages.at(-1)!) === 'blank?' ? '\u0000\u0001 \n\u0007' : dirty), 150, 6);
    const { fake } = await setUp(engine, { fake: { drafts: false } });
    const alice = fake.user(2061);
    const photo = await fake.sendPhoto(alice, PNG, { caption: 'what?' });
    const [reply] = await settledReplies(fake, alice.id, photo.message_id);
    expect(reply!.text).toBe('A cat on a\nsofa.[0m Nice.');
    // no text Telegram was sent, streamed or final, carries a control character
    const texts = fake.calls.filter((c) => c.method === 'editMessageText' || c.method === 'sendMessage').map((c) => String(c.params.text));
    expect(texts.length).toBeGreaterThan(1);
    for (const text of texts) expect(text).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);

    const blank = await fake.sendPhoto(alice, PNG, { caption: 'blank?' });
    const [blankReply] = await settledReplies(fake, alice.id, blank.message_id);
    expect(blankReply!.text).toBe(t('en', 'emptyAnswer'));
  });
});

describe('Telegram replies', () => {
  it('still delivers the answer when the user deleted the message it replies to (allow_sending_without_reply)', async () => {
    const engine = new ScriptedEngine(() => 'word '.repeat(60).trim(), 100, 10);
    const { fake } = await setUp(engine);
    const alice = fake.user(2071);
    const photo = await fake.sendPhoto(alice, PNG, { caption: 'quick, delete it' });
    await fake.waitFor(() => fake!.callsTo('sendMessageDraft', alice.id).some((c) => c.ok));
    fake.deleteUserMessage(alice.id, photo.message_id);
    const answer = await fake.waitFor(() => fake!.visibleMessagesIn(alice.id).find((m) => m.text === 'word '.repeat(60).trim()));
    expect(answer.replyToMessageId).toBeUndefined();
    const finalSend = fake.callsTo('sendMessage', alice.id).find((c) => c.params.text === answer.text)!;
    expect(finalSend.ok).toBe(true);
    expect(finalSend.params.reply_parameters).toMatchObject({ message_id: photo.message_id, allow_sending_without_reply: true });
    // the streamed draft was only a preview: the answer was sent as a message as well
    expect(fake.callsTo('sendMessageDraft', alice.id).filter((c) => c.ok).length).toBeGreaterThan(0);
  });
});

describe('Telegram pictures', () => {
  it('names the Bot API’s 20 MB download limit when the configured limit is higher', async () => {
    const engine = new ScriptedEngine(() => 'never');
    const { fake } = await setUp(engine, { env: { VISTYLE_MAX_IMAGE_BYTES: String(50 * 1024 * 1024) } });
    const alice = fake.user(2051);
    const big = Buffer.concat([PNG, Buffer.alloc(25 * 1024 * 1024)]);
    const document = fake.sendDocument(alice, big, { fileName: 'big.png', mimeType: 'image/png' });
    const [reply] = await settledReplies(fake, alice.id, document.message_id);
    expect(reply!.text).toBe(t('en', 'error.IMAGE_TOO_LARGE', { limit: '20 MB' }));
    expect(fake.callsTo('getFile')).toEqual([]); // refused from the size Telegram reported
    expect(engine.requests).toEqual([]);
  });
});

describe('Telegram while the model writes', () => {
  it('re-sends typing on its interval until the answer is there, and never after', async () => {
    const { fake } = await setUp(new ScriptedEngine(() => 'word '.repeat(40).trim(), 100, 10), { tuning: { typingIntervalMs: 300 } });
    const alice = fake.user(2041);
    const photo = await fake.sendPhoto(alice, PNG, { caption: 'slow please' });
    const replies = await settledReplies(fake, alice.id, photo.message_id);
    const typing = fake.callsTo('sendChatAction', alice.id);
    expect(typing.every((c) => c.params.action === 'typing')).toBe(true);
    expect(typing.length).toBeGreaterThanOrEqual(4); // ~2 s of writing, every 300 ms
    expectPaced(typing.map((c) => c.at), 300, 100);
    const answered = fake.callsTo('sendMessage', alice.id).find((c) => c.ok && (c.result as { message_id: number }).message_id === replies.at(-1)!.messageId)!;
    await sleep(700);
    expect(fake.callsTo('sendChatAction', alice.id).filter((c) => c.at > answered.at + 50)).toEqual([]);
  });

  it('stops a running answer from its Cancel button', async () => {
    const engine = new ScriptedEngine(() => 'word '.repeat(200).trim(), 100, 10);
    const { fake } = await setUp(engine, { fake: { drafts: false } });
    const alice = fake.user(2042);
    const photo = await fake.sendPhoto(alice, PNG, { caption: 'long answer' });
    // wait until some of the answer has been shown, then press Cancel under it
    const status = await fake.waitFor(() => fake!.visibleMessagesIn(alice.id).find((m) => m.text.startsWith('word') && m.replyMarkup));
    fake.pressButton(alice, status, status.replyMarkup!.inline_keyboard[0]![0]!.callback_data!);
    const [reply] = await settledReplies(fake, alice.id, photo.message_id);
    expect(reply!.text).toBe(t('en', 'error.CANCELLED'));
    expect(fake.callsTo('answerCallbackQuery')[0]!.params.text).toBe(t('en', 'cancelDone'));
  });
});

describe('Telegram resilience', () => {
  it('logs platform errors as structured lines without the token, and keeps serving others', async () => {
    const logs = new LogCapture('debug');
    const { fake } = await setUp(new ScriptedEngine(() => 'An answer.', 1, 100), { logs });
    const [alice, bob] = [fake.user(2011), fake.user(2012)];
    fake.blockChat(alice.id);
    const blocked = await fake.sendPhoto(alice, PNG);
    await fake.waitFor(() => logs.parsed().some((line) => line.errorCode === 403));
    // a dropped connection and a 502 on bob's replies are retried
    fake.failNext('sendMessage', 'network');
    fake.failNext('editMessageText', { error_code: 502, description: 'Bad Gateway' });
    const photo = await fake.sendPhoto(bob, PNG, { caption: 'still there?' });
    const [reply] = await settledReplies(fake, bob.id, photo.message_id);
    expect(reply!.text).toBe('An answer.');
    expect(fake.visibleMessagesIn(alice.id)).toEqual([]);
    expect(blocked.message_id).toBeGreaterThan(0);
    const forbidden = logs.parsed().find((line) => line.errorCode === 403)!;
    expect(forbidden).toMatchObject({ adapter: 'telegram', description: 'Forbidden: bot was blocked by the user', chatId: alice.id });
    const all = logs.lines.join('\n');
    expect(all).not.toContain(fake.token);
    expect(all).not.toContain(fake.token.split(':')[1]!);
  });

  it('keeps streaming drafts to others after one user blocked the bot', async () => {
    const { fake } = await setUp(new ScriptedEngine(() => 'word '.repeat(150).trim(), 100, 20));
    const [alice, bob] = [fake.user(2014), fake.user(2015)];
    fake.blockChat(alice.id);
    await fake.sendPhoto(alice, PNG, { caption: 'hello?' });
    await fake.waitFor(() => fake!.callsTo('sendMessageDraft', alice.id).find((c) => c.error?.error_code === 403));
    const photo = await fake.sendPhoto(bob, PNG, { caption: 'and me?' });
    await settledReplies(fake, bob.id, photo.message_id);
    expect(fake.callsTo('sendMessageDraft', bob.id).filter((c) => c.ok).length).toBeGreaterThan(0);
    expect(fake.callsTo('editMessageText', bob.id).filter((c) => c.params.text !== t('en', 'thinking'))).toEqual([]);
  });

  it('logs a failure while handling an album (it runs from a timer) and keeps serving', async () => {
    const logs = new LogCapture();
    const { fake, bot } = await setUp(new ScriptedEngine(() => 'Still here.', 1, 100), { logs, tuning: { albumWindowMs: 100 } });
    const alice = fake.user(2013);
    // the first album meets a broken core (a bug, or a store that throws)
    const ask = bot.core.ask.bind(bot.core);
    let failures = 0;
    bot.core.ask = (...args: Parameters<typeof ask>) => {
      if (failures++ === 0) throw new Error('database is locked');
      return ask(...args);
    };
    await fake.sendPhoto(alice, PNG, { mediaGroupId: 'broken', caption: 'two?' });
    await fake.sendPhoto(alice, PNG, { mediaGroupId: 'broken' });
    await fake.waitFor(() => logs.parsed().find((line) => line.msg === 'album handling failed'));
    const photo = await fake.sendPhoto(alice, PNG, { caption: 'and now?' });
    const [reply] = await settledReplies(fake, alice.id, photo.message_id);
    expect(reply!.text).toBe('Still here.');
  });

  it('runs as a webhook: registers the URL with its secret, answers updates, refuses a wrong secret', async () => {
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const webhook = { url: `http://127.0.0.1:${port}/telegram/hook`, secretToken: 'hook_Secret-42', port, host: '127.0.0.1' };
    const { fake } = await setUp(new ScriptedEngine(() => 'Via webhook.', 1, 100), { webhook });
    const set = fake.callsTo('setWebhook')[0]!;
    expect(set.params).toMatchObject({ url: webhook.url, secret_token: webhook.secretToken });
    expect(fake.callsTo('getUpdates')).toEqual([]);
    const alice = fake.user(2021);
    const photo = await fake.sendPhoto(alice, PNG, { caption: 'hi' });
    const [reply] = await settledReplies(fake, alice.id, photo.message_id);
    expect(reply!.text).toBe('Via webhook.');
    const forged = await fake.postToWebhook(
      { message: { message_id: 99, date: 0, chat: { id: alice.id, type: 'private' }, from: alice, text: '/help' } },
      'wrong-secret',
    );
    expect(forged).toBe(403);
    await sleep(300);
    expect(fake.visibleMessagesIn(alice.id).some((m) => m.text === helpText('en', { platform: 'telegram', admin: false }))).toBe(false);
  });

  it('answers /help, /styles, /reset and refuses /queue to non-admins', async () => {
    const { fake } = await setUp(new ScriptedEngine(() => 'ok'), { env: { VISTYLE_ADMIN_IDS: 'telegram:2032' } });
    const [user, admin] = [fake.user(2031, { language_code: 'zh-CN' }), fake.user(2032)];
    const help = fake.sendCommand(user, '/start');
    expect((await settledReplies(fake, user.id, help.message_id))[0]!.text).toBe(helpText('zh', { platform: 'telegram', admin: false }));
    const styles = fake.sendCommand(user, '/styles');
    const listed = (await settledReplies(fake, user.id, styles.message_id)).map((m) => m.text).join('\n');
    for (const id of ['plain', 'grumpy', 'cantonese', 'salesman']) expect(listed).toContain(id);
    const queue = fake.sendCommand(user, '/queue');
    expect((await settledReplies(fake, user.id, queue.message_id))[0]!.text).toBe(t('zh', 'adminOnly'));
    const adminQueue = fake.sendCommand(admin, '/queue');
    expect((await settledReplies(fake, admin.id, adminQueue.message_id))[0]!.text).toMatch(/^Queue: 0 waiting/);
    const reset = fake.sendCommand(user, '/reset');
    expect((await settledReplies(fake, user.id, reset.message_id))[0]!.text).toBe(t('zh', 'resetNothing'));
    const text = fake.sendText(user, 'what is this?');
    expect((await settledReplies(fake, user.id, text.message_id))[0]!.text).toBe(t('zh', 'error.IMAGE_MISSING'));

    // /language (from the core's command table, in the menu and the help) switches the language
    const english = fake.sendCommand(user, '/language en');
    expect((await settledReplies(fake, user.id, english.message_id))[0]!.text).toBe(t('en', 'languageSet'));
    const helpAgain = fake.sendCommand(user, '/help');
    const helpShown = (await settledReplies(fake, user.id, helpAgain.message_id))[0]!.text;
    expect(helpShown).toBe(helpText('en', { platform: 'telegram', admin: false }));
    expect(helpShown).toMatch(/^\/language \[zh\|en\|auto\] – /m);
    const auto = fake.sendCommand(user, '/lang auto');
    expect((await settledReplies(fake, user.id, auto.message_id))[0]!.text).toBe(t('zh', 'languageSet'));
  });
});

