// Loads `.env` from the working directory (or VISTYLE_ENV_FILE) without overriding variables that
// are already set, so operators can keep tokens out of shell history. Which variables the file set
// is recorded (provenance.ts), so that an error caused by one of them can say it came from there.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import dotenv from 'dotenv';
import { recordFileValues } from './provenance.js';

/** The env file vistyle reads: VISTYLE_ENV_FILE, else `.env` in the working directory. */
export function envFilePath(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.VISTYLE_ENV_FILE?.trim() || '.env');
}

/** Loads the env file when there is one; returns its path, or null when there is none. */
export function loadDotEnv(env: NodeJS.ProcessEnv = process.env): string | null {
  const file = envFilePath(env);
  if (!existsSync(file)) return null;
  const parsed = dotenv.parse(readFileSync(file));
  const applied: Record<string, string> = {};
  for (const [name, value] of Object.entries(parsed)) {
    // set before the file was read (the shell, systemd, docker): the environment wins
    if (env[name] !== undefined) continue;
    env[name] = value;
    applied[name] = value;
  }
  recordFileValues(file, applied);
  return file;
}
