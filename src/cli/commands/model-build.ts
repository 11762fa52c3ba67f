// `vistyle model build --checkpoint DIR --out DIR [--dtype fp32|fp16] [--lora-targets LIST] [--no-lora] [--device-decoder]`:
// turns a Hugging Face LLaVA checkpoint folder into a vistyle model folder (see models/build).
import { InvalidArgumentError, Option, type Command } from 'commander';
import { buildModel, type BuildOptions, type BuildResult } from '../../../models/build/build.js';
import { VistyleError } from '../../errors.js';

export { buildModel, type BuildOptions, type BuildResult };

interface BuildFlags {
  checkpoint: string;
  out: string;
  dtype: 'fp32' | 'fp16';
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

function formatMiB(bytes: number): string {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
}

export function registerModelBuildCommand(model: Command): void {
  model
    .command('build')
    .description('build ONNX graphs from a Hugging Face LLaVA checkpoint folder')
    .requiredOption('--checkpoint <dir>', 'checkpoint folder (config.json, model.safetensors, tokenizer.json, ...)')
    .requiredOption('--out <dir>', 'folder to write the built model into')
    .addOption(new Option('--dtype <dtype>', 'weight type').choices(['fp32', 'fp16']).default('fp32'))
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
