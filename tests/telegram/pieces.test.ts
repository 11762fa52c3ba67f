// The Telegram adapter's pure pieces: formatting, addressing in groups, album collection, picking
// a photo size, recognising image documents. The fake server's HTML parser (what Telegram would
// show) is the judge of the formatting, not the formatter itself.
import { performance } from 'node:perf_hooks';
import { describe, expect, it, vi } from 'vitest';
import type { Message } from 'telegraf/types';
import { AlbumCollector } from '../../adapters/telegram/album.js';
import { GlobalPacer } from '../../adapters/telegram/pacer.js';
import { EditScheduler } from '../../adapters/shared/edit-scheduler.js';
import { streamingText } from '../../adapters/telegram/answer.js';
import { markdownToTelegramHtml } from '../../adapters/telegram/format.js';
import { readIncoming } from '../../adapters/telegram/incoming.js';
import { pickPhotoSize } from '../../adapters/telegram/media.js';
import { detectEntities, parseTelegramHtml } from '../support/fake-telegram/index.js';

const bot = { id: 777, username: 'vistyle_test_bot' };

function textMessage(text: string, chatType: 'private' | 'supergroup', extra: Record<string, unknown> = {}): Message {
  return {
    message_id: 5,
    date: 0,
    chat: chatType === 'private' ? { id: 1, type: 'private', first_name: 'A' } : { id: -100, type: 'supergroup', title: 'G' },
    from: { id: 1, is_bot: false, first_name: 'A' },
    text,
    entities: detectEntities(text),
    ...extra,
  } as unknown as Message;
}

describe('markdownToTelegramHtml', () => {
  it('turns the model’s Markdown into entities Telegram accepts', () => {
    const html = markdownToTelegramHtml('# Title\nA **bold** and *italic* `a<b` word, [site](https://example.com/a_b_).\n```js\nif (a < b && c) {}\n```');
    const shown = parseTelegramHtml(html);
    expect(shown.text).toBe('Title\nA bold and italic a<b word, site.\nif (a < b && c) {}');
    expect(shown.entities.map((e) => e.type)).toEqual(['bold', 'bold', 'italic', 'code', 'text_link', 'pre']);
    expect(shown.entities.find((e) => e.type === 'text_link')?.url).toBe('https://example.com/a_b_');
    expect(shown.entities.find((e) => e.type === 'pre')?.language).toBe('js');
  });

  it('leaves stray markers, overlapping spans and HTML-like text as literal text', () => {
    for (const text of ['2 * 3 * 4 = 24', 'snake_case_name and a_b', '<script>alert(1)</script> & co', '**unclosed', 'a ``` b', '**a _b** c_']) {
      const shown = parseTelegramHtml(markdownToTelegramHtml(text));
      expect(shown.text).toBe(text);
      expect(shown.entities).toEqual([]);
    }
  });
});

describe('readIncoming', () => {
  it('acts on everything in a private chat', () => {
    expect(readIncoming(textMessage('what is this?', 'private'), bot, true)).toEqual({ question: 'what is this?', addressed: true, otherBot: false });
  });

  it('in groups acts only on mentions, replies to the bot and commands meant for it', () => {
    expect(readIncoming(textMessage('nice picture', 'supergroup'), bot, false).addressed).toBe(false);
    expect(readIncoming(textMessage('@someone_else look', 'supergroup'), bot, false).addressed).toBe(false);
    const mention = readIncoming(textMessage('@Vistyle_Test_Bot what is this?', 'supergroup'), bot, false);
    expect(mention).toEqual({ question: 'what is this?', addressed: true, otherBot: false });
    const command = readIncoming(textMessage('/ask@vistyle_test_bot why?', 'supergroup'), bot, false);
    expect(command).toEqual({ command: 'ask', question: 'why?', addressed: true, otherBot: false });
    expect(readIncoming(textMessage('/style grumpy', 'supergroup'), bot, false)).toMatchObject({ command: 'style', question: 'grumpy', addressed: true });
    const other = readIncoming(textMessage('/ask@other_bot why?', 'supergroup'), bot, false);
    expect(other.addressed).toBe(false);
    expect(other.otherBot).toBe(true);
    const reply = readIncoming(
      textMessage('and the colour?', 'supergroup', { reply_to_message: { message_id: 3, date: 0, chat: { id: -100, type: 'supergroup' }, from: { id: 777, is_bot: true } } }),
      bot,
      false,
    );
    expect(reply.addressed).toBe(true);
  });

  it('reads commands and mentions in captions', () => {
    const message = {
      ...(textMessage('', 'supergroup') as object),
      text: undefined,
      entities: undefined,
      caption: 'hey @vistyle_test_bot is this a cat?',
      caption_entities: detectEntities('hey @vistyle_test_bot is this a cat?'),
    } as unknown as Message;
    expect(readIncoming(message, bot, false)).toEqual({ question: 'hey is this a cat?', addressed: true, otherBot: false });
  });
});

describe('AlbumCollector', () => {
  it('hands over the parts of one album together, oldest first, after a quiet window', () => {
    // fake timers: with real ones a busy machine can overshoot the few ms between the steps
    vi.useFakeTimers();
    try {
      const albums: number[][] = [];
      const collector = new AlbumCollector<{ message_id: number }>(60, (parts) => albums.push(parts.map((p) => p.message_id)));
      collector.add('c:1', { message_id: 12 });
      collector.add('c:2', { message_id: 20 });
      vi.advanceTimersByTime(30);
      collector.add('c:1', { message_id: 11 });
      vi.advanceTimersByTime(45);
      expect(albums).toEqual([[20]]); // c:1 got a new part within the window, so it is still open
      vi.advanceTimersByTime(40);
      expect(albums).toEqual([[20], [11, 12]]);
      collector.add('c:3', { message_id: 30 });
      collector.flushAll();
      expect(albums.at(-1)).toEqual([30]);
      expect(collector.size).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('pictures', () => {
  const sizes = [
    { file_id: 'a', file_unique_id: 'a', width: 90, height: 60, file_size: 2_000 },
    { file_id: 'c', file_unique_id: 'c', width: 2560, height: 1707, file_size: 25 * 1024 * 1024 },
    { file_id: 'b', file_unique_id: 'b', width: 1280, height: 853, file_size: 300_000 },
  ];

  it('takes the largest photo size under both limits, else the smallest for the core to refuse', () => {
    expect(pickPhotoSize(sizes, 30 * 1024 * 1024)?.file_id).toBe('b'); // 25 MB is over getFile's 20 MB
    expect(pickPhotoSize(sizes, 100_000)?.file_id).toBe('a');
    expect(pickPhotoSize(sizes, 1_000)?.file_id).toBe('a');
  });

  it('cuts streamed text to one message without splitting a surrogate pair', () => {
    const long = `${'a'.repeat(4094)}😀😀`;
    const shown = streamingText(long);
    expect(shown.length).toBeLessThanOrEqual(4096);
    expect(shown.endsWith('…')).toBe(true);
    expect(() => encodeURIComponent(shown)).not.toThrow();
  });
});

describe('GlobalPacer as the lanes\' admission gate', () => {
  const gate = (pacer: GlobalPacer) => (kind: 'update' | 'final') => pacer.admit(kind === 'final' ? 'final' : 'stream');

  it('spaces operations of different chats evenly and counts each chat\'s gap from admission', async () => {
    const pacer = new GlobalPacer(10); // one every 100 ms
    const sent: { chat: string; text: string; at: number }[] = [];
    const lanes = ['a', 'b', 'c'].map((chat) => ({ chat, lane: new EditScheduler({ minIntervalMs: 150, admit: gate(pacer) }) }));
    const op = (chat: string, text: string) => async () => {
      sent.push({ chat, text, at: performance.now() });
    };
    await Promise.all(lanes.flatMap(({ chat, lane }) => [lane.final(undefined, op(chat, '1')), lane.final(undefined, op(chat, '2'))]));
    const times = sent.map((s) => s.at);
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(90);
    for (const chat of ['a', 'b', 'c']) {
      const mine = sent.filter((s) => s.chat === chat);
      expect(mine.map((s) => s.text)).toEqual(['1', '2']);
      expect(mine[1]!.at - mine[0]!.at).toBeGreaterThanOrEqual(145);
    }
  });

  it('keeps the gap after the event loop was blocked, instead of letting the overdue calls out together', async () => {
    const pacer = new GlobalPacer(20); // one every 50 ms
    const admitted: number[] = [];
    const all = Array.from({ length: 8 }, () => pacer.admit('final').then(() => admitted.push(performance.now())));
    await vi.waitFor(() => expect(admitted.length).toBe(2), { timeout: 5000 });
    const blockedUntil = performance.now() + 400; // a busy main thread: every pending timer is overdue
    while (performance.now() < blockedUntil);
    await Promise.all(all);
    for (let i = 1; i < admitted.length; i++) expect(admitted[i]! - admitted[i - 1]!).toBeGreaterThanOrEqual(49);
  });

  it('lets an update waiting at the gate take newer text, and drops it once its final is queued', async () => {
    const pacer = new GlobalPacer(5); // one every 200 ms
    const lane = new EditScheduler({ minIntervalMs: 10, admit: gate(pacer) });
    const texts: string[] = [];
    await lane.final(undefined, async () => texts.push('first'));
    lane.update('m', 'v1', async (text) => {
      texts.push(text);
    });
    lane.update('m', 'v2', async (text) => {
      texts.push(text);
    });
    // v1 and v2 were both given while the update waited at the gate: only v2 goes out
    await vi.waitFor(() => expect(texts.length).toBe(2), { timeout: 10_000 });
    expect(texts).toEqual(['first', 'v2']);
    lane.update('m', 'v3', async (text) => {
      texts.push(text);
    });
    await lane.final('m', async () => texts.push('final'));
    expect(texts).toEqual(['first', 'v2', 'final']);
  });
});
