// The built model (present, complete, what it was built for) and the disk space a pull needs.
import { existsSync, statfsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { openModelFolder, type ModelFolder } from '../../engine/model-folder.js';
import { isVistyleError } from '../../errors.js';
import { explainConfiguredValues } from '../../config/provenance.js';
import { pulledBuiltDir, vistyleHome } from '../../paths.js';
import { result, type CheckResult, type DoctorContext } from '../types.js';

const GiB = 2 ** 30;
/** The checkpoint (1.73 GB) plus an fp16 build (about 1.8 GB) plus slack: what `model pull` writes. */
export const PULL_BYTES = 4 * GiB;
/** Below this `model pull` cannot even hold the checkpoint. */
export const CHECKPOINT_BYTES = 1.8 * GiB;

/** What a manifest says the model was built for (read loosely: newer builds add fields). */
export function describeBuild(manifest: Record<string, unknown>): string {
  const dtype = String(manifest.dtype ?? '?');
  const quantization = manifest.quantization as { compute?: string } | undefined;
  const forWhat =
    dtype === 'fp16' ? 'for CUDA (the default of `model pull` with VISTYLE_PROVIDER=cuda)'
      : dtype === 'int4' || dtype === 'int8' ? `for the CPU (weight-only quantized${quantization?.compute ? `, ${quantization.compute} compute` : ''})`
        : 'for any provider';
  const device = manifest.deviceDecoder ? ', with the WebGPU device decoder' : '';
  const lora = (manifest.lora as { targets?: unknown[] } | undefined)?.targets?.length ?? 0;
  return `${dtype} ${forWhat}${device}, ${lora} LoRA targets, built by ${String(manifest.builder ?? '?')}`;
}

export interface ModelCheck {
  results: CheckResult[];
  /** The opened folder when the model is usable. */
  folder: ModelFolder | null;
}

export function checkModel(ctx: DoctorContext): ModelCheck {
  const dir = resolve(ctx.config?.model.dir ?? pulledBuiltDir());
  try {
    const folder = openModelFolder(dir);
    const results = [result('model', 'ok', `${dir}: ${describeBuild(folder.manifest as unknown as Record<string, unknown>)}`)];
    const provider = ctx.config?.model.provider ?? 'cpu';
    if (folder.manifest.dtype === 'fp16' && provider === 'cpu') {
      results.push(
        result('model', 'warn', 'an fp16 build runs on the CPU, but slowly (onnxruntime has few fp16 CPU kernels)', 'on a CPU host pull with the default dtype: `vistyle model pull` (or `model build --dtype fp32`)'),
      );
    }
    return { results, folder };
  } catch (error) {
    if (!isVistyleError(error)) throw error;
    const configured = ctx.env.VISTYLE_MODEL_DIR?.trim();
    // Nothing at the default place yet: the next quick-start step, not a breakage.
    if (error.code === 'MODEL_NOT_FOUND' && !configured && !existsSync(dir)) {
      return {
        results: [result('model', 'todo', `no model pulled yet (looked in ${dir})`, '`vistyle model pull` (about 1.8 GB); `vistyle demo` answers without it')],
        folder: null,
      };
    }
    return {
      results: [result('model', 'fail', explainConfiguredValues(error, ctx.env).message, configured ? 'point VISTYLE_MODEL_DIR at a built model folder, or unset it to use the pulled model' : 'run `vistyle model pull` again (it resumes and rebuilds)')],
      folder: null,
    };
  }
}

/** The nearest folder of `path` that exists. */
export function existingAncestor(path: string): string {
  let dir = resolve(path);
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
}

export function freeBytes(path: string): number {
  const stats = statfsSync(existingAncestor(path));
  return Number(stats.bavail) * Number(stats.bsize);
}

/** Room for `model pull` when the model is not there yet; room for the store and logs otherwise. */
export function checkDisk(ctx: DoctorContext, modelPresent: boolean, free: (path: string) => number = freeBytes): CheckResult {
  const home = ctx.config?.home ?? vistyleHome();
  let bytes: number;
  try {
    bytes = free(home);
  } catch (error) {
    return result('disk', 'skip', `cannot tell the free space at ${home}: ${(error as Error).message}`);
  }
  const shown = `${(bytes / GiB).toFixed(1)} GiB free at ${existingAncestor(home)}`;
  if (modelPresent) {
    return bytes < 0.5 * GiB
      ? result('disk', 'warn', `${shown}: little room for the store and logs`, 'free some space')
      : result('disk', 'ok', shown);
  }
  if (bytes < CHECKPOINT_BYTES) {
    return result('disk', 'fail', `${shown}: \`vistyle model pull\` needs about ${(PULL_BYTES / GiB).toFixed(0)} GiB (the 1.73 GB checkpoint and the built model)`, 'free space, or set VISTYLE_HOME to a bigger disk');
  }
  if (bytes < PULL_BYTES) {
    return result('disk', 'warn', `${shown}: tight for \`vistyle model pull\` (about ${(PULL_BYTES / GiB).toFixed(0)} GiB with the build)`, 'free space, or set VISTYLE_HOME to a bigger disk');
  }
  return result('disk', 'ok', `${shown} (enough for \`vistyle model pull\`)`);
}
