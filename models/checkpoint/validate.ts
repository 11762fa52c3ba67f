// zod validation of checkpoint JSON files with error messages that name the file and the field:
// "config.json: text_config.num_attention_heads is missing".
import { readFileSync, existsSync } from 'node:fs';
import { basename } from 'node:path';
import type { z } from 'zod';
import { VistyleError } from '../../src/errors.js';

export function checkpointError(message: string, cause?: unknown): VistyleError {
  return new VistyleError('CHECKPOINT_INVALID', message, cause === undefined ? undefined : { cause });
}

/** Reads and parses a JSON file; a missing or malformed file is a CHECKPOINT_INVALID naming it. */
export function readJsonFile(path: string): unknown {
  const file = basename(path);
  if (!existsSync(path)) throw checkpointError(`${file} is missing (looked for ${path})`);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw checkpointError(`${file}: cannot read (${(error as Error).message})`, error);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw checkpointError(`${file}: not valid JSON (${(error as Error).message})`, error);
  }
}

function valueAt(data: unknown, path: readonly PropertyKey[]): { found: boolean; value: unknown } {
  let cur: unknown = data;
  for (const key of path) {
    if (cur === null || typeof cur !== 'object' || !(String(key) in (cur as object))) return { found: false, value: undefined };
    cur = (cur as Record<string, unknown>)[String(key)];
  }
  return { found: true, value: cur };
}

/** Validates `data` with `schema`; the first problem becomes one clear line naming file and field. */
export function parseWith<S extends z.ZodType>(schema: S, data: unknown, file: string): z.output<S> {
  const result = schema.safeParse(data);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = issue.path.map(String).join('.');
  const at = valueAt(data, issue.path);
  const where = field === '' ? file : `${file}: ${field}`;
  if (!at.found || at.value === undefined) throw checkpointError(`${where} is missing`);
  throw checkpointError(`${where} is invalid (${issue.message}; got ${JSON.stringify(at.value)?.slice(0, 80)})`);
}
