// `vistyle model build`: checkpoint folder -> built model folder (vistyle-model.json, the three
// ONNX graphs, copies of the tokenizer/template/preprocessor/generation/config files).
// Streaming: graphs are written one at a time and each weight is read from the checkpoint,
// converted and written before the next one is read, so the real model (1.73 GB bf16, ~3.5 GB as
// fp32) never sits in memory more than one tensor at a time (plus one transposed copy).
import { copyFileSync, existsSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { openCheckpoint, type Checkpoint } from '../checkpoint/reader.js';
import { MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, type LoraTarget, type ModelManifest } from '../manifest.js';
import type { GraphContext } from '../graphs/common.js';
import { buildDecoderGraph } from '../graphs/decoder.js';
import { buildDeviceDecoderGraph } from '../graphs/decoder-device.js';
import { buildEmbedGraph } from '../graphs/embed.js';
import { DEFAULT_LORA_TARGETS, resolveLoraTargets } from '../graphs/lora-targets.js';
import { buildVisionGraph } from '../graphs/vision.js';
import { VERSION } from '../../src/version.js';
import { commitBuildFolder, discardBuildFolder, prepareBuildFolder } from './output-folder.js';

export interface BuildOptions {
  checkpointDir: string;
  outDir: string;
  dtype?: 'fp32' | 'fp16';
  /** Tests only: the decoder returns logits for every position, [B,T,V]. */
  allPositionLogits?: boolean;
  /** LoRA target entries (PEFT-style names); default: q/k/v/o of the decoder, q/k/v/out of vision. */
  loraTargets?: string[];
  /** Build without LoRA inputs. */
  noLora?: boolean;
  /**
   * Also write decoder-device.onnx, the decoder for a device-resident KV cache (WebGPU;
   * models/graphs/decoder-device.ts). It holds its own copy of the decoder weights.
   */
  deviceDecoder?: boolean;
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
const DEVICE_DECODER_FILE = 'decoder-device.onnx';

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

function manifestFor(checkpoint: Checkpoint, options: BuildOptions, targets: LoraTarget[], copied: ModelManifest['files']): ModelManifest {
  const c = checkpoint.config;
  const dtype = options.dtype ?? 'fp32';
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
    kvCache: { layout: 'window', dtype: dtype === 'fp16' ? 'float16' : 'float32' },
    allPositionLogits: options.allPositionLogits ?? false,
    lora: { targets, dtype: dtype === 'fp16' ? 'float16' : 'float32' },
    files: copied,
    ...(options.deviceDecoder ? { deviceDecoder: { graph: DEVICE_DECODER_FILE, attention: 'GroupQueryAttention' as const, layout: 'bnsh-capacity' as const } } : {}),
  };
}

/** Builds a model folder from a checkpoint folder. Throws VistyleError on a bad checkpoint. */
export async function buildModel(options: BuildOptions): Promise<BuildResult> {
  const started = Date.now();
  const dtype = options.dtype ?? 'fp32';
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
      `building ${dtype} graphs: vision ${c.featureLayerIndex}/${c.vision.numLayers} layers, decoder ${c.text.numLayers} layers, ` +
        `${loraModules.size} LoRA targets`,
    );

    const vision = buildVisionGraph(checkpoint, dtype, loraModules);
    writeGraph(vision, outDir, GRAPH_FILES.vision, options, files);
    const embed = buildEmbedGraph(checkpoint, dtype);
    writeGraph(embed, outDir, GRAPH_FILES.embed, options, files);
    const decoder = buildDecoderGraph(checkpoint, { dtype, allPositionLogits: options.allPositionLogits ?? false, loraModules });
    writeGraph(decoder, outDir, GRAPH_FILES.decoder, options, files);
    if (options.deviceDecoder) {
      const device = buildDeviceDecoderGraph(checkpoint, { dtype, allPositionLogits: options.allPositionLogits ?? false, loraModules });
      writeGraph(device, outDir, DEVICE_DECODER_FILE, options, files);
    }

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
