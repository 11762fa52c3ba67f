// Opens a Hugging Face LLaVA checkpoint folder: validates config.json and every companion file,
// checks that every tensor the model needs is present with the right shape (header reads only),
// and hands out tensors one at a time by canonical name (see names.ts), widened to float32.
import { existsSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { z } from 'zod';
import { parseLlavaConfig, type LlavaConfig } from './config.js';
import { canonicalTensorName, detectLayout, expectedTensors, fileTensorName, type TensorLayout } from './names.js';
import { SafetensorsFile, type SafetensorsDtype, type TensorEntry } from './safetensors.js';
import { checkpointError, parseWith, readJsonFile } from './validate.js';

export interface CheckpointFiles {
  config: string;
  /** model.safetensors, or the index of a sharded checkpoint. */
  weights: string;
  tokenizer: string;
  tokenizerConfig: string | null;
  /** chat_template.json, chat_template.jinja or tokenizer_config.json: where the template came from. */
  chatTemplateSource: string;
  preprocessorConfig: string;
  generationConfig: string | null;
  processorConfig: string | null;
}

export interface CheckpointTokens {
  imageTokenId: number;
  eosTokenIds: number[];
  padTokenId: number | null;
  bosTokenId: number | null;
}

export interface PreprocessorConfig {
  imageSize: { height: number; width: number };
  imageMean: number[];
  imageStd: number[];
  rescaleFactor: number;
  doRescale: boolean;
  doNormalize: boolean;
  resample: number;
}

const tokenId = z.number().int().nonnegative();

const GenerationConfigSchema = z.object({
  eos_token_id: z.union([tokenId, z.array(tokenId)]).nullish(),
  bos_token_id: tokenId.nullish(),
  pad_token_id: tokenId.nullish(),
});

const meanStd = z.union([z.number(), z.array(z.number()).min(1)]);
const PreprocessorSchema = z.object({
  size: z
    .union([
      z.object({ height: z.number().int().positive(), width: z.number().int().positive() }),
      z.object({ shortest_edge: z.number().int().positive() }),
    ])
    .nullish(),
  image_mean: meanStd.nullish(),
  image_std: meanStd.nullish(),
  rescale_factor: z.number().positive().nullish(),
  do_rescale: z.boolean().nullish(),
  do_normalize: z.boolean().nullish(),
  resample: z.number().int().nullish(),
});

const ChatTemplateJsonSchema = z.object({ chat_template: z.string().min(1) });

const WeightIndexSchema = z.object({ weight_map: z.record(z.string(), z.string()) });

/** The tensors of a checkpoint by canonical name, read lazily from one or more safetensors files. */
export class CheckpointTensors {
  readonly layout: TensorLayout;
  /** canonical name -> shard file path and the tensor's name in that file */
  private readonly locations = new Map<string, { file: string; name: string }>();
  private readonly open = new Map<string, SafetensorsFile>();
  private readonly weightsFile: string;

  constructor(weightsPath: string) {
    this.weightsFile = basename(weightsPath);
    if (weightsPath.endsWith('.index.json')) {
      const index = parseWith(WeightIndexSchema, readJsonFile(weightsPath), this.weightsFile);
      const dir = resolve(weightsPath, '..');
      for (const [name, shard] of Object.entries(index.weight_map)) {
        const canonical = canonicalTensorName(name);
        if (canonical) this.locations.set(canonical, { file: join(dir, shard), name });
      }
      this.layout = detectLayout(Object.keys(index.weight_map));
    } else {
      const file = SafetensorsFile.open(weightsPath);
      this.open.set(weightsPath, file);
      for (const name of file.entries.keys()) {
        const canonical = canonicalTensorName(name);
        if (canonical) this.locations.set(canonical, { file: weightsPath, name });
      }
      this.layout = detectLayout(file.entries.keys());
    }
  }

  has(canonical: string): boolean {
    return this.locations.has(canonical);
  }

  /** The tensor's name as this checkpoint's layout spells it (for error messages). */
  fileName(canonical: string): string {
    return this.locations.get(canonical)?.name ?? fileTensorName(canonical, this.layout);
  }

  private shard(canonical: string): { file: SafetensorsFile; name: string } {
    const loc = this.locations.get(canonical);
    if (!loc) throw checkpointError(`${this.weightsFile}: tensor ${this.fileName(canonical)} is missing`);
    let file = this.open.get(loc.file);
    if (!file) {
      if (!existsSync(loc.file)) {
        throw checkpointError(`${basename(loc.file)} is missing (shard named by ${this.weightsFile} for ${loc.name})`);
      }
      file = SafetensorsFile.open(loc.file);
      this.open.set(loc.file, file);
    }
    if (!file.has(loc.name)) {
      throw checkpointError(`${basename(loc.file)}: tensor ${loc.name} is missing (${this.weightsFile} places it there)`);
    }
    return { file, name: loc.name };
  }

  entry(canonical: string): TensorEntry {
    const { file, name } = this.shard(canonical);
    return file.entry(name);
  }

  shape(canonical: string): number[] {
    return this.entry(canonical).shape;
  }

  dtype(canonical: string): SafetensorsDtype {
    return this.entry(canonical).dtype;
  }

  /** Reads one tensor as float32 (bf16/fp16 widened exactly). */
  read(canonical: string): Float32Array {
    const { file, name } = this.shard(canonical);
    return file.readFloat32(name);
  }

  close(): void {
    for (const file of this.open.values()) file.close();
    this.open.clear();
  }
}

export interface Checkpoint {
  dir: string;
  config: LlavaConfig;
  rawConfig: Record<string, unknown>;
  /** Whether lm_head is embed_tokens (true) or its own tensor. */
  tiedEmbeddings: boolean;
  tensors: CheckpointTensors;
  files: CheckpointFiles;
  chatTemplate: string;
  tokens: CheckpointTokens;
  preprocessor: PreprocessorConfig;
  close(): void;
}

function optionalFile(dir: string, name: string): string | null {
  const path = join(dir, name);
  return existsSync(path) ? path : null;
}

function requiredFile(dir: string, name: string): string {
  const path = join(dir, name);
  if (!existsSync(path)) throw checkpointError(`${name} is missing (looked in ${dir})`);
  return path;
}

function readChatTemplate(dir: string, tokenizerConfig: Record<string, unknown> | null): { template: string; source: string } {
  const jsonPath = optionalFile(dir, 'chat_template.json');
  if (jsonPath) {
    const parsed = parseWith(ChatTemplateJsonSchema, readJsonFile(jsonPath), 'chat_template.json');
    return { template: parsed.chat_template, source: jsonPath };
  }
  const jinjaPath = optionalFile(dir, 'chat_template.jinja');
  if (jinjaPath) return { template: readFileSync(jinjaPath, 'utf8'), source: jinjaPath };
  const fromTokenizer = tokenizerConfig?.chat_template;
  if (typeof fromTokenizer === 'string' && fromTokenizer.length > 0) {
    return { template: fromTokenizer, source: join(dir, 'tokenizer_config.json') };
  }
  if (Array.isArray(fromTokenizer)) {
    // a list of named templates: take "default"
    const named = fromTokenizer.find((t) => (t as { name?: unknown })?.name === 'default') as { template?: unknown } | undefined;
    if (typeof named?.template === 'string') return { template: named.template, source: join(dir, 'tokenizer_config.json') };
  }
  throw checkpointError(
    'chat template is missing: no chat_template.json, chat_template.jinja, or tokenizer_config.json chat_template',
  );
}

function parsePreprocessor(raw: unknown, config: LlavaConfig): PreprocessorConfig {
  const p = parseWith(PreprocessorSchema, raw, 'preprocessor_config.json');
  const size = p.size && 'height' in p.size ? p.size : p.size && 'shortest_edge' in p.size
    ? { height: p.size.shortest_edge, width: p.size.shortest_edge }
    : { height: config.vision.imageSize, width: config.vision.imageSize };
  const three = (v: number | number[] | null | undefined, fallback: number, field: string): number[] => {
    if (v === null || v === undefined) return [fallback, fallback, fallback];
    const list = Array.isArray(v) ? v : [v, v, v];
    if (list.length !== config.vision.numChannels) {
      throw checkpointError(`preprocessor_config.json: ${field} has ${list.length} values, expected ${config.vision.numChannels}`);
    }
    return list;
  };
  return {
    imageSize: size,
    imageMean: three(p.image_mean, 0.5, 'image_mean'),
    imageStd: three(p.image_std, 0.5, 'image_std'),
    rescaleFactor: p.rescale_factor ?? 1 / 255,
    doRescale: p.do_rescale ?? true,
    doNormalize: p.do_normalize ?? true,
    resample: p.resample ?? 3,
  };
}

/**
 * Opens and validates a checkpoint folder. Throws VistyleError('CHECKPOINT_INVALID') naming the
 * file and field, or the tensor, that is missing or wrong. Call close() when done.
 */
export function openCheckpoint(dirInput: string): Checkpoint {
  const dir = resolve(dirInput);
  if (!existsSync(dir)) throw checkpointError(`checkpoint folder ${dir} does not exist`);
  const configPath = requiredFile(dir, 'config.json');
  const rawConfig = readJsonFile(configPath) as Record<string, unknown>;
  const config = parseLlavaConfig(rawConfig);

  const single = optionalFile(dir, 'model.safetensors');
  const index = optionalFile(dir, 'model.safetensors.index.json');
  const weights = single ?? index;
  if (!weights) throw checkpointError(`model.safetensors is missing (no model.safetensors or model.safetensors.index.json in ${dir})`);

  const tokenizer = requiredFile(dir, 'tokenizer.json');
  const tokenizerJson = readJsonFile(tokenizer) as Record<string, unknown>;
  if (typeof tokenizerJson !== 'object' || tokenizerJson === null || typeof tokenizerJson.model !== 'object') {
    throw checkpointError('tokenizer.json: model is missing (not a tokenizers JSON file)');
  }
  const tokenizerConfigPath = optionalFile(dir, 'tokenizer_config.json');
  const tokenizerConfig = tokenizerConfigPath ? (readJsonFile(tokenizerConfigPath) as Record<string, unknown>) : null;
  const chat = readChatTemplate(dir, tokenizerConfig);

  const preprocessorPath = requiredFile(dir, 'preprocessor_config.json');
  const preprocessor = parsePreprocessor(readJsonFile(preprocessorPath), config);

  const generationPath = optionalFile(dir, 'generation_config.json');
  const generation = generationPath
    ? parseWith(GenerationConfigSchema, readJsonFile(generationPath), 'generation_config.json')
    : {};
  const genEos = generation.eos_token_id;
  const eosTokenIds = genEos === undefined || genEos === null ? config.text.eosTokenIds : Array.isArray(genEos) ? genEos : [genEos];
  if (eosTokenIds.length === 0) {
    throw checkpointError(
      generationPath
        ? 'generation_config.json: eos_token_id is missing (and config.json text_config.eos_token_id is not set)'
        : 'config.json: text_config.eos_token_id is missing (and there is no generation_config.json)',
    );
  }

  const tensors = new CheckpointTensors(weights);
  try {
    const tied = config.text.tieWordEmbeddings ?? !tensors.has('lm_head.weight');
    const expected = expectedTensors(config, { untied: !tied });
    for (const [name, shape] of expected) {
      if (!tensors.has(name)) {
        throw checkpointError(`${basename(weights)}: tensor ${tensors.fileName(name)} is missing`);
      }
      const actual = tensors.shape(name);
      if (actual.length !== shape.length || actual.some((d, i) => d !== shape[i])) {
        throw checkpointError(
          `${basename(weights)}: tensor ${tensors.fileName(name)} has shape [${actual.join(', ')}], expected [${shape.join(', ')}] from config.json`,
        );
      }
      const dtype = tensors.dtype(name);
      if (dtype !== 'F32' && dtype !== 'F16' && dtype !== 'BF16' && dtype !== 'F64') {
        throw checkpointError(`${basename(weights)}: tensor ${tensors.fileName(name)} has dtype ${dtype}, expected F32, F16 or BF16`);
      }
    }
    return {
      dir,
      config,
      rawConfig,
      tiedEmbeddings: tied,
      tensors,
      files: {
        config: configPath,
        weights,
        tokenizer,
        tokenizerConfig: tokenizerConfigPath,
        chatTemplateSource: chat.source,
        preprocessorConfig: preprocessorPath,
        generationConfig: generationPath,
        processorConfig: optionalFile(dir, 'processor_config.json'),
      },
      chatTemplate: chat.template,
      tokens: {
        imageTokenId: config.imageTokenId,
        eosTokenIds,
        padTokenId: generation.pad_token_id ?? config.text.padTokenId ?? null,
        bosTokenId: generation.bos_token_id ?? config.text.bosTokenId ?? null,
      },
      preprocessor,
      close: () => tensors.close(),
    };
  } catch (error) {
    tensors.close();
    throw error;
  }
}
