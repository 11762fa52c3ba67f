// `vistyle model build`: checkpoint folder -> built model folder (vistyle-model.json, the three
// ONNX graphs, copies of the tokenizer/template/preprocessor/generation/config files).
// Streaming: graphs are written one at a time and each weight is read from the checkpoint,
// converted and written before the next one is read, so the real model (1.73 GB bf16, ~3.5 GB as
// fp32) never sits in memory more than one tensor at a time (plus one transposed copy).
import { copyFileSync, existsSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { openCheckpoint, type Checkpoint } from '../checkpoint/reader.js';
import { MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, type LoraTarget, type ModelManifest, type Quantization } from '../manifest.js';
import type { BuildDtype, GraphContext } from '../graphs/common.js';
import { buildDecoderGraph } from '../graphs/decoder.js';
import { buildEmbedGraph } from '../graphs/embed.js';
import { DEFAULT_LORA_TARGETS, resolveLoraTargets } from '../graphs/lora-targets.js';
import { buildVisionGraph } from '../graphs/vision.js';
import { isValidBlockSize, type QuantSpec } from '../graphs/quantize.js';
import { VistyleError } from '../../src/errors.js';
import { VERSION } from '../../src/version.js';
import { commitBuildFolder, discardBuildFolder, prepareBuildFolder } from './output-folder.js';

/** Weight types a build can have: plain float, or weight-only int8/int4 (MatMulNBits). */
export type ModelDtype = 'fp32' | 'fp16' | 'int8' | 'int4';
export const MODEL_DTYPES: readonly ModelDtype[] = ['fp32', 'fp16', 'int8', 'int4'];
export const DEFAULT_BLOCK_SIZE = 32;
/**
 * MatMulNBits accuracy_level of quantized builds when not given: 4 (activations quantized to
 * int8 per block inside the operator) — the fastest on CPU in the measurements in
 * docs/engine.md ("Choosing a dtype"); 1 keeps the activations float32 (exact to the dequantized
 * weights).
 */
export const DEFAULT_ACCURACY_LEVEL = 4;

export interface BuildOptions {
  checkpointDir: string;
  outDir: string;
  dtype?: ModelDtype;
  /** int8/int4: weights per quantization block along the input features (power of two >= 16). Default 32. */
  blockSize?: number;
  /** int8/int4: MatMulNBits accuracy_level (0..4). Default DEFAULT_ACCURACY_LEVEL. */
  accuracyLevel?: number;
  /** int8/int4: type of activations, scales, cache and LoRA inputs. Default fp32 (fp16 builds are always fp16). */
  compute?: BuildDtype;
  /** Tests only: the decoder returns logits for every position, [B,T,V]. */
  allPositionLogits?: boolean;
  /** LoRA target entries (PEFT-style names); default: q/k/v/o of the decoder, q/k/v/out of vision. */
  loraTargets?: string[];
  /** Build without LoRA inputs. */
  noLora?: boolean;
  /** A graph whose weights exceed this many bytes stores them in `<graph>.onnx.data`. Default 1 GiB. */
  externalDataThreshold?: number;
  /** Progress lines (the CLI prints them to stderr). */
  onProgress?: (message: string) => void;
}

export interface BuildResult {
  outDir: string;
  manifest: ModelManifest;
  /** Bytes written per file, relative to outDir. */
  files: Record<string, number>;
  seconds: number;
}

const GRAPH_FILES = { vision: 'vision.onnx', embed: 'embed.onnx', decoder: 'decoder.onnx' } as const;

function writeGraph(ctx: GraphContext, outDir: string, file: string, options: BuildOptions, files: Record<string, number>): void {
  const path = join(outDir, file);
  rmSync(`${path}.data`, { force: true });
  const total = ctx.g.initializerBytes;
  options.onProgress?.(`${file}: writing ${(total / 2 ** 20).toFixed(1)} MiB of weights`);
  let lastPct = -1;
  const result = ctx.g.save(path, {
    externalDataThreshold: options.externalDataThreshold,
    docString: `vistyle ${file} built from ${basename(ctx.checkpoint.dir)}`,
    onTensor: (done, count) => {
      const pct = Math.floor((done / count) * 10) * 10;
      if (pct !== lastPct && total > 64 * 2 ** 20) options.onProgress?.(`${file}: ${pct}%`);
      lastPct = pct;
    },
  });
  files[file] = result.bytes;
  if (result.externalData) files[result.externalData] = result.externalBytes;
}

function copyInto(outDir: string, source: string | null, files: Record<string, number>, name = source ? basename(source) : ''): string | null {
  if (!source) return null;
  copyFileSync(source, join(outDir, name));
  files[name] = statSync(source).size;
  return name;
}

/** What a build's options resolve to: the compute type and the quantization, checked. */
export interface ResolvedPrecision {
  dtype: ModelDtype;
  compute: BuildDtype;
  quant: QuantSpec | null;
}

export function resolvePrecision(options: Pick<BuildOptions, 'dtype' | 'blockSize' | 'accuracyLevel' | 'compute'>): ResolvedPrecision {
  const dtype = options.dtype ?? 'fp32';
  if (!MODEL_DTYPES.includes(dtype)) throw new VistyleError('CONFIG_INVALID', `dtype ${String(dtype)} is not one of ${MODEL_DTYPES.join(', ')}`);
  if (dtype === 'fp32' || dtype === 'fp16') {
    if (options.blockSize !== undefined || options.accuracyLevel !== undefined) {
      throw new VistyleError('CONFIG_INVALID', `--block-size and --accuracy-level apply to int8 and int4 builds, not ${dtype}`);
    }
    if (options.compute !== undefined && options.compute !== dtype) {
      throw new VistyleError('CONFIG_INVALID', `--compute applies to int8 and int4 builds; a ${dtype} build computes in ${dtype}`);
    }
    return { dtype, compute: dtype, quant: null };
  }
  const blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
  if (!isValidBlockSize(blockSize)) {
    throw new VistyleError('CONFIG_INVALID', `block size ${blockSize} must be a power of two from 16 (16, 32, 64, 128, ...)`);
  }
  const accuracyLevel = options.accuracyLevel ?? DEFAULT_ACCURACY_LEVEL;
  if (!Number.isInteger(accuracyLevel) || accuracyLevel < 0 || accuracyLevel > 4) {
    throw new VistyleError('CONFIG_INVALID', `accuracy level ${accuracyLevel} must be 0, 1, 2, 3 or 4`);
  }
  return { dtype, compute: options.compute ?? 'fp32', quant: { bits: dtype === 'int4' ? 4 : 8, blockSize, accuracyLevel } };
}

function quantizationFor(p: ResolvedPrecision): Quantization | undefined {
  if (!p.quant) return undefined;
  const type = p.compute === 'fp16' ? 'float16' : 'float32';
  return {
    operator: 'MatMulNBits',
    bits: p.quant.bits,
    blockSize: p.quant.blockSize,
    symmetric: true,
    accuracyLevel: p.quant.accuracyLevel,
    scales: type,
    compute: type,
    modules: ['vision', 'projector', 'decoder', 'lm_head'],
  };
}

function manifestFor(checkpoint: Checkpoint, options: BuildOptions, targets: LoraTarget[], copied: ModelManifest['files']): ModelManifest {
  const c = checkpoint.config;
  const precision = resolvePrecision(options);
  const { dtype } = precision;
  const floatType = precision.compute === 'fp16' ? 'float16' : 'float32';
  const quantization = quantizationFor(precision);
  return {
    format: MANIFEST_FORMAT,
    version: MANIFEST_VERSION,
    createdAt: new Date().toISOString(),
    builder: `vistyle ${VERSION}`,
    dtype,
    source: { checkpoint: checkpoint.dir, modelType: 'llava' },
    text: {
      hiddenSize: c.text.hiddenSize,
      numLayers: c.text.numLayers,
      numHeads: c.text.numHeads,
      numKvHeads: c.text.numKvHeads,
      headDim: c.text.headDim,
      vocabSize: c.text.vocabSize,
      maxPositionEmbeddings: c.text.maxPositionEmbeddings,
    },
    vision: { imageSize: c.vision.imageSize, patchSize: c.vision.patchSize, imageTokens: c.imageTokens },
    tokens: checkpoint.tokens,
    graphs: { ...GRAPH_FILES },
    kvCache: { layout: 'window', dtype: floatType },
    allPositionLogits: options.allPositionLogits ?? false,
    lora: { targets, dtype: floatType },
    files: copied,
    ...(quantization ? { quantization } : {}),
  };
}

/** Builds a model folder from a checkpoint folder. Throws VistyleError on a bad checkpoint. */
export async function buildModel(options: BuildOptions): Promise<BuildResult> {
  const started = Date.now();
  const precision = resolvePrecision(options);
  const { dtype, compute, quant } = precision;
  const target = resolve(options.outDir);
  const checkpoint = openCheckpoint(options.checkpointDir);
  let outDir: string | undefined;
  try {
    const loraModules = options.noLora
      ? new Set<string>()
      : resolveLoraTargets(checkpoint.config, options.loraTargets ?? DEFAULT_LORA_TARGETS);
    // Everything is written into a temporary folder beside the target and renamed into place at
    // the end (output-folder.ts): no half model is ever at the target. Inside it the manifest
    // still goes last: a folder with a manifest is a complete build.
    outDir = prepareBuildFolder(target);
    const files: Record<string, number> = {};
    const c = checkpoint.config;
    options.onProgress?.(
      `building ${dtype} graphs${quant ? ` (MatMulNBits, block ${quant.blockSize}, accuracy level ${quant.accuracyLevel}, compute ${compute})` : ''}: vision ${c.featureLayerIndex}/${c.vision.numLayers} layers, decoder ${c.text.numLayers} layers, ` +
        `${loraModules.size} LoRA targets`,
    );

    const vision = buildVisionGraph(checkpoint, compute, loraModules, quant);
    writeGraph(vision, outDir, GRAPH_FILES.vision, options, files);
    const embed = buildEmbedGraph(checkpoint, compute);
    writeGraph(embed, outDir, GRAPH_FILES.embed, options, files);
    const decoder = buildDecoderGraph(checkpoint, { dtype: compute, allPositionLogits: options.allPositionLogits ?? false, loraModules, quant });
    writeGraph(decoder, outDir, GRAPH_FILES.decoder, options, files);

    const f = checkpoint.files;
    // one place for the template whatever file it came from: chat_template.json
    const template = `${JSON.stringify({ chat_template: checkpoint.chatTemplate }, null, 2)}\n`;
    writeFileSync(join(outDir, 'chat_template.json'), template);
    files['chat_template.json'] = Buffer.byteLength(template);
    const copied: ModelManifest['files'] = {
      config: copyInto(outDir, f.config, files)!,
      tokenizer: copyInto(outDir, f.tokenizer, files)!,
      tokenizerConfig: copyInto(outDir, f.tokenizerConfig, files),
      chatTemplate: 'chat_template.json',
      preprocessorConfig: copyInto(outDir, f.preprocessorConfig, files)!,
      generationConfig: copyInto(outDir, f.generationConfig, files),
    };
    copyInto(outDir, f.processorConfig, files);

    const manifest = manifestFor(checkpoint, options, [...vision.loraTargets, ...decoder.loraTargets], copied);
    const tmp = join(outDir, `${MANIFEST_FILE}.tmp`);
    writeFileSync(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
    renameSync(tmp, join(outDir, MANIFEST_FILE));
    commitBuildFolder(outDir, target);
    outDir = undefined;
    const seconds = (Date.now() - started) / 1000;
    options.onProgress?.(`built ${target} in ${seconds.toFixed(1)} s`);
    return { outDir: target, manifest, files, seconds };
  } finally {
    if (outDir) discardBuildFolder(outDir);
    checkpoint.close();
  }
}

export function isBuiltModel(dir: string): boolean {
  return existsSync(join(dir, MANIFEST_FILE));
}
