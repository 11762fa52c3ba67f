// Where each configured value came from: the process environment, or a `.env` file that
// src/config/dotenv.ts loaded. An error caused by a configured value says so ("VISTYLE_HOME=/var/lib/vistyle
// was set in /srv/bot/.env"), because the operator who copied an example file rarely remembers
// that it set a path or a provider for them.
import { redactSecrets } from '../log.js';
import { resolve } from 'node:path';
import { isVistyleError, type VistyleError } from '../errors.js';

/** Where a variable's value came from. */
export type ValueSource = { kind: 'environment' } | { kind: 'file'; file: string };

interface Recorded {
  file: string;
  value: string;
}

/** Variables a `.env` file set (and the value it set), by name. */
const fromFiles = new Map<string, Recorded>();

/** Notes that `file` set these variables (ones already in the environment were left alone). */
export function recordFileValues(file: string, values: Record<string, string>): void {
  const path = resolve(file);
  for (const [name, value] of Object.entries(values)) fromFiles.set(name, { file: path, value });
}

/** Forgets what the `.env` files set (tests). */
export function clearRecordedSources(): void {
  fromFiles.clear();
}

/** Where `name` came from in `env`, or undefined when it is not set (empty counts as unset). */
export function sourceOf(name: string, env: NodeJS.ProcessEnv = process.env): ValueSource | undefined {
  const value = env[name];
  if (value === undefined || value.trim() === '') return undefined;
  const recorded = fromFiles.get(name);
  // A value that differs from what the file set was set (or changed) by someone else.
  if (recorded && recorded.value === value) return { kind: 'file', file: recorded.file };
  return { kind: 'environment' };
}

/** "the environment" or the file's path. */
export function describeSource(source: ValueSource): string {
  return source.kind === 'file' ? source.file : 'the environment';
}

/** Values that are secrets: their origin may be named, never their value. */
const SECRET_NAMES = /TOKEN|SECRET|API_KEY|PASSWORD/;

/**
 * A value as an error may show it: a password in a URL (`redis://user:pass@host`,
 * `https://user:pass@mirror`) masked, and any registered secret redacted.
 */
function shownValue(value: string): string {
  return redactSecrets(value.replace(/(\/\/[^/@\s:]*:)[^/@\s]*@/g, '$1***@'));
}

/**
 * `NAME=value was set in FILE` (or `in the environment`) for each name that is set, joined with
 * "; ". Secrets are named without their value. Empty when none of them is set.
 */
export function originNote(names: readonly string[], env: NodeJS.ProcessEnv = process.env): string {
  const parts: string[] = [];
  for (const name of new Set(names)) {
    const source = sourceOf(name, env);
    if (!source) continue;
    const shown = SECRET_NAMES.test(name) ? name : `${name}=${shownValue(env[name]!.trim())}`;
    parts.push(`${shown} was set in ${describeSource(source)}`);
  }
  return parts.join('; ');
}

/** Variables that name files or folders: an error about a path under one of them is about it. */
const PATH_VARIABLES = ['VISTYLE_MODEL_DIR', 'VISTYLE_DB_PATH', 'VISTYLE_STYLES_FILE', 'VISTYLE_LOG_FILE', 'VISTYLE_ADAPTERS_DIR', 'VISTYLE_HOME'];

const noted = Symbol('vistyle.originNoted');

/**
 * The configured variables an error is about: those it lists (details.variables), those its
 * message names, the path variables whose folder or file it mentions, and VISTYLE_PROVIDER for a
 * provider that cannot run.
 */
export function variablesBehind(error: VistyleError, env: NodeJS.ProcessEnv = process.env): string[] {
  const names: string[] = [];
  const listed = error.details?.variables;
  if (Array.isArray(listed)) names.push(...listed.map(String));
  for (const match of error.message.matchAll(/\b(?:VISTYLE|TELEGRAM|DISCORD|DEEPSEEK|OPENAI|HF|MODELSCOPE)_[A-Z0-9_]+\b/g)) names.push(match[0]);
  const mentioned = [error.message, ...['path', 'file', 'dir'].map((key) => error.details?.[key]).filter((v): v is string => typeof v === 'string')];
  for (const name of PATH_VARIABLES) {
    const value = env[name]?.trim();
    if (!value) continue;
    const path = resolve(value);
    const inside = (text: string) => text.includes(path) || text.includes(value);
    // VISTYLE_HOME only explains a path when no more precise variable does
    if (name === 'VISTYLE_HOME' && names.some((n) => PATH_VARIABLES.includes(n))) continue;
    if (mentioned.some(inside)) names.push(name);
  }
  // the configured provider, when it is the one that cannot run (not one given by a flag)
  const provider = env.VISTYLE_PROVIDER?.trim().toLowerCase();
  if (error.code === 'PROVIDER_UNAVAILABLE' && provider && provider !== 'cpu' && error.message.toLowerCase().includes(provider)) {
    names.push('VISTYLE_PROVIDER', ...(error.details?.deviceId === undefined ? [] : ['VISTYLE_DEVICE_ID']));
  }
  return [...new Set(names)];
}

/**
 * Adds to an error's message where the configured values behind it came from, once
 * ("... (VISTYLE_PROVIDER=cuda was set in /srv/bot/.env)"). Returns the error.
 */
export function explainConfiguredValues<E>(error: E, env: NodeJS.ProcessEnv = process.env): E {
  if (!isVistyleError(error) || (error as unknown as Record<symbol, unknown>)[noted]) return error;
  const names = variablesBehind(error, env);
  let note = originNote(names, env);
  if (note && error.code === 'PROVIDER_UNAVAILABLE' && names.includes('VISTYLE_PROVIDER')) note += '; without it vistyle runs on the CPU';
  (error as unknown as Record<symbol, unknown>)[noted] = true;
  if (note && !error.message.includes(' was set in ')) error.message = `${error.message} (${note})`;
  return error;
}
