// The bot's persistent state in SQLite (better-sqlite3, WAL): per-user and per-chat settings
// (style, language) and conversations. A conversation belongs to one chat on one platform — a
// private chat and a group never share one — and holds its picture (content-addressed, shared
// between conversations that show the same bytes), its question/answer turns (bounded) and the
// message ids that lead to it (the user's photo and the bot's answers), so a reply to any of them
// continues it. Old conversations expire.
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3, { type Database, type Statement } from 'better-sqlite3';
import { VistyleError } from '../errors.js';
import { migrate } from './migrations.js';

export type SettingScope = 'user' | 'chat';

export interface Settings {
  style: string | null;
  language: string | null;
}

export interface Turn {
  question: string;
  answer: string;
  style: string;
  createdAt: number;
}

export interface Conversation {
  id: number;
  platform: string;
  chatId: string;
  /** Who started it (the first picture's sender). */
  userId: string;
  imageSha256: string;
  createdAt: number;
  updatedAt: number;
}

export interface ConversationWithTurns extends Conversation {
  turns: Turn[];
}

export interface StoredImage {
  bytes: Uint8Array;
  mime: string | null;
}

export interface StoreOptions {
  /** Turns kept per conversation (oldest dropped first). Default 20. */
  maxTurnsPerConversation?: number;
  /** Conversations kept per chat (least recently used dropped first). Default 20. */
  maxConversationsPerChat?: number;
  /** Clock, for tests. */
  now?: () => number;
}

export interface SaveTurnInput {
  platform: string;
  chatId: string;
  userId: string;
  /** Continue this conversation; otherwise `image` starts a new one. */
  conversationId?: number;
  image?: { bytes: Uint8Array; mime?: string | null };
  question: string;
  answer: string;
  style: string;
  /** Message ids to link to the conversation (the user's message(s) and the bot's answer). */
  messageIds: string[];
}

export class Store {
  readonly path: string;
  private readonly db: Database;
  private readonly maxTurns: number;
  private readonly maxConversations: number;
  private readonly now: () => number;
  /** Statements are compiled once and reused: preparing on every call showed up under load. */
  private readonly statements = new Map<string, Statement>();

  private constructor(path: string, db: Database, options: StoreOptions) {
    this.path = path;
    this.db = db;
    this.maxTurns = options.maxTurnsPerConversation ?? 20;
    this.maxConversations = options.maxConversationsPerChat ?? 20;
    this.now = options.now ?? Date.now;
  }

  /** Opens (creating it and its folder if needed) and migrates the database at `path`. */
  static open(path: string, options: StoreOptions = {}): Store {
    let db: Database;
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
      db = new BetterSqlite3(path);
    } catch (error) {
      throw new VistyleError('CONFIG_INVALID', `cannot open the database at ${path}: ${(error as Error).message}`, { cause: error });
    }
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('busy_timeout = 5000');
      db.pragma('foreign_keys = ON');
      migrate(db);
    } catch (error) {
      db.close();
      throw new VistyleError('CONFIG_INVALID', `database ${path}: ${(error as Error).message}`, { cause: error });
    }
    return new Store(path, db, options);
  }

  private prepare<P extends unknown[] = unknown[], R = unknown>(sql: string): Statement<P, R> {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement as unknown as Statement<P, R>;
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  // ---- settings ----

  getSettings(scope: SettingScope, platform: string, id: string): Settings {
    const row = this.prepare<[string, string, string], { style: string | null; language: string | null }>(
        'SELECT style, language FROM settings WHERE scope = ? AND platform = ? AND id = ?',
      )
      .get(scope, platform, id);
    return { style: row?.style ?? null, language: row?.language ?? null };
  }

  setStyle(scope: SettingScope, platform: string, id: string, style: string | null): void {
    this.upsertSetting(scope, platform, id, 'style', style);
  }

  setLanguage(scope: SettingScope, platform: string, id: string, language: string | null): void {
    this.upsertSetting(scope, platform, id, 'language', language);
  }

  private upsertSetting(scope: SettingScope, platform: string, id: string, column: 'style' | 'language', value: string | null): void {
    this.prepare(
        `INSERT INTO settings (scope, platform, id, ${column}, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (scope, platform, id) DO UPDATE SET ${column} = excluded.${column}, updated_at = excluded.updated_at`,
      )
      .run(scope, platform, id, value, this.now());
  }

  // ---- conversations ----

  /** The conversation a message of this chat belongs to (a reply target), if it still exists. */
  findByMessage(platform: string, chatId: string, messageId: string): ConversationWithTurns | undefined {
    const row = this.prepare<[string, string, string], ConversationRow>(
        `SELECT c.* FROM message_links l JOIN conversations c ON c.id = l.conversation_id
         WHERE l.platform = ? AND l.chat_id = ? AND l.message_id = ?`,
      )
      .get(platform, chatId, messageId);
    return row ? this.withTurns(row) : undefined;
  }

  /** The chat's most recently used conversation, if any. */
  latest(platform: string, chatId: string): ConversationWithTurns | undefined {
    const row = this.prepare<[string, string], ConversationRow>(
        'SELECT * FROM conversations WHERE platform = ? AND chat_id = ? ORDER BY updated_at DESC, id DESC LIMIT 1',
      )
      .get(platform, chatId);
    return row ? this.withTurns(row) : undefined;
  }

  getConversation(id: number): ConversationWithTurns | undefined {
    const row = this.prepare<[number], ConversationRow>('SELECT * FROM conversations WHERE id = ?').get(id);
    return row ? this.withTurns(row) : undefined;
  }

  getImage(sha256: string): StoredImage | undefined {
    const row = this.prepare<[string], { bytes: Buffer; mime: string | null }>('SELECT bytes, mime FROM images WHERE sha256 = ?')
      .get(sha256);
    return row ? { bytes: new Uint8Array(row.bytes.buffer, row.bytes.byteOffset, row.bytes.byteLength), mime: row.mime } : undefined;
  }

  /**
   * Records an answered question: continues `conversationId` or starts a conversation with `image`,
   * appends the turn (dropping the oldest beyond the bound), links the message ids, and drops the
   * chat's least recently used conversations beyond the bound. Returns the conversation id.
   */
  saveTurn(input: SaveTurnInput): number {
    const now = this.now();
    return this.db.transaction(() => {
      let conversationId = input.conversationId;
      if (conversationId !== undefined) {
        const exists = this.prepare<[number, string, string], { id: number }>('SELECT id FROM conversations WHERE id = ? AND platform = ? AND chat_id = ?')
          .get(conversationId, input.platform, input.chatId);
        if (!exists) conversationId = undefined; // forgotten meanwhile (/reset, expiry): start afresh if we can
      }
      if (conversationId === undefined) {
        if (!input.image) throw new VistyleError('INTERNAL', 'a new conversation needs its image');
        const sha256 = createHash('sha256').update(input.image.bytes).digest('hex');
        this.prepare('INSERT OR IGNORE INTO images (sha256, bytes, mime, size, created_at) VALUES (?, ?, ?, ?, ?)')
          .run(sha256, Buffer.from(input.image.bytes.buffer, input.image.bytes.byteOffset, input.image.bytes.byteLength), input.image.mime ?? null, input.image.bytes.byteLength, now);
        conversationId = Number(
          this.prepare('INSERT INTO conversations (platform, chat_id, user_id, image_sha256, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)')
            .run(input.platform, input.chatId, input.userId, sha256, now, now).lastInsertRowid,
        );
      } else {
        this.prepare('UPDATE conversations SET updated_at = ? WHERE id = ?').run(now, conversationId);
      }
      const next = this.prepare<[number], { seq: number | null }>('SELECT MAX(seq) AS seq FROM turns WHERE conversation_id = ?')
        .get(conversationId)!;
      const seq = (next.seq ?? 0) + 1;
      this.prepare('INSERT INTO turns (conversation_id, seq, question, answer, style, created_at) VALUES (?, ?, ?, ?, ?, ?)')
        .run(conversationId, seq, input.question, input.answer, input.style, now);
      this.prepare('DELETE FROM turns WHERE conversation_id = ? AND seq <= ?').run(conversationId, seq - this.maxTurns);
      const link = this.prepare(
        'INSERT OR REPLACE INTO message_links (platform, chat_id, message_id, conversation_id) VALUES (?, ?, ?, ?)',
      );
      for (const messageId of new Set(input.messageIds)) link.run(input.platform, input.chatId, messageId, conversationId);
      this.trimChat(input.platform, input.chatId);
      return conversationId;
    })();
  }

  /** Forgets every conversation of a chat (/reset). Returns how many were forgotten. */
  resetChat(platform: string, chatId: string): number {
    return this.db.transaction(() => {
      const ids = this.prepare<[string, string], { id: number }>('SELECT id FROM conversations WHERE platform = ? AND chat_id = ?')
        .all(platform, chatId)
        .map((row) => row.id);
      this.deleteConversations(ids);
      return ids.length;
    })();
  }

  /** Forgets conversations idle for longer than `ttlMs`. Returns how many. */
  expire(ttlMs: number): number {
    const cutoff = this.now() - ttlMs;
    return this.db.transaction(() => {
      const ids = this.prepare<[number], { id: number }>('SELECT id FROM conversations WHERE updated_at < ?')
        .all(cutoff)
        .map((row) => row.id);
      this.deleteConversations(ids);
      return ids.length;
    })();
  }

  /** Counts, for tests and admin output. */
  stats(): { conversations: number; turns: number; images: number; links: number } {
    const count = (table: string) => (this.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
    return { conversations: count('conversations'), turns: count('turns'), images: count('images'), links: count('message_links') };
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private trimChat(platform: string, chatId: string): void {
    const ids = this.prepare<[string, string, number], { id: number }>(
        'SELECT id FROM conversations WHERE platform = ? AND chat_id = ? ORDER BY updated_at DESC, id DESC LIMIT -1 OFFSET ?',
      )
      .all(platform, chatId, this.maxConversations)
      .map((row) => row.id);
    this.deleteConversations(ids);
  }

  private deleteConversations(ids: number[]): void {
    if (ids.length === 0) return;
    const remove = this.prepare('DELETE FROM conversations WHERE id = ?');
    for (const id of ids) remove.run(id); // turns and links cascade
    this.db.exec('DELETE FROM images WHERE sha256 NOT IN (SELECT image_sha256 FROM conversations)');
  }

  private withTurns(row: ConversationRow): ConversationWithTurns {
    const turns = this.prepare<[number], { question: string; answer: string; style: string; created_at: number }>(
        'SELECT question, answer, style, created_at FROM turns WHERE conversation_id = ? ORDER BY seq',
      )
      .all(row.id)
      .map((t) => ({ question: t.question, answer: t.answer, style: t.style, createdAt: t.created_at }));
    return {
      id: row.id,
      platform: row.platform,
      chatId: row.chat_id,
      userId: row.user_id,
      imageSha256: row.image_sha256,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      turns,
    };
  }
}

interface ConversationRow {
  id: number;
  platform: string;
  chat_id: string;
  user_id: string;
  image_sha256: string;
  created_at: number;
  updated_at: number;
}
