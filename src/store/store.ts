// The bot's persistent state in SQLite (better-sqlite3, WAL): per-user and per-chat settings
// (style, language) and conversations. A conversation belongs to one chat on one platform — a
// private chat and a group never share one — and holds its pictures, each attached to the turn it
// came with (the bytes content-addressed: stored once, shared by every conversation and turn that
// shows them), its question/answer turns (bounded) and the message ids that lead to it (the user's
// photos and the bot's answers), so a reply to any of them continues it. Old conversations expire.
// A picture outlives its turn when old turns are dropped (the bot then shows it with the oldest
// turn kept); the newest `maxImagesPerConversation` are kept.
//
// Faults (issue 14): the database is checked at open (PRAGMA quick_check) and a damaged one is
// refused with one line that names the file and how to recover; it is never recreated behind the
// operator's back. At run time a write the disk cannot take (full, read-only, I/O error) is
// refused with STORE_UNAVAILABLE instead of throwing SQLite's error into the caller: reads go on,
// the refusal is logged at most once a minute and counted (health()), and writes simply work again
// once the disk does. WAL with synchronous=NORMAL: a killed process (SIGKILL, OOM) loses no
// committed transaction; a power cut may roll back the last ones but never damages the file.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3, { type Database, type Statement } from 'better-sqlite3';
import { VistyleError } from '../errors.js';
import { errorFields, moduleLogger, type Logger } from '../log.js';
import { migrate } from './migrations.js';

export type SettingScope = 'user' | 'chat';

export interface Settings {
  style: string | null;
  language: string | null;
}

export interface Turn {
  /** Order within the conversation (1, 2, ...; gaps where old turns were dropped). */
  seq: number;
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
  /** Its pictures, oldest first (getImage(sha256) has the bytes). */
  images: ConversationImage[];
  createdAt: number;
  updatedAt: number;
}

export interface ConversationImage {
  sha256: string;
  /** The turn it came with (that turn may have been dropped since). */
  turnSeq: number;
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
  /** Pictures kept per conversation (oldest dropped first). Default 32. */
  maxImagesPerConversation?: number;
  /** Clock, for tests. */
  now?: () => number;
  /** Where refused writes are reported (default: the `store` module logger). */
  logger?: Logger;
}

/** Whether the database takes writes, for health checks and metrics. */
export interface StoreHealth {
  /** False from a refused write until the next write that succeeds. */
  writable: boolean;
  /** Writes refused since the store was opened. */
  refusedWrites: number;
  /** SQLite's code for the last refusal (SQLITE_FULL, SQLITE_READONLY, SQLITE_IOERR_WRITE...). */
  lastFailure?: string;
}

/** How often a run of refused writes is logged. */
const REFUSAL_LOG_INTERVAL_MS = 60_000;

/** SQLite result codes that mean "the disk does not take writes now", not a bug in a statement. */
function isDiskFault(code: string): boolean {
  return code === 'SQLITE_FULL' || code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_IOERR') || code.startsWith('SQLITE_CANTOPEN');
}

function sqliteCode(error: unknown): string {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}

/** Why the disk refused, in words, for the log line. */
function describeDiskFault(code: string): string {
  if (code === 'SQLITE_FULL') return 'the disk is full';
  if (code.startsWith('SQLITE_READONLY')) return 'the database or its disk is read-only';
  return 'the disk reported an I/O error';
}

function recoveryHint(path: string): string {
  return (
    `vistyle will not recreate it on its own. Stop the bot and move the file aside with its -wal and -shm files ` +
    `(mv ${path} ${path}.damaged); then restore a backup (docs/deploy.md, "Backing up the SQLite store"), ` +
    `or salvage what SQLite can read (sqlite3 ${path}.damaged .recover | sqlite3 ${path}), ` +
    `or start without it (settings and conversations start empty)`
  );
}

export interface SaveTurnInput {
  platform: string;
  chatId: string;
  userId: string;
  /** Continue this conversation; otherwise the turn's pictures start a new one. */
  conversationId?: number;
  /** Pictures this turn brought, in order (attached to it). */
  images?: PictureInput[];
  /** One picture: the same as `images: [image]` (after `images`, when both are given). */
  image?: PictureInput;
  /**
   * When `conversationId` was forgotten meanwhile (/reset, expiry) and the turn brought no
   * pictures: the ones a new conversation starts with (what the answer was about).
   */
  restartImages?: PictureInput[];
  question: string;
  answer: string;
  style: string;
  /** Message ids to link to the conversation (the user's message(s) and the bot's answer). */
  messageIds: string[];
}

export interface PictureInput {
  bytes: Uint8Array;
  mime?: string | null;
}

export class Store {
  readonly path: string;
  private readonly db: Database;
  private readonly maxTurns: number;
  private readonly maxConversations: number;
  private readonly maxImages: number;
  private readonly now: () => number;
  /** Statements are compiled once and reused: preparing on every call showed up under load. */
  private readonly statements = new Map<string, Statement>();
  private readonly log: Logger;
  private healthState: StoreHealth = { writable: true, refusedWrites: 0 };
  /** Refusals not yet reported, and when the last report was. */
  private unreported = 0;
  private lastReportAt = -Infinity;

  private constructor(path: string, db: Database, options: StoreOptions) {
    this.path = path;
    this.db = db;
    this.log = options.logger ?? moduleLogger('store');
    this.maxTurns = options.maxTurnsPerConversation ?? 20;
    this.maxConversations = options.maxConversationsPerChat ?? 20;
    this.maxImages = options.maxImagesPerConversation ?? 32;
    this.now = options.now ?? Date.now;
  }

  /**
   * Opens (creating it and its folder if needed), checks and migrates the database at `path`.
   * Throws STORE_CORRUPT for a damaged database or one from a newer vistyle, STORE_UNAVAILABLE
   * when the file cannot be opened or written (details.transient: a full disk or an I/O error,
   * which may pass; otherwise permissions or a read-only file system).
   */
  static open(path: string, options: StoreOptions = {}): Store {
    let db: Database;
    const existed = path !== ':memory:' && existsSync(path);
    try {
      if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
      db = new BetterSqlite3(path);
    } catch (error) {
      throw openFailure(path, error);
    }
    try {
      // Before anything writes to it: a damaged file must be reported as it is.
      if (existed) checkIntact(db, path);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('busy_timeout = 5000');
      db.pragma('foreign_keys = ON');
      migrate(db);
    } catch (error) {
      db.close();
      throw openFailure(path, error);
    }
    return new Store(path, db, options);
  }

  /** Whether writes get through (for /readyz and the metrics). */
  health(): StoreHealth {
    return { ...this.healthState };
  }

  /**
   * Runs a write. A disk that refuses it (full, read-only, I/O error) becomes STORE_UNAVAILABLE,
   * counted and logged at most once a minute; the first write that succeeds afterwards says so.
   */
  private write<T>(what: string, run: () => T): T {
    let result: T;
    try {
      result = run();
    } catch (error) {
      const code = sqliteCode(error);
      if (!isDiskFault(code)) throw error;
      this.refused(what, code, error);
      throw new VistyleError('STORE_UNAVAILABLE', `the database ${this.path} refused a write (${what}): ${describeDiskFault(code)}`, {
        cause: error,
        details: { path: this.path, sqlite: code },
      });
    }
    if (!this.healthState.writable) {
      this.log.info({ db: this.path, refusedWrites: this.healthState.refusedWrites, unreported: this.unreported }, 'the database takes writes again');
      this.healthState = { ...this.healthState, writable: true };
      this.unreported = 0;
      this.lastReportAt = -Infinity;
    }
    return result;
  }

  private refused(what: string, code: string, error: unknown): void {
    this.healthState = { writable: false, refusedWrites: this.healthState.refusedWrites + 1, lastFailure: code };
    this.unreported++;
    const now = Date.now();
    if (now - this.lastReportAt < REFUSAL_LOG_INTERVAL_MS) return;
    this.log.warn(
      { db: this.path, sqlite: code, refused: this.unreported, refusedTotal: this.healthState.refusedWrites, write: what, error: errorFields(error) },
      `the database cannot be written (${describeDiskFault(code)}): settings changes and conversations are not saved; answers go on`,
    );
    this.unreported = 0;
    this.lastReportAt = now;
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
    this.write(`${column} setting`, () => this.prepare(
        `INSERT INTO settings (scope, platform, id, ${column}, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (scope, platform, id) DO UPDATE SET ${column} = excluded.${column}, updated_at = excluded.updated_at`,
      )
      .run(scope, platform, id, value, this.now()));
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
   * Records an answered question: continues `conversationId` or starts a conversation with the
   * turn's pictures, appends the turn (dropping the oldest beyond the bound) with its pictures,
   * links the message ids, and drops the chat's least recently used conversations beyond the
   * bound. Returns the conversation id.
   */
  saveTurn(input: SaveTurnInput): number {
    const now = this.now();
    const pictures = [...(input.images ?? []), ...(input.image ? [input.image] : [])];
    return this.write('conversation turn', () => this.db.transaction(() => {
      let conversationId = input.conversationId;
      let shown = pictures;
      if (conversationId !== undefined) {
        const exists = this.prepare<[number, string, string], { id: number }>('SELECT id FROM conversations WHERE id = ? AND platform = ? AND chat_id = ?')
          .get(conversationId, input.platform, input.chatId);
        if (!exists) {
          // forgotten meanwhile (/reset, expiry): start afresh if we can
          conversationId = undefined;
          if (shown.length === 0) shown = input.restartImages ?? [];
        }
      }
      if (conversationId === undefined) {
        if (shown.length === 0) throw new VistyleError('INTERNAL', 'a new conversation needs its pictures');
        conversationId = Number(
          this.prepare('INSERT INTO conversations (platform, chat_id, user_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?)')
            .run(input.platform, input.chatId, input.userId, now, now).lastInsertRowid,
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
      if (shown.length > 0) this.addPictures(conversationId, seq, shown, now);
      const link = this.prepare(
        'INSERT OR REPLACE INTO message_links (platform, chat_id, message_id, conversation_id) VALUES (?, ?, ?, ?)',
      );
      for (const messageId of new Set(input.messageIds)) link.run(input.platform, input.chatId, messageId, conversationId);
      this.trimChat(input.platform, input.chatId);
      return conversationId;
    })());
  }

  /** Stores the bytes (once per content) and attaches them to the turn, keeping the newest maxImages. */
  private addPictures(conversationId: number, seq: number, pictures: PictureInput[], now: number): void {
    const storeBytes = this.prepare('INSERT OR IGNORE INTO images (sha256, bytes, mime, size, created_at) VALUES (?, ?, ?, ?, ?)');
    const attach = this.prepare('INSERT INTO conversation_images (conversation_id, position, turn_seq, image_sha256) VALUES (?, ?, ?, ?)');
    const last = this.prepare<[number], { position: number | null }>('SELECT MAX(position) AS position FROM conversation_images WHERE conversation_id = ?')
      .get(conversationId)!;
    let position = (last.position ?? -1) + 1;
    for (const picture of pictures) {
      const sha256 = createHash('sha256').update(picture.bytes).digest('hex');
      storeBytes.run(sha256, Buffer.from(picture.bytes.buffer, picture.bytes.byteOffset, picture.bytes.byteLength), picture.mime ?? null, picture.bytes.byteLength, now);
      attach.run(conversationId, position++, seq, sha256);
    }
    const dropped = this.prepare('DELETE FROM conversation_images WHERE conversation_id = ? AND position < ?').run(conversationId, position - this.maxImages);
    if (dropped.changes > 0) this.dropUnusedImages();
  }

  /** Forgets every conversation of a chat (/reset). Returns how many were forgotten. */
  resetChat(platform: string, chatId: string): number {
    return this.write('reset', () => this.db.transaction(() => {
      const ids = this.prepare<[string, string], { id: number }>('SELECT id FROM conversations WHERE platform = ? AND chat_id = ?')
        .all(platform, chatId)
        .map((row) => row.id);
      this.deleteConversations(ids);
      return ids.length;
    })());
  }

  /** Forgets conversations idle for longer than `ttlMs`. Returns how many. */
  expire(ttlMs: number): number {
    const cutoff = this.now() - ttlMs;
    return this.write('expiry', () => this.db.transaction(() => {
      const ids = this.prepare<[number], { id: number }>('SELECT id FROM conversations WHERE updated_at < ?')
        .all(cutoff)
        .map((row) => row.id);
      this.deleteConversations(ids);
      return ids.length;
    })());
  }

  /** Counts, for tests and admin output. */
  stats(): { conversations: number; turns: number; images: number; links: number; pictures: number } {
    const count = (table: string) => (this.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
    return {
      conversations: count('conversations'),
      turns: count('turns'),
      /** Distinct picture bytes stored. */
      images: count('images'),
      links: count('message_links'),
      /** Pictures shown in conversations (the same bytes twice count twice). */
      pictures: count('conversation_images'),
    };
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
    for (const id of ids) remove.run(id); // turns, links and picture references cascade
    this.dropUnusedImages();
  }

  /** Picture bytes no conversation shows any more. */
  private dropUnusedImages(): void {
    this.prepare('DELETE FROM images WHERE sha256 NOT IN (SELECT image_sha256 FROM conversation_images)').run();
  }

  private withTurns(row: ConversationRow): ConversationWithTurns {
    const turns = this.prepare<[number], { seq: number; question: string; answer: string; style: string; created_at: number }>(
        'SELECT seq, question, answer, style, created_at FROM turns WHERE conversation_id = ? ORDER BY seq',
      )
      .all(row.id)
      .map((t) => ({ seq: t.seq, question: t.question, answer: t.answer, style: t.style, createdAt: t.created_at }));
    const images = this.prepare<[number], { image_sha256: string; turn_seq: number }>(
        'SELECT image_sha256, turn_seq FROM conversation_images WHERE conversation_id = ? ORDER BY position',
      )
      .all(row.id)
      .map((image) => ({ sha256: image.image_sha256, turnSeq: image.turn_seq }));
    return {
      id: row.id,
      platform: row.platform,
      chatId: row.chat_id,
      userId: row.user_id,
      images,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      turns,
    };
  }
}

/** PRAGMA quick_check: every page and record readable, the b-trees well formed (not the index contents). */
function checkIntact(db: Database, path: string): void {
  const rows = db.pragma('quick_check(5)') as Array<{ quick_check: string }>;
  const problems = rows.map((row) => row.quick_check).filter((line) => line !== 'ok');
  if (problems.length > 0) {
    throw new VistyleError('STORE_CORRUPT', `the database ${path} is damaged (${problems.join('; ')}). ${recoveryHint(path)}`, {
      details: { path, problems },
    });
  }
}

/** The error for a database that cannot be opened, checked or migrated, saying what to do. */
function openFailure(path: string, error: unknown): VistyleError {
  if (error instanceof VistyleError) return error;
  const code = sqliteCode(error);
  const message = (error as Error)?.message ?? String(error);
  const details = { path, ...(code ? { sqlite: code } : {}) };
  if (code === 'SQLITE_CORRUPT' || code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') {
    return new VistyleError('STORE_CORRUPT', `the database ${path} is damaged (${message}). ${recoveryHint(path)}`, { cause: error, details });
  }
  if (/newer than this vistyle/.test(message)) {
    return new VistyleError('STORE_CORRUPT', `the database ${path}: ${message}; run the newer vistyle, or restore a backup made for this one`, { cause: error, details });
  }
  const errno = (error as NodeJS.ErrnoException)?.code ?? '';
  if (code === 'SQLITE_FULL' || code.startsWith('SQLITE_IOERR') || errno === 'ENOSPC') {
    return new VistyleError('STORE_UNAVAILABLE', `cannot open the database ${path}: ${message} (free some disk space)`, {
      cause: error,
      details: { ...details, transient: true },
    });
  }
  return new VistyleError(
    'STORE_UNAVAILABLE',
    `cannot open the database ${path}: ${message} (the bot needs to read and write it and its folder: check the permissions, ` +
      `that the file system is not read-only, or set VISTYLE_DB_PATH)`,
    { cause: error, details: { ...details, transient: false } },
  );
}

interface ConversationRow {
  id: number;
  platform: string;
  chat_id: string;
  user_id: string;
  created_at: number;
  updated_at: number;
}
