import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { migrate, SCHEMA_VERSION } from '../../src/store/migrations.js';
import { Store } from '../../src/store/store.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vistyle-store-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const png = (seed: number) => new Uint8Array([0x89, 0x50, 0x4e, 0x47, seed, seed + 1, seed + 2]);

describe('Store', () => {
  it('creates the schema at the latest version, in WAL mode, with its folder', () => {
    const path = join(dir, 'nested', 'bot.db');
    const store = Store.open(path);
    expect(store.schemaVersion).toBe(SCHEMA_VERSION);
    store.close();
    const raw = new BetterSqlite3(path);
    expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
    raw.close();
  });

  it('migrates a version-1 database, keeping settings, conversations, turns, links and each picture', () => {
    const path = join(dir, 'old.db');
    const old = new BetterSqlite3(path);
    migrate(old, 1);
    expect(old.pragma('user_version', { simple: true })).toBe(1);
    const image = Buffer.from(png(7));
    old.prepare("INSERT INTO settings (scope, platform, id, style, updated_at) VALUES ('chat', 'telegram', '-100', 'grumpy', 1)").run();
    old.prepare("INSERT INTO conversations (id, platform, chat_id, user_id, image, image_mime, created_at, updated_at) VALUES (1, 'telegram', '-100', '7', ?, 'image/png', 10, 20)").run(image);
    old.prepare("INSERT INTO conversations (id, platform, chat_id, user_id, image, image_mime, created_at, updated_at) VALUES (2, 'telegram', '-100', '8', ?, 'image/png', 11, 21)").run(image);
    old.prepare("INSERT INTO turns (conversation_id, seq, question, answer, style, created_at) VALUES (1, 1, 'what?', 'a cat', 'grumpy', 20)").run();
    old.prepare("INSERT INTO message_links (platform, chat_id, message_id, conversation_id) VALUES ('telegram', '-100', '555', 1)").run();
    old.close();

    const store = Store.open(path, { now: () => 30 });
    expect(store.schemaVersion).toBe(SCHEMA_VERSION);
    expect(store.getSettings('chat', 'telegram', '-100')).toEqual({ style: 'grumpy', language: null });
    const conversation = store.findByMessage('telegram', '-100', '555');
    expect(conversation?.id).toBe(1);
    expect(conversation?.turns).toEqual([{ seq: 1, question: 'what?', answer: 'a cat', style: 'grumpy', createdAt: 20 }]);
    expect(conversation?.images).toHaveLength(1);
    expect(conversation!.images[0]!.turnSeq).toBe(1);
    expect(Array.from(store.getImage(conversation!.images[0]!.sha256)!.bytes)).toEqual(Array.from(image));
    // the same bytes in two conversations are stored once
    expect(store.stats()).toMatchObject({ images: 1, pictures: 2 });
    // the new column works
    store.setLanguage('user', 'telegram', '7', 'zh');
    expect(store.getSettings('user', 'telegram', '7').language).toBe('zh');
    store.close();
  });

  it('migrates a version-2 database (one picture per conversation) to pictures per turn, and goes on from there', () => {
    const path = join(dir, 'v2.db');
    const old = new BetterSqlite3(path);
    migrate(old, 2);
    const a = Buffer.from(png(1));
    const b = Buffer.from(png(2));
    const hash = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
    const insertImage = old.prepare('INSERT INTO images (sha256, bytes, mime, size, created_at) VALUES (?, ?, ?, ?, 1)');
    insertImage.run(hash(a), a, 'image/png', a.length);
    insertImage.run(hash(b), b, 'image/jpeg', b.length);
    // conversation 5: its first turns were dropped already (seq 3 is its oldest); 6 has no turn left
    old.prepare("INSERT INTO conversations (id, platform, chat_id, user_id, image_sha256, created_at, updated_at) VALUES (5, 'discord', 'chan', '42', ?, 10, 50)").run(hash(a));
    old.prepare("INSERT INTO conversations (id, platform, chat_id, user_id, image_sha256, created_at, updated_at) VALUES (6, 'discord', 'chan', '43', ?, 11, 40)").run(hash(b));
    for (const seq of [3, 4]) old.prepare("INSERT INTO turns (conversation_id, seq, question, answer, style, created_at) VALUES (5, ?, ?, ?, 'plain', 30)").run(seq, `q${seq}`, `a${seq}`);
    old.prepare("INSERT INTO message_links (platform, chat_id, message_id, conversation_id) VALUES ('discord', 'chan', 'answer-4', 5)").run();
    old.close();

    let store = Store.open(path, { now: () => 100 });
    expect(store.schemaVersion).toBe(3);
    const five = store.findByMessage('discord', 'chan', 'answer-4')!;
    expect(five.images).toEqual([{ sha256: hash(a), turnSeq: 3 }]);
    expect(five.turns.map((t) => t.seq)).toEqual([3, 4]);
    expect(store.getConversation(6)!.images).toEqual([{ sha256: hash(b), turnSeq: 1 }]);
    expect(store.getImage(hash(b))!.mime).toBe('image/jpeg');
    expect(store.latest('discord', 'chan')!.id).toBe(5); // the chat index is back

    // a follow-up brings a new picture: attached to its own turn; a new conversation gets a fresh id
    const c = png(3);
    expect(store.saveTurn({ platform: 'discord', chatId: 'chan', userId: '42', conversationId: 5, images: [{ bytes: c, mime: 'image/png' }], question: 'and this?', answer: 'a5', style: 'plain', messageIds: ['answer-5'] })).toBe(5);
    const fresh = store.saveTurn({ platform: 'discord', chatId: 'chan', userId: '44', images: [{ bytes: c }], question: 'q', answer: 'a', style: 'plain', messageIds: ['x'] });
    expect(fresh).toBe(7);
    store.close();
    store = Store.open(path);
    expect(store.getConversation(5)!.images.map((image) => image.turnSeq)).toEqual([3, 5]);
    expect(store.stats()).toMatchObject({ conversations: 3, images: 3, pictures: 4 });
    // forgetting conversation 6 forgets its picture (no other conversation shows it)
    store.resetChat('discord', 'chan');
    expect(store.stats()).toMatchObject({ conversations: 0, images: 0, pictures: 0 });
    store.close();
  });

  it('keeps several pictures per turn in order, each stored once, and the newest N per conversation', () => {
    const store = Store.open(join(dir, 'bot.db'), { maxImagesPerConversation: 4, maxTurnsPerConversation: 2 });
    const [p1, p2, p3, p4, p5] = [1, 2, 3, 4, 5].map(png);
    const id = store.saveTurn({ platform: 'telegram', chatId: '1', userId: '1', images: [{ bytes: p1! }, { bytes: p2! }, { bytes: p1! }], question: 'q1', answer: 'a1', style: 'plain', messageIds: ['m1'] });
    let conversation = store.getConversation(id)!;
    expect(conversation.images.map((image) => image.turnSeq)).toEqual([1, 1, 1]);
    expect(conversation.images[0]!.sha256).toBe(conversation.images[2]!.sha256); // the same picture twice
    expect(store.stats()).toMatchObject({ images: 2, pictures: 3 });
    // text-only follow-ups: the pictures outlive the turn they came with
    store.saveTurn({ platform: 'telegram', chatId: '1', userId: '1', conversationId: id, question: 'q2', answer: 'a2', style: 'plain', messageIds: ['m2'] });
    store.saveTurn({ platform: 'telegram', chatId: '1', userId: '1', conversationId: id, question: 'q3', answer: 'a3', style: 'plain', messageIds: ['m3'] });
    conversation = store.getConversation(id)!;
    expect(conversation.turns.map((t) => t.seq)).toEqual([2, 3]);
    expect(conversation.images).toHaveLength(3);
    // two more pictures: the oldest go beyond the bound of 4 (p1's first occurrence), bytes still shown stay
    store.saveTurn({ platform: 'telegram', chatId: '1', userId: '1', conversationId: id, images: [{ bytes: p3! }, { bytes: p4! }], question: 'q4', answer: 'a4', style: 'plain', messageIds: ['m4'] });
    conversation = store.getConversation(id)!;
    expect(conversation.images.map((image) => image.turnSeq)).toEqual([1, 1, 4, 4]);
    expect(store.stats()).toMatchObject({ images: 4, pictures: 4 });
    store.saveTurn({ platform: 'telegram', chatId: '1', userId: '1', conversationId: id, images: [{ bytes: p5! }, { bytes: p5! }], question: 'q5', answer: 'a5', style: 'plain', messageIds: ['m5'] });
    expect(store.getConversation(id)!.images.map((image) => image.turnSeq)).toEqual([4, 4, 5, 5]);
    expect(store.stats()).toMatchObject({ images: 3, pictures: 4 }); // p1 and p2 are gone
    store.close();
  });

  it('refuses a database from a newer vistyle', () => {
    const path = join(dir, 'future.db');
    const db = new BetterSqlite3(path);
    db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    db.close();
    expect(() => Store.open(path)).toThrow(/newer than this vistyle/);
  });

  it('keeps settings and conversations across a restart', () => {
    const path = join(dir, 'bot.db');
    let store = Store.open(path);
    store.setStyle('user', 'discord', '42', 'cantonese');
    store.setStyle('chat', 'discord', 'chan', 'salesman');
    const id = store.saveTurn({
      platform: 'discord', chatId: 'chan', userId: '42', image: { bytes: png(1), mime: 'image/png' },
      question: 'q1', answer: 'a1', style: 'cantonese', messageIds: ['m-photo', 'm-answer'],
    });
    store.close();

    store = Store.open(path);
    expect(store.getSettings('user', 'discord', '42').style).toBe('cantonese');
    expect(store.getSettings('chat', 'discord', 'chan').style).toBe('salesman');
    expect(store.findByMessage('discord', 'chan', 'm-answer')?.id).toBe(id);
    expect(store.findByMessage('discord', 'chan', 'm-photo')?.turns.map((t) => t.answer)).toEqual(['a1']);
    store.close();
  });

  it('never finds a conversation from another chat or platform (private/group isolation)', () => {
    const store = Store.open(join(dir, 'bot.db'));
    store.saveTurn({
      platform: 'telegram', chatId: '42', userId: '42', image: { bytes: png(1) },
      question: 'private q', answer: 'private a', style: 'plain', messageIds: ['100'],
    });
    // same user, same message id number, but in a group
    expect(store.findByMessage('telegram', '-1001', '100')).toBeUndefined();
    expect(store.latest('telegram', '-1001')).toBeUndefined();
    expect(store.findByMessage('discord', '42', '100')).toBeUndefined();
    expect(store.latest('telegram', '42')?.turns[0]?.question).toBe('private q');
    store.close();
  });

  it('continues a conversation, bounds its turns and links every message', () => {
    const store = Store.open(join(dir, 'bot.db'), { maxTurnsPerConversation: 3 });
    const id = store.saveTurn({ platform: 'telegram', chatId: '1', userId: '1', image: { bytes: png(1) }, question: 'q1', answer: 'a1', style: 'plain', messageIds: ['1', '2'] });
    for (let i = 2; i <= 5; i++) {
      const same = store.saveTurn({ platform: 'telegram', chatId: '1', userId: '1', conversationId: id, question: `q${i}`, answer: `a${i}`, style: 'plain', messageIds: [`${i}0`] });
      expect(same).toBe(id);
    }
    const conversation = store.findByMessage('telegram', '1', '50')!;
    expect(conversation.turns.map((t) => t.question)).toEqual(['q3', 'q4', 'q5']);
    expect(store.findByMessage('telegram', '1', '1')?.id).toBe(id);
    store.close();
  });

  it('bounds conversations per chat and removes images nobody uses', () => {
    let clock = 1000;
    const store = Store.open(join(dir, 'bot.db'), { maxConversationsPerChat: 2, now: () => clock++ });
    for (let i = 0; i < 4; i++) {
      store.saveTurn({ platform: 'telegram', chatId: '1', userId: '1', image: { bytes: png(i * 10) }, question: 'q', answer: `a${i}`, style: 'plain', messageIds: [`m${i}`] });
    }
    expect(store.stats().conversations).toBe(2);
    expect(store.stats().images).toBe(2);
    expect(store.findByMessage('telegram', '1', 'm0')).toBeUndefined();
    expect(store.findByMessage('telegram', '1', 'm3')?.turns[0]?.answer).toBe('a3');
    store.close();
  });

  it('resets one chat only, and expires idle conversations', () => {
    let clock = 0;
    const store = Store.open(join(dir, 'bot.db'), { now: () => clock });
    store.saveTurn({ platform: 'telegram', chatId: 'a', userId: '1', image: { bytes: png(1) }, question: 'q', answer: 'a', style: 'plain', messageIds: ['1'] });
    store.saveTurn({ platform: 'telegram', chatId: 'b', userId: '1', image: { bytes: png(2) }, question: 'q', answer: 'a', style: 'plain', messageIds: ['1'] });
    expect(store.resetChat('telegram', 'a')).toBe(1);
    expect(store.resetChat('telegram', 'a')).toBe(0);
    expect(store.latest('telegram', 'a')).toBeUndefined();
    expect(store.latest('telegram', 'b')).toBeDefined();
    clock = 10_000;
    store.saveTurn({ platform: 'telegram', chatId: 'c', userId: '1', image: { bytes: png(3) }, question: 'q', answer: 'a', style: 'plain', messageIds: ['1'] });
    expect(store.expire(5_000)).toBe(1); // b is idle since t=0; c is fresh
    expect(store.latest('telegram', 'b')).toBeUndefined();
    expect(store.latest('telegram', 'c')).toBeDefined();
    expect(store.stats()).toEqual({ conversations: 1, turns: 1, images: 1, links: 1, pictures: 1 });
    store.close();
  });

  it('starts a new conversation when the one being continued was forgotten meanwhile', () => {
    const store = Store.open(join(dir, 'bot.db'));
    const id = store.saveTurn({ platform: 'telegram', chatId: 'a', userId: '1', image: { bytes: png(1) }, question: 'q', answer: 'a', style: 'plain', messageIds: ['1'] });
    store.resetChat('telegram', 'a');
    const again = store.saveTurn({ platform: 'telegram', chatId: 'a', userId: '1', conversationId: id, image: { bytes: png(1) }, question: 'q2', answer: 'a2', style: 'plain', messageIds: ['2'] });
    expect(again).not.toBe(id);
    expect(store.latest('telegram', 'a')?.turns.map((t) => t.question)).toEqual(['q2']);
    // a text-only follow-up of a forgotten conversation starts afresh with the pictures it was about
    store.resetChat('telegram', 'a');
    const restarted = store.saveTurn({ platform: 'telegram', chatId: 'a', userId: '1', conversationId: again, restartImages: [{ bytes: png(9) }], question: 'q3', answer: 'a3', style: 'plain', messageIds: ['3'] });
    expect(store.getConversation(restarted)!.images).toHaveLength(1);
    store.resetChat('telegram', 'a');
    expect(() => store.saveTurn({ platform: 'telegram', chatId: 'a', userId: '1', conversationId: restarted, question: 'q4', answer: 'a4', style: 'plain', messageIds: ['4'] })).toThrow(/needs its pictures/);
    store.close();
  });
});
