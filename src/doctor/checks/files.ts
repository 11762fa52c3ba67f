// The store, the styles file, the LoRA adapters the styles use, and ffmpeg.
import { accessSync, constants, existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadPeftAdapter, readPeftConfig } from '../../../models/lora/loader.js';
import { explainConfiguredValues } from '../../config/provenance.js';
import type { ModelFolder } from '../../engine/model-folder.js';
import { isVistyleError, VistyleError } from '../../errors.js';
import { ffmpegVersion, findOnPath } from '../../media/index.js';
import { adaptersHome } from '../../paths.js';
import { Store } from '../../store/store.js';
import { isAdapterFolder } from '../../styles/default-adapters.js';
import { openStyleRegistry, type LiveStyleRegistry } from '../../styles/registry.js';
import { existingAncestor } from './model.js';
import { result, type CheckResult, type DoctorContext } from '../types.js';

function message(error: unknown, env: NodeJS.ProcessEnv): string {
  return isVistyleError(error) ? explainConfiguredValues(error, env).message : String((error as Error)?.message ?? error);
}

/** An existing database opens (intact, migrated, writable); a new one's folder can be created. */
export function checkStore(ctx: DoctorContext): CheckResult {
  const path = ctx.config!.dbPath;
  if (existsSync(path)) {
    try {
      Store.open(path).close();
      return result('store', 'ok', `${path} opens and takes writes`);
    } catch (error) {
      return result('store', 'fail', message(error, ctx.env), 'see docs/deploy.md "What happens when" (permissions, a full disk, a damaged file: restore a backup)');
    }
  }
  const parent = existingAncestor(join(path, '..'));
  try {
    if (!statSync(parent).isDirectory()) throw new Error(`${parent} is a file, not a folder`);
    accessSync(parent, constants.W_OK);
    return result('store', 'ok', `${path} will be created on the first start (${parent} is writable)`);
  } catch (error) {
    const problem = new VistyleError('STORE_UNAVAILABLE', `the database ${path} cannot be created: ${(error as Error).message}`, { details: { path } });
    return result('store', 'fail', explainConfiguredValues(problem, ctx.env).message, 'set VISTYLE_DB_PATH or VISTYLE_HOME to a folder the bot\'s user may write');
  }
}

export interface StylesCheck {
  results: CheckResult[];
  registry: LiveStyleRegistry | null;
}

export function checkStyles(ctx: DoctorContext): StylesCheck {
  const file = ctx.config!.stylesFile;
  try {
    const registry = openStyleRegistry({ file, watch: false });
    const ids = registry.list().map((s) => s.id);
    const where = file ? `from ${registry.file} and the built-ins` : 'built-in only (no VISTYLE_STYLES_FILE)';
    return { results: [result('styles', 'ok', `${ids.length} styles ${where}: ${ids.join(', ')}; default ${registry.defaultStyle().id}`)], registry };
  } catch (error) {
    return { results: [result('styles', 'fail', message(error, ctx.env), 'fix the file (`vistyle styles --styles-file FILE` checks it), or unset VISTYLE_STYLES_FILE')], registry: null };
  }
}

/**
 * Each adapter a style uses loads and fits the model's LoRA inputs (when the model is there), and
 * no folder under the adapters directory is half written.
 */
export function checkAdapters(ctx: DoctorContext, registry: LiveStyleRegistry | null, folder: ModelFolder | null): CheckResult[] {
  const results: CheckResult[] = [];
  const dir = adaptersHome();
  if (existsSync(dir) && statSync(dir).isDirectory()) {
    for (const name of readdirSync(dir).sort()) {
      const path = join(dir, name);
      if (statSync(path).isDirectory() && !isAdapterFolder(path)) {
        results.push(result('adapters', 'warn', `${path} is not a complete adapter (needs adapter_config.json and adapter_model.safetensors): style "${name}" runs without it`, 'finish or re-run the training into that folder, or remove it'));
      }
    }
  }
  for (const style of registry?.list() ?? []) {
    if (!style.adapter) continue;
    const ref = style.adapter;
    try {
      if (folder) {
        if (folder.manifest.lora.targets.length === 0) {
          throw new Error(`the model at ${folder.dir} was built without LoRA inputs (--no-lora)`);
        }
        loadPeftAdapter({ ...ref }, { targets: folder.manifest.lora.targets });
        results.push(result('adapters', 'ok', `style "${style.id}": ${ref.path} fits the model`));
      } else {
        readPeftConfig(ref.path);
        results.push(result('adapters', 'ok', `style "${style.id}": ${ref.path} reads (not checked against a model: none is there)`));
      }
    } catch (error) {
      results.push(result('adapters', 'fail', `style "${style.id}": ${message(error, ctx.env)}`, 'rebuild the model with LoRA targets, re-train the adapter for this model, or set `adapter: null` for the style'));
    }
  }
  if (results.length === 0) results.push(result('adapters', 'skip', `no style uses a LoRA adapter (trained ones go in ${dir}/<style>)`));
  return results;
}

/** ffmpeg turns videos and animations into pictures; without it those get a polite refusal. */
/** ffmpeg and ffprobe, as the bot looks for them (src/media): on PATH, and ffmpeg runs. */
export async function checkFfmpeg(env: NodeJS.ProcessEnv = process.env): Promise<CheckResult> {
  const version = await ffmpegVersion(env);
  if (version === null) {
    const found = findOnPath('ffmpeg', env) ? 'ffprobe is missing or ffmpeg does not run' : 'ffmpeg is not installed';
    return result('ffmpeg', 'warn', `${found}: the bot cannot read videos (Telegram GIFs are MP4 videos too); pictures and GIF/WebP files do not need it`, 'apt-get install ffmpeg (it brings ffprobe)');
  }
  const number = /ffmpeg version (\S+)/.exec(version)?.[1] ?? '?';
  return result('ffmpeg', 'ok', `ffmpeg ${number} and ffprobe (for videos)`);
}
