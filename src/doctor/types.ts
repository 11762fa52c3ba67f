// What `vistyle doctor` reports: one result (one line) per thing it looked at.
import type { AppConfig } from '../config/config.js';
import type { VistyleError } from '../errors.js';

/**
 * ok: works. warn: works, but something is worth a look. todo: a quick-start step not taken yet
 * (no model pulled, no platform token): `vistyle start` needs it, nothing is broken. fail: broken,
 * `vistyle start` cannot work until it is fixed. skip: not applicable here, or not checked.
 */
export type CheckStatus = 'ok' | 'warn' | 'todo' | 'fail' | 'skip';

export interface CheckResult {
  /** Short name of the check: node, config, model, ... */
  check: string;
  status: CheckStatus;
  /** What was found, one line. */
  text: string;
  /** What to do about it (for warn, todo and fail). */
  fix?: string;
}

/** What every check may read. */
export interface DoctorContext {
  env: NodeJS.ProcessEnv;
  /** The env file that was read, or null when there was none. */
  envFile: string | null;
  /** The configuration, or null when it is invalid (configError says why). */
  config: AppConfig | null;
  configError: VistyleError | null;
  /** Longest wait for a network answer (platform token checks). */
  networkTimeoutMs: number;
}

export const result = (check: string, status: CheckStatus, text: string, fix?: string): CheckResult =>
  fix === undefined ? { check, status, text } : { check, status, text, fix };
