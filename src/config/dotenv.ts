// Loads `.env` from the working directory (or VISTYLE_ENV_FILE) without overriding variables that
// are already set, so operators can keep tokens out of shell history.
import { existsSync } from 'node:fs';
import dotenv from 'dotenv';

export function loadDotEnv(): void {
  const file = process.env.VISTYLE_ENV_FILE ?? '.env';
  if (existsSync(file)) dotenv.config({ path: file, override: false, quiet: true });
}
