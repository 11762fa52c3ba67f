// Versioned schema migrations for the bot's SQLite database. The version lives in
// `PRAGMA user_version`; each migration runs in its own transaction and bumps it, so a database
// written by any older vistyle is brought up to date on open, and a database from a newer vistyle
// is refused rather than damaged.
import { createHash } from 'node:crypto';
import type { Database } from 'better-sqlite3';

export interface Migration {
  version: number;
  description: string;
  up(db: Database): void;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'settings (style), conversations with inline images, turns, message links',
    up(db) {
      db.exec(`
        CREATE TABLE settings (
          scope TEXT NOT NULL CHECK (scope IN ('user', 'chat')),
          platform TEXT NOT NULL,
          id TEXT NOT NULL,
          style TEXT,
          updated_at INTEGER NOT NULL,
          PRIMARY KEY (scope, platform, id)
        );
        CREATE TABLE conversations (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          platform TEXT NOT NULL,
          chat_id TEXT NOT NULL,
          user_id TEXT NOT NULL,
          image BLOB NOT NULL,
          image_mime TEXT,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL
        );
        CREATE TABLE turns (
          conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
          seq INTEGER NOT NULL,
          question TEXT NOT NULL,
          answer TEXT NOT NULL,
          style TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          PRIMARY KEY (conversation_id, seq)
        );
        CREATE TABLE message_links (
          platform TEXT NOT NULL,
          chat_id TEXT NOT NULL,
          message_id TEXT NOT NULL,
          conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
          PRIMARY KEY (platform, chat_id, message_id)
        );
      `);
    },
  },
  {
    version: 2,
    description: 'per-user language; content-addressed images shared by conversations; lookup indexes',
    up(db) {
      db.function('vistyle_sha256', { deterministic: true }, (bytes: unknown) =>
        createHash('sha256').update(bytes as Buffer).digest('hex'),
      );
      db.exec(`
        ALTER TABLE settings ADD COLUMN language TEXT;

        CREATE TABLE images (
          sha256 TEXT PRIMARY KEY,
          bytes BLOB NOT NULL,
          mime TEXT,
          size INTEGER NOT NULL,
          created_at INTEGER NOT NULL
        );
        INSERT OR IGNORE INTO images (sha256, bytes, mime, size, created_at)
          SELECT vistyle_sha256(image), image, image_mime, length(image), created_at FROM conversations;

        CREATE TABLE conversations_v2 (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          platform TEXT NOT NULL,
          chat_id TEXT NOT NULL,
          user_id TEXT NOT NULL,
          image_sha256 TEXT NOT NULL REFERENCES images(sha256),
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL
        );
        INSERT INTO conversations_v2 (id, platform, chat_id, user_id, image_sha256, created_at, updated_at)
          SELECT id, platform, chat_id, user_id, vistyle_sha256(image), created_at, updated_at FROM conversations;
      `);
      // Swap the tables with foreign keys off (re-enabled by the caller), as SQLite recommends.
      db.exec(`
        DROP TABLE conversations;
        ALTER TABLE conversations_v2 RENAME TO conversations;
        CREATE INDEX conversations_by_chat ON conversations (platform, chat_id, updated_at);
        CREATE INDEX conversations_by_update ON conversations (updated_at);
        CREATE INDEX message_links_by_conversation ON message_links (conversation_id);
      `);
    },
  },
  {
    version: 3,
    description: 'any number of pictures per conversation, each attached to the turn it came with',
    up(db) {
      // A conversation's one picture becomes its first picture, attached to its oldest turn kept.
      db.exec(`
        CREATE TABLE conversation_images (
          conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
          position INTEGER NOT NULL,
          turn_seq INTEGER NOT NULL,
          image_sha256 TEXT NOT NULL REFERENCES images(sha256),
          PRIMARY KEY (conversation_id, position)
        );
        INSERT INTO conversation_images (conversation_id, position, turn_seq, image_sha256)
          SELECT c.id, 0, COALESCE((SELECT MIN(t.seq) FROM turns t WHERE t.conversation_id = c.id), 1), c.image_sha256 FROM conversations c;
        CREATE INDEX conversation_images_by_image ON conversation_images (image_sha256);

        CREATE TABLE conversations_v3 (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          platform TEXT NOT NULL,
          chat_id TEXT NOT NULL,
          user_id TEXT NOT NULL,
          created_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL
        );
        INSERT INTO conversations_v3 (id, platform, chat_id, user_id, created_at, updated_at)
          SELECT id, platform, chat_id, user_id, created_at, updated_at FROM conversations;
        DROP TABLE conversations;
        ALTER TABLE conversations_v3 RENAME TO conversations;
        CREATE INDEX conversations_by_chat ON conversations (platform, chat_id, updated_at);
        CREATE INDEX conversations_by_update ON conversations (updated_at);
      `);
    },
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/**
 * Brings `db` to `target` (default: the latest version). Returns the versions applied.
 * Throws if the database is newer than this code knows.
 */
export function migrate(db: Database, target: number = SCHEMA_VERSION): number[] {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > SCHEMA_VERSION) {
    throw new Error(`database schema version ${current} is newer than this vistyle supports (${SCHEMA_VERSION})`);
  }
  const applied: number[] = [];
  const pending = MIGRATIONS.filter((m) => m.version > current && m.version <= target);
  if (pending.length === 0) return applied;
  // Table rebuilds need foreign keys off; the pragma is a no-op inside a transaction.
  const foreignKeys = db.pragma('foreign_keys', { simple: true }) as number;
  db.pragma('foreign_keys = OFF');
  try {
    for (const migration of pending) {
      db.transaction(() => {
        migration.up(db);
        const problems = db.pragma('foreign_key_check') as unknown[];
        if (problems.length > 0) throw new Error(`migration ${migration.version} broke foreign keys`);
        db.pragma(`user_version = ${migration.version}`);
      })();
      applied.push(migration.version);
    }
  } finally {
    if (foreignKeys) db.pragma('foreign_keys = ON');
  }
  return applied;
}
