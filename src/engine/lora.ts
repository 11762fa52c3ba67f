// LoRA adapters (PEFT folders) per request: loaded once into graph-input tensors (by input name) and kept in a
// small LRU keyed by folder + scale + modification times, so switching styles costs a map lookup.
import { statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type * as ort from 'onnxruntime-node';
import { VistyleError } from '../errors.js';
import type { ModelManifest } from '../../models/manifest.js';
import type { LoadedLora } from './generation-parts.js';
import { loadPeftLoraFeeds } from './lora-feeds.js';
import { LruCache } from './lru.js';
import type { ModelFolder } from './model-folder.js';
import type { InputTypes, ModelSessions } from './session.js';
import type { LoraRef } from './types.js';

export interface LoraLoadContext {
  manifest: ModelManifest;
  /** Element type of each LoRA input of the graph it belongs to (float32, or float16 builds). */
  inputTypes: InputTypes;
}

/** Reads a PEFT adapter folder into tensors by graph input name ([r,in] A, [out,r] B with the scale folded into B). */
export type LoraLoader = (ref: LoraRef, context: LoraLoadContext) => Promise<ReadonlyMap<string, ort.Tensor>>;

/** models/lora's PEFT loader (adapter_config.json + adapter_model.safetensors). */
export const defaultLoraLoader: LoraLoader = (ref, context) => loadPeftLoraFeeds(ref, context);

/**
 * Modification times of the adapter's weights and its config (alpha and r set the scale), so that
 * an adapter re-trained or edited in place is loaded again — also when a request came between the
 * trainer's two writes.
 */
function loraVersion(path: string): string {
  const mtime = (file: string): number | null => {
    try {
      return statSync(file).mtimeMs;
    } catch {
      return null;
    }
  };
  const weights = mtime(join(path, 'adapter_model.safetensors'));
  const config = mtime(join(path, 'adapter_config.json'));
  if (weights === null && config === null && mtime(path) === null) {
    throw new VistyleError('ADAPTER_INVALID', `LoRA adapter folder ${path} does not exist`, { details: { path } });
  }
  return `${weights ?? '-'}|${config ?? '-'}`;
}

export class LoraCache {
  private readonly cache: LruCache<string, LoadedLora>;
  private readonly inputTypes: InputTypes;

  constructor(
    private readonly loader: LoraLoader,
    private readonly folder: ModelFolder,
    sessions: ModelSessions,
    capacity: number,
  ) {
    this.cache = new LruCache(capacity);
    this.inputTypes = new Map([...sessions.vision.inputTypes, ...sessions.decoder.inputTypes]);
  }

  async get(ref: LoraRef): Promise<LoadedLora> {
    if (this.folder.manifest.lora.targets.length === 0) {
      throw new VistyleError('ADAPTER_INVALID', `the model at ${this.folder.dir} was built without LoRA inputs; rebuild it without --no-lora to use adapters`);
    }
    const path = resolve(ref.path);
    const key = `${path}|${ref.scale ?? ''}|${loraVersion(path)}`;
    const cached = this.cache.get(key);
    if (cached) return cached;
    const feeds = await this.loader({ ...ref, path }, { manifest: this.folder.manifest, inputTypes: this.inputTypes });
    const known = new Set(this.folder.manifest.lora.targets.flatMap((t) => [t.inputA, t.inputB]));
    for (const name of feeds.keys()) {
      if (!known.has(name)) {
        throw new VistyleError('ADAPTER_INVALID', `LoRA adapter ${path} feeds ${name}, which the model's graphs do not take`, { details: { path } });
      }
    }
    const loaded: LoadedLora = { key, feeds };
    this.cache.set(key, loaded);
    return loaded;
  }

  clear(): void {
    this.cache.clear();
  }
}
