// `vistyle model pull`: download llava-hf/llava-interleave-qwen-0.5b-hf from the Hugging Face hub
// (or its ModelScope mirror) with resume and checksums, then build it into the folder `vistyle ask`
// and `vistyle start` use by default.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { downloadCheckpoint, parseHubSource, reporterFor, formatBytes, type DownloadCheckpointResult } from '../../../models/download/index.js';
import { buildModel, MODEL_DTYPES, resolvePrecision, type ModelDtype } from '../../../models/build/build.js';
import { blockSizeArg, BLOCK_SIZE_HELP, COMPUTE_HELP } from './model-build.js';
import { MANIFEST_FILE } from '../../../models/manifest.js';
import { VERSION } from '../../version.js';
import { VistyleError } from '../../errors.js';
import { DEFAULT_MODEL_ID, pulledBuiltDir, pulledCheckpointDir, resolveModelDir } from '../../paths.js';

export type PullDtype = ModelDtype;

interface PullFlags {
  source: string;
  revision?: string;
  dir?: string;
  out?: string;
  dtype?: PullDtype;
  blockSize?: number;
  compute?: 'fp32' | 'fp16';
  build: boolean;
  rebuild?: boolean;
  retries: number;
}

/**
 * The dtype `model pull` builds when --dtype is not given, by VISTYLE_PROVIDER. CPU: int8 — the
 * fastest build whose accuracy held in the full-size bench (bench/RESULTS.md: int8 2.1x fp32's
 * decode with fp32's top-1 at every step; int4 decodes 10-12% faster but its logits drift, cosine
 * 0.90; docs/engine.md, "Choosing a dtype"). GPU providers: fp16 (quantized builds on a GPU have
 * not been measured here yet).
 */
export function defaultPullDtype(env: Record<string, string | undefined> = process.env): PullDtype {
  const provider = env.VISTYLE_PROVIDER?.trim().toLowerCase();
  return provider === 'cuda' || provider === 'webgpu' ? 'fp16' : 'int8';
}

/** With VISTYLE_PROVIDER=webgpu the build also writes the device-cache decoder (decoder-device.onnx). */
export function pullWantsDeviceDecoder(env: Record<string, string | undefined> = process.env): boolean {
  return env.VISTYLE_PROVIDER?.trim().toLowerCase() === 'webgpu';
}

const DEFAULT_DTYPE_HELP = 'fp16 when VISTYLE_PROVIDER is cuda or webgpu, else int8';

function nonNegativeInteger(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0 || parsed > 100) throw new InvalidArgumentError('expected a whole number from 0 to 100');
  return parsed;
}

interface PullPrecision {
  dtype: PullDtype;
  blockSize?: number;
  compute?: 'fp32' | 'fp16';
}

/** Whether `out` already holds a build of this checkpoint, in this precision, by this version of vistyle. */
function builtAlready(out: string, checkpoint: string, wanted: PullPrecision, deviceDecoder = false): boolean {
  const file = resolve(out, MANIFEST_FILE);
  if (!existsSync(file)) return false;
  try {
    const manifest = JSON.parse(readFileSync(file, 'utf8')) as {
      dtype?: string; builder?: string; source?: { checkpoint?: string };
      quantization?: { blockSize?: number; compute?: string }; deviceDecoder?: unknown;
    };
    const p = resolvePrecision(wanted);
    const sameQuantization = !p.quant || (
      manifest.quantization?.blockSize === p.quant.blockSize &&
      manifest.quantization?.compute === (p.compute === 'fp16' ? 'float16' : 'float32')
    );
    return (
      manifest.dtype === p.dtype &&
      sameQuantization &&
      (!deviceDecoder || manifest.deviceDecoder !== undefined) &&
      manifest.builder === `vistyle ${VERSION}` &&
      typeof manifest.source?.checkpoint === 'string' &&
      resolve(manifest.source.checkpoint) === resolve(checkpoint)
    );
  } catch {
    return false;
  }
}

function precisionFlags(p: PullPrecision): string {
  return `${p.blockSize !== undefined ? ` --block-size ${p.blockSize}` : ''}${p.compute ? ` --compute ${p.compute}` : ''}`;
}

function quoteArg(path: string): string {
  return /^[\w./~:@%+=-]+$/.test(path) ? path : `'${path.replace(/'/g, `'\\''`)}'`;
}

function describeDownload(result: DownloadCheckpointResult): string {
  const fetched = result.files.filter((file) => file.status === 'fetched').length;
  const commit = result.commit ? ` (commit ${result.commit.slice(0, 10)})` : '';
  const what = fetched === 0 ? 'already up to date' : `${fetched} file${fetched === 1 ? '' : 's'}, ${formatBytes(result.bytesReceived)} downloaded`;
  return `checkpoint: ${result.dir} — ${result.modelId} ${result.revision}${commit} from ${result.source}, ${what}`;
}

export function registerModelPullCommand(model: Command): void {
  model
    .command('pull')
    .description(`download ${DEFAULT_MODEL_ID} (resumable, checksummed) and build it`)
    .addOption(new Option('--source <hub>', 'where to download from').choices(['huggingface', 'modelscope']).default('huggingface'))
    .option('--revision <rev>', 'branch, tag or commit (default: main on Hugging Face, master on ModelScope)')
    .option('--dir <dir>', `checkpoint folder (default: ${pulledCheckpointDir()})`)
    .option('--out <dir>', `built model folder (default: ${pulledBuiltDir()})`)
    .addOption(new Option('--dtype <dtype>', `weight dtype of the built graphs (default: ${DEFAULT_DTYPE_HELP})`).choices([...MODEL_DTYPES]))
    .option('--block-size <n>', BLOCK_SIZE_HELP, blockSizeArg)
    .addOption(new Option('--compute <dtype>', COMPUTE_HELP).choices(['fp32', 'fp16']))
    .option('--no-build', 'download only, do not build')
    .option('--rebuild', 'build again even when the built model is up to date')
    .option('--retries <n>', 'retries per request on network errors and 5xx answers', nonNegativeInteger, 5)
    .addHelpText(
      'after',
      '\nEnvironment: HF_ENDPOINT or VISTYLE_HF_ENDPOINT (Hugging Face mirror, e.g. https://hf-mirror.com),\n' +
        'HF_TOKEN (gated or private repositories), MODELSCOPE_ENDPOINT or VISTYLE_MODELSCOPE_ENDPOINT.\n' +
        'An interrupted pull resumes where it stopped: run the same command again.',
    )
    .action(async (flags: PullFlags) => {
      const source = parseHubSource(flags.source);
      const dtype = flags.dtype ?? defaultPullDtype();
      const precision: PullPrecision = { dtype, blockSize: flags.blockSize, compute: flags.compute };
      resolvePrecision(precision); // a flag that does not fit the dtype fails before the download
      const out = resolve(flags.out ?? pulledBuiltDir());
      // Ctrl-C: stop cleanly (progress bar closed, partial files kept for resuming, lock released)
      const interrupt = new AbortController();
      const onSigint = (): void =>
        interrupt.abort(new VistyleError('CANCELLED', 'interrupted; run the same command again to resume the download'));
      process.once('SIGINT', onSigint);
      let download: DownloadCheckpointResult;
      try {
        download = await downloadCheckpoint({
          source,
          ...(flags.revision ? { revision: flags.revision } : {}),
          ...(flags.dir ? { dir: flags.dir } : {}),
          reporter: reporterFor(process.stderr),
          retry: { retries: flags.retries },
          signal: interrupt.signal,
        });
      } finally {
        process.removeListener('SIGINT', onSigint);
      }
      process.stdout.write(`${describeDownload(download)}\n`);

      if (!flags.build) {
        process.stdout.write(`not built (--no-build); build it with:\n  vistyle model build --checkpoint ${quoteArg(download.dir)} --out ${quoteArg(out)} --dtype ${dtype}${precisionFlags(precision)}\n`);
        return;
      }

      const fetchedNow = download.files.some((file) => file.status === 'fetched');
      const deviceDecoder = pullWantsDeviceDecoder();
      if (!fetchedNow && !flags.rebuild && builtAlready(out, download.dir, precision, deviceDecoder)) {
        process.stdout.write(`model: ${out} (${dtype}) is already built from this checkpoint (--rebuild to build it again)\n`);
      } else {
        await buildModel({
          checkpointDir: download.dir,
          outDir: out,
          dtype,
          blockSize: flags.blockSize,
          compute: flags.compute,
          deviceDecoder,
          onProgress: (message) => process.stderr.write(`${message}\n`),
        });
        process.stdout.write(`model: ${out} (${dtype})\n`);
      }

      // `ask` finds the model through --model, then VISTYLE_MODEL_DIR, then the pulled default
      const found = resolve(resolveModelDir());
      const modelFlag = found === out ? '' : `--model ${quoteArg(out)} `;
      process.stdout.write(`try it:\n  vistyle ask ${modelFlag}--image photo.jpg "What is in this picture?"\n`);
      if (modelFlag && process.env.VISTYLE_MODEL_DIR?.trim()) {
        process.stdout.write(`(VISTYLE_MODEL_DIR points at ${process.env.VISTYLE_MODEL_DIR}; set it to ${out} to use this model by default)\n`);
      }
    });
}

