// `vistyle doctor`: every check in order, one line each, and whether `vistyle start` can work.
import { loadConfig } from '../config/config.js';
import { isVistyleError, type VistyleError } from '../errors.js';
import { redactSecrets } from '../log.js';
import { checkConfig, checkNode } from './checks/environment.js';
import { checkAdapters, checkFfmpeg, checkStore, checkStyles } from './checks/files.js';
import { checkDisk, checkModel } from './checks/model.js';
import { checkPlatforms } from './checks/platforms.js';
import { checkPorts } from './checks/ports.js';
import { checkProviders } from './checks/providers.js';
import { checkSmokeRun } from './checks/smoke.js';
import { result, type CheckResult, type CheckStatus, type DoctorContext } from './types.js';

export interface DoctorOptions {
  env?: NodeJS.ProcessEnv;
  /** The env file the CLI read (null: none). */
  envFile?: string | null;
  /** Skip the one-token run (it loads the model: seconds to a minute). */
  smoke?: boolean;
  networkTimeoutMs?: number;
  /** Each line as soon as its check is done. */
  onResult?: (result: CheckResult) => void;
}

export interface DoctorReport {
  results: CheckResult[];
  /** Something is broken: `vistyle start` cannot work until it is fixed. */
  failed: number;
  /** Quick-start steps still to take (pull the model, set a token). */
  todo: number;
  warnings: number;
}

export async function runDoctor(options: DoctorOptions = {}): Promise<DoctorReport> {
  const env = options.env ?? process.env;
  const results: CheckResult[] = [];
  const add = (...found: CheckResult[]): void => {
    for (const r of found) {
      results.push(r);
      options.onResult?.(r);
    }
  };
  let config = null;
  let configError: VistyleError | null = null;
  try {
    config = loadConfig(env);
  } catch (error) {
    if (!isVistyleError(error)) throw error;
    configError = error;
  }
  const ctx: DoctorContext = { env, envFile: options.envFile ?? null, config, configError, networkTimeoutMs: options.networkTimeoutMs ?? 8000 };

  add(checkNode());
  add(...checkConfig(ctx));
  if (!config) {
    add(result('doctor', 'skip', 'the other checks need a valid configuration: fix it and run `vistyle doctor` again'));
    return summarize(results);
  }
  const model = checkModel(ctx);
  add(...model.results);
  add(checkDisk(ctx, model.folder !== null));
  add(...(await checkProviders(ctx)));
  if (options.smoke !== false) {
    // A broken model folder or provider is already reported; the smoke run would only repeat it.
    const brokenModel = model.results.some((r) => r.status === 'fail');
    const brokenProvider = results.some((r) => r.check === 'provider' && r.status === 'fail');
    if (brokenModel) add(result('smoke', 'skip', 'not run: the model folder is broken (see above)'));
    else if (brokenProvider) add(result('smoke', 'skip', 'not run: the configured provider cannot run here (see above)'));
    else add(await checkSmokeRun(ctx, model.folder?.dir ?? null));
  }
  add(...(await checkPlatforms(config, env, ctx.networkTimeoutMs)));
  add(...(await checkPorts(ctx)));
  add(checkStore(ctx));
  const styles = checkStyles(ctx);
  add(...styles.results);
  add(...checkAdapters(ctx, styles.registry, model.folder));
  styles.registry?.close();
  add(await checkFfmpeg(env));
  return summarize(results);
}

function summarize(results: CheckResult[]): DoctorReport {
  const count = (status: CheckStatus) => results.filter((r) => r.status === status).length;
  return { results, failed: count('fail'), todo: count('todo'), warnings: count('warn') };
}

const TAGS: Record<CheckStatus, string> = { ok: 'ok  ', warn: 'warn', todo: 'todo', fail: 'FAIL', skip: '--  ' };

/** One line: status, check, what was found, and the fix. Secrets are redacted. */
export function formatResult(r: CheckResult): string {
  const fix = r.fix && r.status !== 'ok' && r.status !== 'skip' ? ` -> fix: ${r.fix}` : '';
  return redactSecrets(`${TAGS[r.status]}  ${r.check.padEnd(9)} ${r.text}${fix}`);
}

/** The last line: what the report means for `vistyle start`. */
export function formatVerdict(report: DoctorReport): string {
  if (report.failed > 0) return `${report.failed} problem${report.failed === 1 ? '' : 's'} (FAIL) stop \`vistyle start\` from working; fix them and run \`vistyle doctor\` again`;
  if (report.todo > 0) return `nothing is broken; ${report.todo} step${report.todo === 1 ? '' : 's'} (todo) left before \`vistyle start\` works (\`vistyle demo\` works now)`;
  return `ready: \`vistyle start\` should work${report.warnings ? ` (${report.warnings} warning${report.warnings === 1 ? '' : 's'} worth a look)` : ''}`;
}
