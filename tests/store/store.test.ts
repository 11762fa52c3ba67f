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

  it('migrates a version-1 database, keeping settings, conversations, turns and links', () => {
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
    expect(store.schemaVersion).toBe(2);
    expect(store.getSettings('chat', 'telegram', '-100')).toEqual({ style: 'grumpy', language: null });
    const conversation = store.findByMessage('telegram', '-100', '555');
    expect(conversation?.id).toBe(1);
    expect(conversation?.turns).toEqual([{ question: 'what?', answer: 'a cat', style: 'grumpy', createdAt: 20 }]);
    expect(Array.from(store.getImage(conversation!.imageSha256)!.bytes)).toEqual(Array.from(image));
    // the same bytes in two conversations are stored once
    expect(store.stats().images).toBe(1);
    // the new column works
    store.setLanguage('user', 'telegram', '7', 'zh');
    expect(store.getSettings('user', 'telegram', '7').language).toBe('zh');
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
    expect(store.stats()).toEqual({ conversations: 1, turns: 1, images: 1, links: 1 });
    store.close();
  });

  it('starts a new conversation when the one being continued was forgotten meanwhile', () => {
    const store = Store.open(join(dir, 'bot.db'));
    const id = store.saveTurn({ platform: 'telegram', chatId: 'a', userId: '1', image: { bytes: png(1) }, question: 'q', answer: 'a', style: 'plain', messageIds: ['1'] });
    store.resetChat('telegram', 'a');
    const again = store.saveTurn({ platform: 'telegram', chatId: 'a', userId: '1', conversationId: id, image: { bytes: png(1) }, question: 'q2', answer: 'a2', style: 'plain', messageIds: ['2'] });
    expect(again).not.toBe(id);
    expect(store.latest('telegram', 'a')?.turns.map((t) => t.question)).toEqual(['q2']);
    store.close();
  });
});
