// What `vistyle start` checks before it loads the model (seconds to a minute for the real one),
// so that a start-up that cannot work fails at once with its exit status: the model folder is
// there and complete (66), and no platform rejects its token (78). A platform that cannot be
// reached is only logged here: the adapter tries it again and fails as it always has (69).
// Misspelt VISTYLE_* names are logged as warnings.
import type { AppConfig } from '../config/config.js';
import { openModelFolder } from '../engine/model-folder.js';
import { VistyleError } from '../errors.js';
import type { Logger } from '../log.js';
import { unknownVariables } from './checks/environment.js';
import { platformTokenProblems } from './checks/platforms.js';

export const PREFLIGHT_TIMEOUT_MS = 10_000;

export interface PreflightOptions {
  /** Check the model folder (not when a test supplies its own engine, nor on a queue front end). */
  model: boolean;
  /** Check the platform tokens (not for `vistyle serve`, which runs no platform). */
  platforms?: boolean;
  env: NodeJS.ProcessEnv;
  log: Logger;
}

export async function checkBeforeLoading(config: AppConfig, options: PreflightOptions): Promise<void> {
  for (const warning of unknownVariables({ env: options.env })) options.log.warn({ fix: warning.fix }, warning.text);
  if (options.model) openModelFolder(config.model.dir);
  if (options.platforms === false) return;
  const { rejected, unreachable } = await platformTokenProblems(config, PREFLIGHT_TIMEOUT_MS);
  for (const message of unreachable) options.log.warn(message);
  if (rejected.length > 0) {
    const variables = [...new Set(rejected.flatMap((m) => m.match(/\b(?:TELEGRAM|DISCORD)_[A-Z_]+\b/g) ?? []))];
    throw new VistyleError('CONFIG_INVALID', rejected.join('; '), { details: { variables } });
  }
}
