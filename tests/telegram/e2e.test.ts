// End to end: real telegraf (inside the adapter) against the fake Bot API, the real bot core
// (scheduler, SQLite store, styles) and the real engine worker on a tiny generated checkpoint.
// The fake records every call, so each test checks what the user would have seen, and when.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { t } from '../../src/bot/i18n.js';
import { helpText } from '../../src/bot/commands.js';
import { stripControlChars } from '../../src/bot/control-chars.js';
import { createEngine, type WorkerEngine } from '../../src/engine/engine.js';
import { messageText } from '../../src/engine/prompt.js';
import { builtinStyles } from '../../src/styles/index.js';
import { FakeTelegram, type FakeTelegramOptions } from '../support/fake-telegram/index.js';
import { tinyModel } from '../support/tiny-model.js';
import { expectPaced, ObservedEngine, settledReplies, sleep, startBot, tempDir, visibleCore, type BotUnderTest, type StartOptions } from './harness.js';
import { crashingWorker } from '../support/crash-hook.js';

const PNG = readFileSync(new URL('../fixtures/images/test_image_64x48.png', import.meta.url));
const OTHER_PNG = readFileSync(new URL('../fixtures/images/test_image2_40x56.png', import.meta.url));
const style = (id: string) => builtinStyles().find((s) => s.id === id)!;

let modelDir: string;
let engine: WorkerEngine;
const temp = tempDir();
let fake: FakeTelegram | undefined;
const bots: BotUnderTest[] = [];

beforeAll(async () => {
  modelDir = (await tinyModel()).modelDir;
  // one slot, as the queue tests expect (users wait while one answer runs)
  engine = await createEngine({ modelDir, threads: 1, slots: 1 });
});

afterAll(async () => {
  await engine?.close();
  temp.remove();
});

afterEach(async () => {
  for (const bot of bots.splice(0)) await bot.stop();
  await fake?.close();
  fake = undefined;
});

let dbCounter = 0;
async function setUp(
  options: { fake?: FakeTelegramOptions; observed?: ObservedEngine; env?: Record<string, string>; dbPath?: string } & Partial<Pick<StartOptions, 'tuning' | 'webhook'>> = {},
) {
  fake ??= await FakeTelegram.start(options.fake);
  const observed = options.observed ?? new ObservedEngine(engine);
  const dbPath = options.dbPath ?? join(temp.dir, `bot${dbCounter++}.db`);
  const startOptions: StartOptions = { fake, engine: observed, dbPath };
  if (options.env) startOptions.env = options.env;
  if (options.tuning) startOptions.tuning = options.tuning;
  if (options.webhook) startOptions.webhook = options.webhook;
  const bot = await startBot(startOptions);
  bots.push(bot);
  return { fake, observed, bot, dbPath };
}

describe('Telegram end to end (real engine on a tiny model)', () => {
  it('answers a photo with a caption, streaming drafts at most once a second, then the final text', async () => {
    const observed = new ObservedEngine(engine);
    observed.deltaDelayMs = 40;
    const { fake } = await setUp({ observed });
    const alice = fake.user(1001, { language_code: 'en' });
    const photo = await fake.sendPhoto(alice, PNG, { caption: 'What is in this picture?' });

    const replies = await settledReplies(fake, alice.id, photo.message_id);
    const [call] = observed.calls;
    expect(call?.request.messages.at(-1)).toMatchObject({ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: 'What is in this picture?' }] });
    const answer = stripControlChars(call!.result!.text);
    expect(replies.map((m) => m.text).join('')).not.toBe('');
    expect(visibleCore(replies.map((m) => m.text).join(''))).toBe(visibleCore(answer));

    // the engine saw the largest photo size's bytes (the fake re-encodes at Telegram's sizes)
    const largest = photo.photo!.reduce((a, b) => (a.width * a.height >= b.width * b.height ? a : b));
    expect(fake.callsTo('getFile').map((c) => c.params.file_id)).toEqual([largest.file_id]);

    // streamed: several drafts, each the beginning of the answer, at least ~1 s apart
    const drafts = fake.callsTo('sendMessageDraft', alice.id).filter((c) => c.ok);
    expect(drafts.length).toBeGreaterThanOrEqual(2);
    for (const draft of drafts) expect(answer.trim().startsWith(String(draft.params.text).replace(/…$/, ''))).toBe(true);
    expectPaced(drafts.map((d) => d.at), 1000);
    // the status message (with its Cancel button) was replaced by the persisted answer
    const status = fake.messagesIn(alice.id).find((m) => m.history[0]?.text === t('en', 'thinking'));
    expect(status?.deleted).toBe(true);
    expect(fake.callsTo('sendChatAction', alice.id).every((c) => c.params.action === 'typing')).toBe(true);
    expect(fake.callsTo('sendChatAction', alice.id).length).toBeGreaterThanOrEqual(1);
    expect(fake.floodViolations).toEqual([]);
  });

  it('streams by editing the status message when the Bot API has no sendMessageDraft', async () => {
    const observed = new ObservedEngine(engine);
    observed.deltaDelayMs = 40;
    const { fake } = await setUp({ observed, fake: { drafts: false } });
    const alice = fake.user(1002);
    const photo = await fake.sendPhoto(alice, PNG, { caption: 'Describe it' });
    const [reply] = await settledReplies(fake, alice.id, photo.message_id);
    const answer = observed.calls[0]!.result!.text;
    expect(visibleCore(reply!.text)).toBe(visibleCore(answer));
    // queued/thinking, at least one streamed edit, then the final one
    expect(reply!.history.length).toBeGreaterThanOrEqual(3);
    const edits = fake.callsTo('editMessageText', alice.id).filter((c) => c.ok);
    expectPaced(edits.map((e) => e.at), 1000);
    expect(fake.callsTo('sendMessageDraft', alice.id)).toHaveLength(1); // tried once, 404, never again
  });

  it('/style shows a keyboard; a pressed style shapes the next answer and survives a restart', async () => {
    const { fake, observed, bot, dbPath } = await setUp();
    const alice = fake.user(1003, { language_code: 'en' });
    const command = fake.sendCommand(alice, '/style');
    const picker = await fake.waitFor(() => fake!.visibleMessagesIn(alice.id).find((m) => m.replyToMessageId === command.message_id));
    const buttons = picker.replyMarkup!.inline_keyboard.flat();
    expect(buttons.map((b) => b.callback_data)).toEqual(builtinStyles().map((s) => `style:${s.id}`));
    const query = fake.pressButton(alice, picker, 'style:grumpy');
    await fake.waitFor(() => fake!.callsTo('answerCallbackQuery').find((c) => c.params.callback_query_id === query.id && c.ok));
    await fake.waitFor(() => picker.replyMarkup?.inline_keyboard.flat().find((b) => b.text.startsWith('✓'))?.callback_data === 'style:grumpy');

    const first = await fake.sendPhoto(alice, PNG);
    await settledReplies(fake, alice.id, first.message_id);
    expect(observed.calls[0]!.request.messages[0]).toEqual({ role: 'system', content: style('grumpy').systemPrompt });
    // no caption: the style's default question in the user's language
    expect(messageText(observed.calls[0]!.request.messages.at(-1)!)).toBe(style('grumpy').defaultQuestion.en);

    // a new process: new core and adapter over the same SQLite file
    await bot.stop();
    const restarted = await setUp({ dbPath });
    const second = await fake.sendPhoto(alice, OTHER_PNG, { caption: 'and this one?' });
    await settledReplies(fake, alice.id, second.message_id);
    expect(restarted.observed.calls[0]!.request.messages[0]).toEqual({ role: 'system', content: style('grumpy').systemPrompt });

    // by name, as text
    const byName = fake.sendCommand(alice, '/style cantonese');
    await settledReplies(fake, alice.id, byName.message_id);
    const third = await fake.sendPhoto(alice, PNG, { caption: 'now?' });
    await settledReplies(fake, alice.id, third.message_id);
    expect(restarted.observed.calls[1]!.request.messages[0]).toEqual({ role: 'system', content: style('cantonese').systemPrompt });
  });

  it('a reply to the answer is a follow-up about the same picture, with the earlier turn as context', async () => {
    const { fake, observed } = await setUp();
    const alice = fake.user(1004);
    const photo = await fake.sendPhoto(alice, PNG, { caption: 'What is it?' });
    const [answerMessage] = await settledReplies(fake, alice.id, photo.message_id);
    const firstAnswer = stripControlChars(observed.calls[0]!.result!.text).trim(); // as the user saw it

    const followUp = fake.sendText(alice, 'And what colour is it?', { replyTo: answerMessage!.messageId });
    await settledReplies(fake, alice.id, followUp.message_id);
    const second = observed.calls[1]!.request;
    expect(second.messages.at(-1)).toEqual({ role: 'user', content: [{ type: 'text', text: 'And what colour is it?' }] });
    expect(second.messages).toContainEqual({ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: 'What is it?' }] });
    expect(second.messages).toContainEqual({ role: 'assistant', content: firstAnswer });
    expect(Buffer.from(second.images![0]!).equals(Buffer.from(observed.calls[0]!.request.images![0]!))).toBe(true);
    expect(fake.callsTo('getFile')).toHaveLength(1); // the picture came from the store, not Telegram
  });

  it('shows each waiting user their queue position and updates it as the queue moves', async () => {
    const observed = new ObservedEngine(engine);
    observed.deltaDelayMs = 15;
    const { fake } = await setUp({ observed });
    const [alice, bob, carol] = [fake.user(1011), fake.user(1012), fake.user(1013)];
    const pa = await fake.sendPhoto(alice, PNG, { caption: 'one' });
    await fake.waitFor(() => observed.calls.length === 1, 15_000, 'the first request to start');
    const pb = await fake.sendPhoto(bob, PNG, { caption: 'two' });
    const pc = await fake.sendPhoto(carol, PNG, { caption: 'three' });
    await Promise.all([settledReplies(fake, alice.id, pa.message_id), settledReplies(fake, bob.id, pb.message_id), settledReplies(fake, carol.id, pc.message_id, 60_000)]);

    const statusHistory = (chatId: number) => fake!.messagesIn(chatId).find((m) => m.history[0]?.text.startsWith('In the queue'))?.history.map((h) => h.text) ?? [];
    expect(statusHistory(bob.id)[0]).toBe(t('en', 'queued', { position: 1 }));
    const carolSaw = statusHistory(carol.id);
    expect(carolSaw[0]).toBe(t('en', 'queued', { position: 2 }));
    expect(carolSaw).toContain(t('en', 'queued', { position: 1 }));
    expect(carolSaw.indexOf(t('en', 'queued', { position: 1 }))).toBeLessThan(carolSaw.indexOf(t('en', 'thinking')));
    expect(observed.calls).toHaveLength(3);
  });

  it('answers a flood from one user with polite limit messages', async () => {
    const observed = new ObservedEngine(engine);
    observed.deltaDelayMs = 10;
    const { fake } = await setUp({ observed, env: { VISTYLE_USER_PER_MINUTE: '2' } });
    const alice = fake.user(1021, { language_code: 'zh-hans' });
    const burst = [];
    for (let i = 0; i < 3; i++) burst.push(await fake.sendPhoto(alice, PNG, { caption: `q${i}` }));
    const replies = await Promise.all(burst.map((m) => settledReplies(fake, alice.id, m.message_id)));
    expect(replies[1]!.at(-1)!.text).toBe(t('zh', 'rateLimitedInFlight'));
    expect(replies[2]!.at(-1)!.text).toBe(t('zh', 'rateLimitedInFlight'));
    // the minute's allowance: the answered one and one more; the third is refused with a wait time
    const second = await fake.sendPhoto(alice, PNG, { caption: 'again' });
    await settledReplies(fake, alice.id, second.message_id);
    const third = await fake.sendPhoto(alice, PNG, { caption: 'and again' });
    const [refusal] = await settledReplies(fake, alice.id, third.message_id);
    expect(refusal!.text).toMatch(/^你问得有点快了，请等 \d+ 秒再试。$/);
    expect(observed.calls).toHaveLength(2);
  });

  it('gives clear replies to a text document, a 25 MB picture and a damaged JPEG', async () => {
    const { fake, observed } = await setUp();
    const alice = fake.user(1031);
    const text = fake.sendDocument(alice, Buffer.from('just some notes\n'), { fileName: 'notes.txt', mimeType: 'text/plain', caption: 'what is this?' });
    const [textReply] = await settledReplies(fake, alice.id, text.message_id);
    expect(textReply!.text).toBe(t('en', 'error.IMAGE_UNSUPPORTED'));

    const jpeg = await sharp(PNG).jpeg().toBuffer();
    const huge = Buffer.concat([jpeg, Buffer.alloc(25 * 1024 * 1024 - jpeg.length)]);
    const bigPhoto = await fake.sendPhoto(alice, [{ bytes: huge, width: 6000, height: 4500 }]);
    const [bigReply] = await settledReplies(fake, alice.id, bigPhoto.message_id);
    expect(bigReply!.text).toBe(t('en', 'error.IMAGE_TOO_LARGE', { limit: '20 MB' }));
    const bigFile = fake.sendDocument(alice, huge, { fileName: 'big.jpg', mimeType: 'image/jpeg' });
    const [bigFileReply] = await settledReplies(fake, alice.id, bigFile.message_id);
    expect(bigFileReply!.text).toBe(bigReply!.text);
    expect(fake.callsTo('getFile')).toHaveLength(0); // refused from the sizes Telegram reported

    const damaged = fake.sendDocument(alice, jpeg.subarray(0, Math.floor(jpeg.length / 2)), { fileName: 'cat.jpg', mimeType: 'image/jpeg' });
    const [damagedReply] = await settledReplies(fake, alice.id, damaged.message_id);
    expect(damagedReply!.text).toBe(t('en', 'error.IMAGE_CORRUPT'));
    expect(observed.calls.every((call) => call.result === undefined)).toBe(true);
  });

  it('tells the user when the engine worker crashes mid-answer, and answers the next request', async () => {
    const crashing = await createEngine({ modelDir, threads: 1, ...crashingWorker(3), restartDelayMs: 100 });
    try {
      const observed = new ObservedEngine(crashing);
      const { fake } = await setUp({ observed });
      const alice = fake.user(1041);
      const first = await fake.sendPhoto(alice, PNG, { caption: 'first' });
      const [crashReply] = await settledReplies(fake, alice.id, first.message_id);
      expect(crashReply!.text).toBe(t('en', 'error.ENGINE_CRASHED'));
      const second = await fake.sendPhoto(alice, PNG, { caption: 'second' });
      const replies = await settledReplies(fake, alice.id, second.message_id);
      expect(visibleCore(replies.map((m) => m.text).join(''))).toBe(visibleCore(observed.calls[1]!.result!.text));
      expect(crashing.starts).toBe(2);
    } finally {
      await crashing.close();
    }
  });

  it('waits out a 429 on an edit (retry_after) and loses nothing', async () => {
    const observed = new ObservedEngine(engine);
    observed.deltaDelayMs = 40;
    const { fake } = await setUp({ observed, fake: { drafts: false } });
    const alice = fake.user(1051);
    // the first streamed edit (it carries the Cancel keyboard and answer text) is refused
    fake.failNext('editMessageText', { error_code: 429, description: 'Too Many Requests: retry after 2', retry_after: 2 }, {
      when: (p) => typeof p.text === 'string' && !p.text.startsWith('Thinking') && !p.text.startsWith('In the queue'),
    });
    const photo = await fake.sendPhoto(alice, PNG, { caption: 'slowly' });
    const [reply] = await settledReplies(fake, alice.id, photo.message_id);
    const edits = fake.callsTo('editMessageText', alice.id);
    const limited = edits.findIndex((c) => c.error?.error_code === 429);
    expect(limited).toBeGreaterThanOrEqual(0);
    const nextOk = edits.slice(limited + 1).find((c) => c.ok)!;
    expect(nextOk.at - edits[limited]!.at).toBeGreaterThanOrEqual(2000);
    expect(fake.floodViolations).toEqual([]);
    expect(visibleCore(reply!.text)).toBe(visibleCore(observed.calls[0]!.result!.text));
  });

  it('answers an album once, about all its pictures, with the caption as the question', async () => {
    const { fake, observed } = await setUp();
    const alice = fake.user(1061);
    const third = await sharp(PNG).negate({ alpha: false }).png().toBuffer();
    const parts = [
      await fake.sendPhoto(alice, OTHER_PNG, { mediaGroupId: 'album-1' }),
      await fake.sendPhoto(alice, PNG, { mediaGroupId: 'album-1', caption: 'Which one is brighter?' }),
      await fake.sendPhoto(alice, third, { mediaGroupId: 'album-1' }),
    ];
    const replies = await settledReplies(fake, alice.id, parts[1]!.message_id);
    await sleep(1500);
    expect(observed.calls).toHaveLength(1);
    const call = observed.calls[0]!;
    expect(messageText(call.request.messages.at(-1)!)).toBe('Which one is brighter?');
    // every part's largest size, in the album's order, all in the one question
    expect(fake.callsTo('getFile').map((c) => c.params.file_id).sort()).toEqual(parts.map((part) => part.photo!.at(-1)!.file_id).sort());
    expect(call.request.messages.at(-1)!.content).toEqual([{ type: 'image', image: 0 }, { type: 'image', image: 1 }, { type: 'image', image: 2 }, { type: 'text', text: 'Which one is brighter?' }]);
    expect(call.result!.imageCount).toBe(3);
    expect(call.result!.promptTokens).toBeGreaterThanOrEqual(3 * engine.info.imageTokens);
    expect(visibleCore(replies.map((m) => m.text).join(''))).toBe(visibleCore(call.result!.text));
    // nothing else was said in the chat
    expect(fake.visibleMessagesIn(alice.id).every((m) => m.replyToMessageId === parts[1]!.message_id)).toBe(true);
  });

  it('in a group answers mentions, commands and replies only, editing at most every 3 s', async () => {
    const observed = new ObservedEngine(engine);
    observed.deltaDelayMs = 120;
    const { fake } = await setUp({ observed, fake: { drafts: true } });
    const group = fake.group(5001, 'Friends');
    const [alice, bob] = [fake.user(1071), fake.user(1072)];
    const cat = await fake.sendPhoto(alice, PNG, { chat: group, caption: 'look at my cat' });
    fake.sendText(bob, 'nice!', { chat: group });
    fake.sendCommand(bob, '/ask@some_other_bot what is it?', { chat: group });
    await sleep(2000);
    expect(fake.messagesIn(group.id)).toEqual([]);
    expect(observed.calls).toHaveLength(0);

    const asked = await fake.sendPhoto(bob, OTHER_PNG, { chat: group, caption: `@${fake.botUser.username} what is this?` });
    const [answer] = await settledReplies(fake, group.id, asked.message_id);
    expect(messageText(observed.calls[0]!.request.messages.at(-1)!)).toBe('what is this?');
    expect(fake.callsTo('sendMessageDraft', group.id)).toHaveLength(0); // drafts are for private chats
    const edits = fake.callsTo('editMessageText', group.id).filter((c) => c.ok);
    expect(edits.length).toBeGreaterThanOrEqual(2);
    expectPaced(edits.map((e) => e.at), 3000);

    observed.deltaDelayMs = 0;
    const followUp = fake.sendText(alice, 'is it a cat?', { chat: group, replyTo: answer!.messageId });
    await settledReplies(fake, group.id, followUp.message_id, 60_000);
    expect(messageText(observed.calls[1]!.request.messages.at(-1)!)).toBe('is it a cat?');
    const command = fake.sendCommand(alice, `/help@${fake.botUser.username}`, { chat: group });
    const [help] = await settledReplies(fake, group.id, command.message_id);
    expect(help!.text).toBe(helpText('en', { platform: 'telegram', admin: false }));

    // a mention in reply to someone's photo asks about that photo
    const aboutCat = fake.sendText(bob, `@${fake.botUser.username} what breed?`, { chat: group, replyTo: cat.message_id });
    await settledReplies(fake, group.id, aboutCat.message_id, 60_000);
    expect(observed.calls[2]!.request.messages.at(-1)).toEqual({ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: 'what breed?' }] });
    expect(fake.callsTo('getFile').at(-1)!.params.file_id).toBe(cat.photo!.at(-1)!.file_id);
  }, 120_000);

  it('cancels a queued request from its Cancel button', async () => {
    const observed = new ObservedEngine(engine);
    observed.deltaDelayMs = 30;
    const { fake } = await setUp({ observed });
    const [alice, bob] = [fake.user(1081), fake.user(1082)];
    const pa = await fake.sendPhoto(alice, PNG, { caption: 'long one' });
    await fake.waitFor(() => observed.calls.length === 1);
    const pb = await fake.sendPhoto(bob, PNG, { caption: 'never mind' });
    const status = await fake.waitFor(() => fake!.visibleMessagesIn(bob.id).find((m) => m.replyToMessageId === pb.message_id && m.replyMarkup));
    const cancelData = status.replyMarkup!.inline_keyboard[0]![0]!.callback_data!;
    // someone else cannot cancel it
    fake.pressButton(alice, status, cancelData);
    await fake.waitFor(() => fake!.callsTo('answerCallbackQuery').length === 1);
    expect(fake.callsTo('answerCallbackQuery')[0]!.params.text).toBe(t('en', 'cancelNotYours'));
    fake.pressButton(bob, status, cancelData);
    const [cancelled] = await settledReplies(fake, bob.id, pb.message_id);
    expect(cancelled!.text).toBe(t('en', 'error.CANCELLED'));
    await settledReplies(fake, alice.id, pa.message_id);
    expect(observed.calls).toHaveLength(1);
  });

  it('registers its command menu in English and Chinese', async () => {
    const { fake } = await setUp();
    await fake.waitFor(() => fake!.commands(undefined, 'zh'));
    expect(fake.commands()?.map((c) => c.command)).toEqual(['ask', 'style', 'styles', 'language', 'reset', 'help']);
    expect(fake.commands(undefined, 'zh')?.find((c) => c.command === 'style')?.description).toMatch(/风格/);
  });
});
