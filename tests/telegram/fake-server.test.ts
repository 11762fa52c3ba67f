// The fake Bot API must behave like the real one towards real telegraf, or the adapter tests prove
// nothing. These tests drive it with telegraf itself and check the Bot API semantics it models.
import { afterEach, describe, expect, it } from 'vitest';
import { Telegraf, TelegramError } from 'telegraf';
import { FakeTelegram, parseTelegramHtml, type FakeTelegramOptions } from '../support/fake-telegram/index.js';

let fake: FakeTelegram | undefined;
let bot: Telegraf | undefined;

afterEach(async () => {
  try {
    bot?.stop('test over');
  } catch {
    // not running
  }
  bot = undefined;
  await fake?.close();
  fake = undefined;
});

async function startFake(options: FakeTelegramOptions = {}) {
  fake = await FakeTelegram.start(options);
  return fake;
}

describe('fake Telegram Bot API', () => {
  it('serves getMe and long polling to telegraf, and records what the bot sends', async () => {
    const f = await startFake();
    bot = new Telegraf(f.token, { telegram: { apiRoot: f.apiRoot } });
    const seen: string[] = [];
    bot.on('text', async (ctx) => {
      seen.push(ctx.message.text);
      await ctx.reply(`echo: ${ctx.message.text}`);
    });
    void bot.launch();
    const alice = f.user(11, { language_code: 'en' });
    f.sendText(alice, 'hello');
    await f.waitFor(() => f.callsTo('sendMessage', 11).length === 1, 5000, 'the echo');
    expect(seen).toEqual(['hello']);
    expect(f.visibleMessagesIn(11).map((m) => m.text)).toEqual(['echo: hello']);
    expect(bot.botInfo?.username).toBe(f.botUser.username);
    // launching in polling mode deletes any webhook first
    expect(f.callsTo('deleteWebhook')).toHaveLength(1);
  });

  it('confirms updates by offset, so a restarted bot does not see them again', async () => {
    const f = await startFake();
    const alice = f.user(12);
    f.sendText(alice, 'one');
    bot = new Telegraf(f.token, { telegram: { apiRoot: f.apiRoot } });
    let count = 0;
    bot.on('text', () => {
      count += 1;
    });
    void bot.launch();
    await f.waitFor(() => count === 1);
    bot.stop('restart');
    await f.waitFor(() => f.pendingUpdateCount() === 0, 5000, 'the offset sync');
    bot = new Telegraf(f.token, { telegram: { apiRoot: f.apiRoot } });
    bot.on('text', () => {
      count += 1;
    });
    void bot.launch();
    f.sendText(alice, 'two');
    await f.waitFor(() => count === 2);
    expect(count).toBe(2);
  });

  it('answers like the real API: HTML entities, edits, not-modified, too long, unknown chat', async () => {
    const f = await startFake();
    const alice = f.user(13);
    f.sendText(alice, 'hi'); // makes the chat known
    const tg = new Telegraf(f.token, { telegram: { apiRoot: f.apiRoot } }).telegram;
    const sent = await tg.sendMessage(13, '<b>bold</b> &amp; plain', { parse_mode: 'HTML' });
    expect(sent.text).toBe('bold & plain');
    expect(sent.entities).toEqual([{ type: 'bold', offset: 0, length: 4 }]);
    await expect(tg.editMessageText(13, sent.message_id, undefined, '<b>bold</b> &amp; plain', { parse_mode: 'HTML' })).rejects.toThrow(
      /message is not modified/,
    );
    await expect(tg.sendMessage(13, '<b>broken', { parse_mode: 'HTML' })).rejects.toThrow(/can't parse entities/);
    await expect(tg.sendMessage(13, 'x'.repeat(4097))).rejects.toThrow(/message is too long/);
    await tg.sendMessage(13, 'x'.repeat(4096));
    await expect(tg.sendMessage(999, 'nobody')).rejects.toThrow(/chat not found/);
    await tg.editMessageText(13, sent.message_id, undefined, 'second');
    expect(f.botMessage(13, sent.message_id)?.history.map((h) => h.text)).toEqual(['bold & plain', 'second']);
  });

  it('injects a 429 with retry_after and holds a flood wait for that chat', async () => {
    const f = await startFake();
    const alice = f.user(14);
    f.sendText(alice, 'hi');
    const tg = new Telegraf(f.token, { telegram: { apiRoot: f.apiRoot } }).telegram;
    const sent = await tg.sendMessage(14, 'first');
    f.failNext('editMessageText', { error_code: 429, description: 'Too Many Requests: retry after 1', retry_after: 1 });
    const error = await tg.editMessageText(14, sent.message_id, undefined, 'second').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TelegramError);
    expect((error as TelegramError).code).toBe(429);
    expect((error as TelegramError).parameters?.retry_after).toBe(1);
    // too early: refused again and counted
    await expect(tg.editMessageText(14, sent.message_id, undefined, 'second')).rejects.toThrow(/Too Many Requests/);
    expect(f.floodViolations).toHaveLength(1);
    await new Promise((resolve) => setTimeout(resolve, 1050));
    await tg.editMessageText(14, sent.message_id, undefined, 'second');
    expect(f.botMessage(14, sent.message_id)?.text).toBe('second');
  });

  it('serves files through getFile and /file/bot<token>/, refusing files over 20 MB', async () => {
    const f = await startFake();
    const alice = f.user(15);
    const small = Buffer.from('not really a picture');
    const message = f.sendDocument(alice, small, { fileName: 'a.txt', mimeType: 'text/plain' });
    const tg = new Telegraf(f.token, { telegram: { apiRoot: f.apiRoot } }).telegram;
    const link = await tg.getFileLink(message.document!.file_id);
    expect(link.href.startsWith(`${f.apiRoot}/file/bot`)).toBe(true);
    const downloaded = Buffer.from(await (await fetch(link)).arrayBuffer());
    expect(downloaded.equals(small)).toBe(true);
    const big = f.sendDocument(alice, Buffer.alloc(16), { fileName: 'big.jpg', mimeType: 'image/jpeg', declaredSize: 25 * 1024 * 1024 });
    await expect(tg.getFile(big.document!.file_id)).rejects.toThrow(/file is too big/);
  });

  it('accepts multipart bodies like the real API', async () => {
    const f = await startFake();
    const alice = f.user(16);
    f.sendText(alice, 'hi');
    const form = new FormData();
    form.set('chat_id', '16');
    form.set('text', 'from a form');
    form.set('reply_markup', JSON.stringify({ inline_keyboard: [[{ text: 'Cancel', callback_data: 'cancel:1' }]] }));
    const response = await fetch(`${f.apiRoot}/bot${f.token}/sendMessage`, { method: 'POST', body: form });
    const body = (await response.json()) as { ok: boolean; result: { text: string; reply_markup: unknown } };
    expect(body.ok).toBe(true);
    expect(body.result.text).toBe('from a form');
    expect(f.calls.at(-1)?.encoding).toBe('multipart');
    expect(f.visibleMessagesIn(16)[0]?.replyMarkup?.inline_keyboard[0]?.[0]?.callback_data).toBe('cancel:1');
  });

  it('answers 401 for a wrong token and 404 for an unknown method or, when switched off, sendMessageDraft', async () => {
    const f = await startFake({ drafts: false });
    const alice = f.user(17);
    f.sendText(alice, 'hi');
    const wrong = await fetch(`${f.apiRoot}/bot1:wrong/getMe`);
    expect(wrong.status).toBe(401);
    const tg = new Telegraf(f.token, { telegram: { apiRoot: f.apiRoot } }).telegram;
    const raw = tg as unknown as { callApi(method: string, payload: object): Promise<unknown> };
    await expect(raw.callApi('sendMessageDraft', { chat_id: 17, draft_id: 1, text: 'x' })).rejects.toThrow(/404: Not Found/);
    await expect(raw.callApi('noSuchMethod', {})).rejects.toThrow(/404: Not Found/);
  });

  it('keeps command lists per scope and language', async () => {
    const f = await startFake();
    const tg = new Telegraf(f.token, { telegram: { apiRoot: f.apiRoot } }).telegram;
    await tg.setMyCommands([{ command: 'help', description: 'Help' }]);
    await tg.setMyCommands([{ command: 'help', description: '帮助' }], { language_code: 'zh' });
    await expect(tg.setMyCommands([{ command: 'Bad-Name', description: 'x' }])).rejects.toThrow(/BOT_COMMAND_INVALID/);
    expect((await tg.getMyCommands({ language_code: 'zh' }))[0]?.description).toBe('帮助');
    expect(f.commands(undefined, undefined)?.[0]?.description).toBe('Help');
  });

  it('delivers updates to a webhook with the secret token header', async () => {
    const f = await startFake();
    bot = new Telegraf(f.token, { telegram: { apiRoot: f.apiRoot, webhookReply: false } });
    const seen: string[] = [];
    bot.on('text', (ctx) => {
      seen.push(ctx.message.text);
    });
    const { createServer } = await import('node:http');
    const handler = bot.webhookCallback('/hook', { secretToken: 'sEcReT_1' });
    const server = createServer((req, res) => void handler(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    try {
      await bot.telegram.setWebhook(`http://127.0.0.1:${port}/hook`, { secret_token: 'sEcReT_1' });
      f.sendText(f.user(18), 'via webhook');
      await f.waitFor(() => seen.length === 1);
      expect(seen).toEqual(['via webhook']);
      expect(await f.postToWebhook({ message: { message_id: 1, date: 0, chat: { id: 18, type: 'private' }, text: 'forged' } }, 'wrong')).toBe(403);
      expect(seen).toEqual(['via webhook']);
      await expect(bot.telegram.getUpdates(0, 1, 0, [])).rejects.toThrow(/409/);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });

  it('shows sendMessageDraft as a short-lived preview in private chats only, never as a message', async () => {
    const f = await startFake({ draftLifetimeMs: 300 });
    const alice = f.user(19);
    f.sendText(alice, 'hi');
    const group = f.group(-1900);
    f.sendText(alice, 'hi all', { chat: group });
    const raw = new Telegraf(f.token, { telegram: { apiRoot: f.apiRoot } }).telegram as unknown as { callApi(method: string, payload: object): Promise<unknown> };
    await raw.callApi('sendMessageDraft', { chat_id: 19, draft_id: 7, text: 'thinking about it' });
    expect(f.draftIn(19)?.text).toBe('thinking about it');
    expect(f.visibleMessagesIn(19)).toEqual([]); // a draft is not a message
    await new Promise((resolve) => setTimeout(resolve, 350));
    expect(f.draftIn(19)).toBeUndefined(); // the preview expired; nothing persisted
    await raw.callApi('sendMessageDraft', { chat_id: 19, draft_id: 7, text: 'again' });
    await raw.callApi('sendMessage', { chat_id: 19, text: 'the answer' });
    expect(f.draftIn(19)).toBeUndefined(); // a sent message replaces the preview
    expect(f.visibleMessagesIn(19).map((m) => m.text)).toEqual(['the answer']);
    await expect(raw.callApi('sendMessageDraft', { chat_id: group.id, draft_id: 7, text: 'x' })).rejects.toThrow(/TEXTDRAFT_PEER_INVALID/);
    await expect(raw.callApi('sendMessageDraft', { chat_id: 19, draft_id: 0, text: 'x' })).rejects.toThrow(/non-zero/);
    await expect(raw.callApi('sendMessageDraft', { chat_id: 19, draft_id: 7, text: 'x'.repeat(4097) })).rejects.toThrow(/too long/);
  });

  it('refuses a reply to a deleted message unless allow_sending_without_reply is set', async () => {
    const f = await startFake();
    const alice = f.user(20);
    const photo = f.sendText(alice, 'my message');
    const tg = new Telegraf(f.token, { telegram: { apiRoot: f.apiRoot } }).telegram;
    f.deleteUserMessage(20, photo.message_id);
    await expect(tg.sendMessage(20, 'reply', { reply_parameters: { message_id: photo.message_id } })).rejects.toThrow(/message to be replied not found/);
    const sent = await tg.sendMessage(20, 'reply', { reply_parameters: { message_id: photo.message_id, allow_sending_without_reply: true } });
    expect(sent.text).toBe('reply');
    expect(f.botMessage(20, sent.message_id)?.replyToMessageId).toBeUndefined();
  });

  it('answers 403 to every send in a chat whose user blocked the bot', async () => {
    const f = await startFake();
    const alice = f.user(21);
    f.sendText(alice, 'hi');
    f.blockChat(21);
    const tg = new Telegraf(f.token, { telegram: { apiRoot: f.apiRoot } }).telegram;
    const error = await tg.sendMessage(21, 'hello?').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TelegramError);
    expect((error as TelegramError).code).toBe(403);
    expect((error as TelegramError).description).toBe('Forbidden: bot was blocked by the user');
  });

  it('parses Telegram HTML the way the service does', () => {
    expect(parseTelegramHtml('<pre><code class="language-ts">let x</code></pre>')).toEqual({
      text: 'let x',
      entities: [{ type: 'pre', offset: 0, length: 5, language: 'ts' }],
    });
    expect(() => parseTelegramHtml('<b>a</i>')).toThrow(/Unmatched end tag/);
    expect(() => parseTelegramHtml('<div>a</div>')).toThrow(/Unsupported start tag "div"/);
    expect(parseTelegramHtml('a &lt; b &#x41;').text).toBe('a < b A');
  });
});
