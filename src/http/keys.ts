// API keys of the OpenAI-compatible API. Two sources, used together:
//   VISTYLE_API_KEYS       "name=key" entries (or bare keys, named key-1, key-2, ...) separated by
//                          commas or white space; each gets the default limits
//   VISTYLE_API_KEYS_FILE  YAML or JSON: per-key limits and an optional style allow-list
//                            keys:
//                              - name: alice
//                                key: sk-...          # or sha256: <hex of the key>, so the file
//                                inFlight: 2          #   need not hold the key itself
//                                perMinute: 30
//                                styles: [grumpy, plain]
// Keys are compared by their SHA-256 (constant-time lookup of a hash); they are registered with the
// logger's redaction at once, and only a key's name is ever logged or shown.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { VistyleError } from '../errors.js';
import { registerSecret } from '../log.js';

export interface ApiKey {
  /** Shown in logs and metrics instead of the key. */
  name: string;
  /** Requests this key may have waiting or running. */
  inFlight: number;
  /** Requests this key may make per minute; 0 = unlimited. */
  perMinute: number;
  /** Style ids this key may use; null = every style. */
  styles: string[] | null;
}

export interface KeyDefaults {
  inFlight: number;
  perMinute: number;
}

const MIN_KEY_LENGTH = 16;

const FileSchema = z.object({
  keys: z
    .array(
      z
        .object({
          name: z.string().trim().regex(/^[\w.@-]{1,64}$/, { error: 'expected 1-64 characters A-Z a-z 0-9 _ . @ -' }),
          key: z.string().optional(),
          sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, { error: 'expected 64 hex digits' }).optional(),
          inFlight: z.number().int().min(1).max(10_000).optional(),
          perMinute: z.number().int().min(0).max(1_000_000).optional(),
          styles: z.array(z.string().trim().min(1)).optional(),
        })
        .strict(),
    )
    .default([]),
});

export class ApiKeys {
  private readonly byHash = new Map<string, ApiKey>();

  private constructor(entries: Array<{ hash: string; key: ApiKey }>) {
    for (const { hash, key } of entries) this.byHash.set(hash, key);
  }

  /** No keys at all. */
  static none(): ApiKeys {
    return new ApiKeys([]);
  }

  /**
   * Reads VISTYLE_API_KEYS (`envValue`) and VISTYLE_API_KEYS_FILE (`file`). Throws
   * VistyleError('CONFIG_INVALID') naming the variable or file and the entry, never a key.
   */
  static load(options: { envValue?: string | null; file?: string | null; defaults: KeyDefaults }): ApiKeys {
    const entries: Array<{ hash: string; key: ApiKey }> = [];
    const names = new Set<string>();
    const add = (name: string, hash: string, key: ApiKey, where: string) => {
      if (names.has(name)) throw invalid(`${where}: the key name "${name}" is used twice`);
      if (entries.some((entry) => entry.hash === hash)) throw invalid(`${where}: key "${name}" is the same key as another one`);
      names.add(name);
      entries.push({ hash, key });
    };

    const tokens = (options.envValue ?? '').split(/[\s,]+/).filter(Boolean);
    tokens.forEach((token, index) => {
      const eq = token.indexOf('=');
      const name = eq > 0 ? token.slice(0, eq) : `key-${index + 1}`;
      const secret = eq > 0 ? token.slice(eq + 1) : token;
      registerSecret(secret);
      if (!/^[\w.@-]{1,64}$/.test(name)) throw invalid(`VISTYLE_API_KEYS: entry ${index + 1} has an invalid name (expected name=key)`);
      checkKey(secret, `VISTYLE_API_KEYS: key "${name}"`);
      add(name, sha256(secret), { name, ...options.defaults, styles: null }, 'VISTYLE_API_KEYS');
    });

    if (options.file) {
      let text: string;
      try {
        text = readFileSync(options.file, 'utf8');
      } catch (error) {
        throw invalid(`VISTYLE_API_KEYS_FILE: cannot read ${options.file} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
      }
      let raw: unknown;
      try {
        raw = parseYaml(text);
      } catch {
        throw invalid(`VISTYLE_API_KEYS_FILE: ${options.file} is not valid YAML or JSON`);
      }
      // Register every plain key before validation can fail, so no message can carry one.
      for (const entry of (raw as { keys?: Array<{ key?: unknown }> } | null)?.keys ?? []) {
        if (typeof entry?.key === 'string') registerSecret(entry.key);
      }
      const parsed = FileSchema.safeParse(raw ?? {});
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        const where = issue.path.filter((part) => part !== 'key').join('.');
        throw invalid(`VISTYLE_API_KEYS_FILE: ${options.file}: ${where || 'the file'}: ${issue.message}`);
      }
      for (const entry of parsed.data.keys) {
        const where = `VISTYLE_API_KEYS_FILE: ${options.file}: key "${entry.name}"`;
        if ((entry.key === undefined) === (entry.sha256 === undefined)) throw invalid(`${where} needs exactly one of key and sha256`);
        if (entry.key !== undefined) checkKey(entry.key, where);
        const hash = entry.key !== undefined ? sha256(entry.key) : entry.sha256!.toLowerCase();
        add(
          entry.name,
          hash,
          {
            name: entry.name,
            inFlight: entry.inFlight ?? options.defaults.inFlight,
            perMinute: entry.perMinute ?? options.defaults.perMinute,
            styles: entry.styles ? entry.styles.map((id) => id.toLowerCase()) : null,
          },
          'VISTYLE_API_KEYS_FILE',
        );
      }
    }
    return new ApiKeys(entries);
  }

  get size(): number {
    return this.byHash.size;
  }

  /** The key an `Authorization: Bearer ...` header names, or undefined. */
  authenticate(authorization: string | undefined): ApiKey | undefined {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!match) return undefined;
    return this.byHash.get(sha256(match[1]!));
  }
}

/** Whether `key` may use this style id. */
export function keyAllowsStyle(key: ApiKey, styleId: string): boolean {
  return key.styles === null || key.styles.includes(styleId.toLowerCase());
}

function checkKey(key: string, where: string): void {
  if (key.length < MIN_KEY_LENGTH) throw invalid(`${where} is shorter than ${MIN_KEY_LENGTH} characters`);
  if (/[\s,]/.test(key)) throw invalid(`${where} contains white space or a comma`);
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

function invalid(message: string): VistyleError {
  return new VistyleError('CONFIG_INVALID', `invalid configuration: ${message}`);
}
