// Loads a Hugging Face PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors)
// into the tensors the graphs take as LoRA inputs: per target, A [r, in] and B [out, r] with the
// scale (alpha / r, or alpha / sqrt(r) with rsLoRA, or the caller's) folded into B, converted to
// the graph's element type. Either transformers module layout is accepted. Anything that does not
// fit the built model — a module that is not one of its LoRA targets, a missing tensor or module,
// a wrong shape — is a VistyleError('ADAPTER_INVALID') that names the module.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isVistyleError, VistyleError } from '../../src/errors.js';
import { float32ToHalf } from '../checkpoint/dtype.js';
import { SafetensorsFile, type TensorEntry } from '../checkpoint/safetensors.js';
import type { LoraTarget } from '../manifest.js';
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  canonicalModuleName,
  detectModuleLayout,
  layoutModuleName,
  nonTargetReason,
  parsePeftWeightKey,
  type TensorLayout,
} from './names.js';
import { isTargetedBy, loraScale, PeftConfigSchema, rankAndAlpha, unsupportedFeature, type PeftConfig } from './peft-config.js';

export type LoraElementType = 'float32' | 'float16';

/** Which adapter folder to read, and an optional scale that overrides lora_alpha / r. */
export interface LoraSource {
  path: string;
  scale?: number;
}

/** One graph input's data: float32 values, or float16 bit patterns. */
export interface LoraTensor {
  name: string;
  type: LoraElementType;
  dims: [number, number];
  data: Float32Array | Uint16Array;
}

export interface LoadedLoraModule {
  target: LoraTarget;
  /** The module's name as the adapter file spells it. */
  fileModule: string;
  rank: number;
  scale: number;
  A: LoraTensor;
  B: LoraTensor;
}

export interface PeftAdapter {
  path: string;
  config: PeftConfig;
  layout: TensorLayout;
  /** The targets the adapter covers, in manifest order. */
  modules: LoadedLoraModule[];
  /** Targets the adapter leaves alone (fed "no adapter", a rank-1 zero). */
  uncovered: LoraTarget[];
  /** Adapter modules in vision layers the graph never computes (past vision_feature_layer): no effect. */
  ignored: string[];
}

export interface LoadAdapterOptions {
  /** The built model's LoRA targets (manifest.lora.targets). */
  targets: readonly LoraTarget[];
  /** Element type of the graph inputs: one for all, or per input name (default float32). */
  elementType?: LoraElementType | ((inputName: string) => LoraElementType);
}

function adapterError(path: string, message: string, details: Record<string, unknown> = {}, cause?: unknown): VistyleError {
  return new VistyleError('ADAPTER_INVALID', `LoRA adapter ${path}: ${message}`, {
    details: { path, ...details },
    ...(cause === undefined ? {} : { cause }),
  });
}

export function readPeftConfig(dir: string): PeftConfig {
  const path = resolve(dir);
  if (!existsSync(path) || !statSync(path).isDirectory()) throw adapterError(path, 'no such folder');
  const configPath = join(path, ADAPTER_CONFIG_FILE);
  if (!existsSync(configPath)) throw adapterError(path, `${ADAPTER_CONFIG_FILE} is missing`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(configPath, 'utf8'));
  } catch (error) {
    throw adapterError(path, `${ADAPTER_CONFIG_FILE} is not valid JSON (${(error as Error).message})`, {}, error);
  }
  const parsed = PeftConfigSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.map(String).join('.') || '(top level)';
    throw adapterError(path, `${ADAPTER_CONFIG_FILE}: field ${field}: ${issue.message}`, { field });
  }
  const unsupported = unsupportedFeature(parsed.data);
  if (unsupported) throw adapterError(path, `${ADAPTER_CONFIG_FILE}: ${unsupported}`);
  return parsed.data;
}

/** Reads and checks an adapter against the model's LoRA targets. Synchronous: adapters are small. */
export function loadPeftAdapter(ref: LoraSource, options: LoadAdapterOptions): PeftAdapter {
  const path = resolve(ref.path);
  const config = readPeftConfig(path);
  const weightsPath = join(path, ADAPTER_WEIGHTS_FILE);
  if (!existsSync(weightsPath)) {
    const hint = existsSync(join(path, 'adapter_model.bin')) ? ' (only the safetensors format is read; re-save with safe_serialization=True)' : '';
    throw adapterError(path, `${ADAPTER_WEIGHTS_FILE} is missing${hint}`);
  }
  if (ref.scale !== undefined && !Number.isFinite(ref.scale)) throw adapterError(path, `scale ${ref.scale} is not a number`);

  let file: SafetensorsFile;
  try {
    file = SafetensorsFile.open(weightsPath);
  } catch (error) {
    throw adapterError(path, isVistyleError(error) ? error.message : String(error), {}, error);
  }
  try {
    return readModules(path, file, config, ref.scale, options);
  } catch (error) {
    if (isVistyleError(error, 'ADAPTER_INVALID')) throw error;
    throw adapterError(path, isVistyleError(error) ? error.message : String(error), {}, error);
  } finally {
    file.close();
  }
}

function readModules(
  path: string,
  file: SafetensorsFile,
  config: PeftConfig,
  scaleOverride: number | undefined,
  options: LoadAdapterOptions,
): PeftAdapter {
  // Group the file's tensors by module.
  const byModule = new Map<string, { A?: TensorEntry; B?: TensorEntry }>();
  for (const entry of file.entries.values()) {
    const key = parsePeftWeightKey(entry.name);
    if (!key) {
      throw adapterError(path, `unexpected tensor ${entry.name} (only LoRA A/B weights are supported)`, { tensor: entry.name });
    }
    const halves = byModule.get(key.module) ?? {};
    halves[key.which] = entry;
    byModule.set(key.module, halves);
  }
  if (byModule.size === 0) throw adapterError(path, `${ADAPTER_WEIGHTS_FILE} holds no LoRA weights`);

  const targetsByModule = new Map(options.targets.map((target) => [target.module, target]));
  const layout = detectModuleLayout(byModule.keys()) ?? 'legacy';
  const typeOf = (name: string): LoraElementType =>
    typeof options.elementType === 'function' ? options.elementType(name) : (options.elementType ?? 'float32');

  // The vision graph stops at vision_feature_layer; LoRA on later layers cannot change the output.
  const visionLayers = options.targets
    .filter((target) => target.graph === 'vision')
    .map((target) => Number(/\.layers\.(\d+)\./.exec(target.module)?.[1] ?? -1));
  const computedVisionLayers = visionLayers.length > 0 ? Math.max(...visionLayers) + 1 : 0;
  const ignored: string[] = [];

  const loaded = new Map<string, LoadedLoraModule>();
  for (const [fileModule, halves] of byModule) {
    const canonical = canonicalModuleName(fileModule);
    if (canonical === undefined) throw adapterError(path, `module ${fileModule} is not part of this model`, { module: fileModule });
    const reason = nonTargetReason(canonical);
    if (reason) throw adapterError(path, `module ${fileModule}: ${reason} in vistyle`, { module: fileModule });
    const target = targetsByModule.get(canonical);
    const visionLayer = /^vision_tower\.encoder\.layers\.(\d+)\./.exec(canonical);
    if (!target && visionLayer && computedVisionLayers > 0 && Number(visionLayer[1]) >= computedVisionLayers) {
      ignored.push(fileModule);
      continue;
    }
    if (!target) {
      throw adapterError(
        path,
        `module ${fileModule} is not a LoRA target of the built model (rebuild it with its --lora-targets including this module)`,
        { module: fileModule },
      );
    }
    for (const which of ['A', 'B'] as const) {
      if (!halves[which]) throw adapterError(path, `module ${fileModule}: lora_${which}.weight is missing`, { module: fileModule });
    }
    const a = halves.A!;
    const b = halves.B!;
    const rank = a.shape[0] ?? 0;
    const wantA = `[r, ${target.inFeatures}]`;
    const wantB = `[${target.outFeatures}, r]`;
    if (a.shape.length !== 2 || a.shape[1] !== target.inFeatures || rank < 1) {
      throw adapterError(path, `module ${fileModule}: lora_A.weight has shape [${a.shape.join(', ')}], expected ${wantA}`, { module: fileModule });
    }
    if (b.shape.length !== 2 || b.shape[0] !== target.outFeatures || b.shape[1] !== rank) {
      throw adapterError(
        path,
        `module ${fileModule}: lora_B.weight has shape [${b.shape.join(', ')}], expected ${wantB.replace('r', String(rank))}`,
        { module: fileModule },
      );
    }
    const configured = rankAndAlpha(config, fileModule);
    if (configured.rank !== rank) {
      throw adapterError(path, `module ${fileModule}: rank ${rank} in the weights, ${configured.rank} in ${ADAPTER_CONFIG_FILE}`, {
        module: fileModule,
      });
    }
    const scale = scaleOverride ?? loraScale(config, rank, configured.alpha);
    const aValues = file.readFloat32(a.name);
    const bValues = Float32Array.from(file.readFloat32(b.name), (value) => value * scale);
    loaded.set(target.module, {
      target,
      fileModule,
      rank,
      scale,
      A: toTensor(target.inputA, typeOf(target.inputA), [rank, target.inFeatures], aValues),
      B: toTensor(target.inputB, typeOf(target.inputB), [target.outFeatures, rank], bValues),
    });
  }

  // Every module the config says was trained must be in the file.
  for (const target of options.targets) {
    if (loaded.has(target.module)) continue;
    const fileModule = layoutModuleName(target.module, layout);
    if (isTargetedBy(config, fileModule)) {
      throw adapterError(path, `module ${fileModule} is missing (${ADAPTER_CONFIG_FILE} targets it)`, { module: fileModule });
    }
  }

  const modules = options.targets.flatMap((target) => loaded.get(target.module) ?? []);
  const uncovered = options.targets.filter((target) => !loaded.has(target.module));
  return { path, config, layout, modules, uncovered, ignored };
}

function toTensor(name: string, type: LoraElementType, dims: [number, number], values: Float32Array): LoraTensor {
  return { name, type, dims, data: type === 'float16' ? float32ToHalf(values) : values };
}

/**
 * "No adapter" tensors for targets: a rank-1 zero (A [1,in], B [out,1]), never a zero-size tensor
 * (onnxruntime leaves a broadcasting MatMul with inner dimension 0 uninitialised; WebGPU crashes on
 * zero-size inputs). Its delta is exactly 0.
 */
export function zeroLoraTensors(targets: readonly LoraTarget[], elementType: LoraElementType = 'float32'): LoraTensor[] {
  const zeros = (n: number): Float32Array | Uint16Array => (elementType === 'float16' ? new Uint16Array(n) : new Float32Array(n));
  return targets.flatMap((target) => [
    { name: target.inputA, type: elementType, dims: [1, target.inFeatures] as [number, number], data: zeros(target.inFeatures) },
    { name: target.inputB, type: elementType, dims: [target.outFeatures, 1] as [number, number], data: zeros(target.outFeatures) },
  ]);
}

/** The adapter's tensors for every target, a rank-1 zero where it has none: a complete set of LoRA feeds. */
export function allLoraTensors(adapter: PeftAdapter, elementType: LoraElementType = 'float32'): LoraTensor[] {
  return [...adapter.modules.flatMap((module) => [module.A, module.B]), ...zeroLoraTensors(adapter.uncovered, elementType)];
}
