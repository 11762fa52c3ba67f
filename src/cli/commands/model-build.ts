// `vistyle model build --checkpoint DIR --out DIR [--dtype fp32|fp16|int8|int4] [--block-size N]
//   [--compute fp32|fp16] [--lora-targets LIST] [--no-lora] [--device-decoder]`:
// turns a Hugging Face LLaVA checkpoint folder into a vistyle model folder (see models/build).
import { InvalidArgumentError, Option, type Command } from 'commander';
import { buildModel, DEFAULT_BLOCK_SIZE, MODEL_DTYPES, type BuildOptions, type BuildResult, type ModelDtype } from '../../../models/build/build.js';
import { VistyleError } from '../../errors.js';

export { buildModel, type BuildOptions, type BuildResult };

interface BuildFlags {
  checkpoint: string;
  out: string;
  dtype: ModelDtype;
  blockSize?: number;
  accuracyLevel?: number;
  compute?: 'fp32' | 'fp16';
  loraTargets?: string[];
  lora: boolean;
  deviceDecoder?: boolean;
  allPositionLogits?: boolean;
  externalDataThreshold?: number;
}

function targetList(value: string): string[] {
  const list = value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (list.length === 0) throw new InvalidArgumentError('expected a comma-separated list, e.g. q_proj,v_proj');
  return list;
}

function byteCount(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number of bytes');
  return n;
}

/** The quantization flags, shared with `model pull`. */
export function blockSizeArg(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 16 || (n & (n - 1)) !== 0) throw new InvalidArgumentError('expected a power of two from 16 (16, 32, 64, 128, ...)');
  return n;
}

export function accuracyLevelArg(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 4) throw new InvalidArgumentError('expected 0, 1, 2, 3 or 4');
  return n;
}

export const DTYPE_HELP = 'weight type: fp32, fp16, or weight-only int8 / int4 (MatMulNBits)';
export const BLOCK_SIZE_HELP = `int8/int4: weights per quantization block (default ${DEFAULT_BLOCK_SIZE})`;
export const COMPUTE_HELP = 'int8/int4: type of activations and scales (default fp32; fp16 for GPU providers)';

function formatMiB(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

export function registerModelBuildCommand(model: Command): void {
  model
    .command('build')
    .description('build ONNX graphs from a Hugging Face LLaVA checkpoint folder')
    .requiredOption('--checkpoint <dir>', 'checkpoint folder (config.json, model.safetensors, tokenizer.json, ...)')
    .requiredOption('--out <dir>', 'folder to write the built model into')
    .addOption(new Option('--dtype <dtype>', DTYPE_HELP).choices([...MODEL_DTYPES]).default('fp32'))
    .option('--block-size <n>', BLOCK_SIZE_HELP, blockSizeArg)
    .addOption(new Option('--compute <dtype>', COMPUTE_HELP).choices(['fp32', 'fp16']))
    .addOption(new Option('--accuracy-level <n>', 'int8/int4: MatMulNBits accuracy_level (measurements only)').argParser(accuracyLevelArg).hideHelp())
    .option('--lora-targets <list>', 'comma-separated LoRA targets (default q_proj,k_proj,v_proj,o_proj,out_proj)', targetList)
    .option('--no-lora', 'build without LoRA inputs')
    .option('--device-decoder', 'also write decoder-device.onnx, the decoder that keeps the KV cache on the GPU (for --provider webgpu)')
    .addOption(new Option('--all-position-logits', 'decoder returns logits for every position (tests)').hideHelp())
    .addOption(new Option('--external-data-threshold <bytes>', 'graph weight size above which weights go to <graph>.onnx.data')
      .argParser(byteCount).hideHelp())
    .action(async (flags: BuildFlags) => {
      if (!flags.lora && flags.loraTargets) {
        throw new VistyleError('CONFIG_INVALID', '--lora-targets and --no-lora cannot be combined');
      }
      const result = await buildModel({
        checkpointDir: flags.checkpoint,
        outDir: flags.out,
        dtype: flags.dtype,
        blockSize: flags.blockSize,
        accuracyLevel: flags.accuracyLevel,
        compute: flags.compute,
        loraTargets: flags.loraTargets,
        noLora: !flags.lora,
        deviceDecoder: flags.deviceDecoder ?? false,
        allPositionLogits: flags.allPositionLogits ?? false,
        externalDataThreshold: flags.externalDataThreshold,
        onProgress: (message) => process.stderr.write(`${message}\n`),
      });
      const graphBytes = Object.entries(result.files)
        .filter(([name]) => name.includes('.onnx'))
        .map(([name, bytes]) => `${name} ${formatMiB(bytes)}`)
        .join(', ');
      process.stderr.write(`${graphBytes}; ${result.manifest.lora.targets.length} LoRA targets\n`);
      process.stdout.write(`${result.outDir}\n`);
    });
}
