// Node.js, the env file, the configuration, and variable names that look like typos.
import { configVariableNames } from '../../config/config.js';
import { describeSource, sourceOf } from '../../config/provenance.js';
import { closestName } from '../closest.js';
import { result, type CheckResult, type DoctorContext } from '../types.js';

/** package.json's engines.node. */
export const NODE_MINIMUM = [20, 9] as const;

export function checkNode(version: string = process.versions.node): CheckResult {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  const needed = `${NODE_MINIMUM[0]}.${NODE_MINIMUM[1]}`;
  const ok = major > NODE_MINIMUM[0] || (major === NODE_MINIMUM[0] && minor >= NODE_MINIMUM[1]);
  return ok
    ? result('node', 'ok', `Node.js ${version} (needs ${needed} or newer)`)
    : result('node', 'fail', `Node.js ${version} is too old (vistyle needs ${needed} or newer)`, 'install Node.js 20 LTS or newer (https://nodejs.org, or your distribution\'s nodesource packages)');
}

/**
 * Variables vistyle reads outside the bot's configuration (the data maker, the model download,
 * where the env file is, the benchmark), so they are not mistaken for typos.
 */
export const OTHER_VARIABLES = [
  'VISTYLE_ENV_FILE',
  'VISTYLE_DATA_API_KEY',
  'VISTYLE_DATA_API_BASE',
  'VISTYLE_DATA_API_MODEL',
  'VISTYLE_HF_ENDPOINT',
  'VISTYLE_MODELSCOPE_ENDPOINT',
  'VISTYLE_ADAPTERS_DIR',
  'VISTYLE_BENCH_OUT',
  'DEEPSEEK_API_KEY',
  'OPENAI_API_KEY',
  'HF_ENDPOINT',
  'HF_TOKEN',
  'MODELSCOPE_ENDPOINT',
] as const;

export function knownVariableNames(): string[] {
  return [...new Set([...configVariableNames(), ...OTHER_VARIABLES])];
}

/**
 * Names that vistyle does not read but that look like its own: every VISTYLE_* name, and the
 * TELEGRAM_* / DISCORD_* names of the env file (other software may use those in the environment).
 */
export function unknownVariables(ctx: Pick<DoctorContext, 'env'>): CheckResult[] {
  const known = knownVariableNames();
  const results: CheckResult[] = [];
  for (const name of Object.keys(ctx.env).sort()) {
    if (known.includes(name)) continue;
    const source = sourceOf(name, ctx.env);
    const ours = name.startsWith('VISTYLE_') || (/^(TELEGRAM|DISCORD)_/.test(name) && source?.kind === 'file');
    if (!ours || !source) continue;
    const guess = closestName(name, known);
    results.push(
      result(
        'config',
        'warn',
        `${name} (set in ${describeSource(source)}) is not a vistyle setting and is ignored${guess ? `; did you mean ${guess}?` : ''}`,
        guess ? `rename it to ${guess}` : 'remove it (deploy/.env.example lists every setting)',
      ),
    );
  }
  return results;
}

/** The env file read (or that there was none) and whether the configuration is valid. */
export function checkConfig(ctx: DoctorContext): CheckResult[] {
  const results: CheckResult[] = [];
  const named = ctx.env.VISTYLE_ENV_FILE?.trim();
  if (ctx.envFile) results.push(result('config', 'ok', `read ${ctx.envFile}; values already in the environment win over it`));
  else if (named) results.push(result('config', 'warn', `VISTYLE_ENV_FILE=${named} names no file: no env file was read`, 'point VISTYLE_ENV_FILE at your env file, or unset it to read ./.env'));
  else results.push(result('config', 'ok', 'no .env in this folder: settings come from the environment alone'));
  if (ctx.configError) {
    results.push(result('config', 'fail', ctx.configError.message, 'fix the value (deploy/.env.example explains each setting)'));
  } else if (ctx.config) {
    const c = ctx.config;
    const from = (name: string): string => {
      const source = sourceOf(name, ctx.env);
      return source ? ` (${name} from ${describeSource(source)})` : ' (default)';
    };
    results.push(result('config', 'ok', `valid: provider ${c.model.provider}${from('VISTYLE_PROVIDER')}, home ${c.home}${from('VISTYLE_HOME')}, model ${c.model.dir}${from('VISTYLE_MODEL_DIR')}`));
  }
  results.push(...unknownVariables(ctx));
  return results;
}
