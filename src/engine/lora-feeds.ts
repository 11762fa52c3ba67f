// The PEFT loader as the engine calls it: an adapter folder -> onnxruntime tensors by graph input
// name, for the targets the adapter covers (the engine feeds "no adapter" to the rest). Matches
// src/engine/lora.ts's LoraLoader signature. models/lora reads the files; the onnxruntime side
// lives here, so that models/ never depends on the engine.
import * as ort from 'onnxruntime-node';
import type { ModelManifest } from '../../models/manifest.js';
import { loadPeftAdapter, type LoraElementType, type LoraTensor } from '../../models/lora/loader.js';
import type { LoraRef } from './types.js';

export interface LoraFeedContext {
  manifest: ModelManifest;
  /** Element type of each graph input (from the sessions); LoRA inputs default to the build dtype. */
  inputTypes?: ReadonlyMap<string, string>;
}

export function toOrtTensor(tensor: LoraTensor): ort.Tensor {
  return tensor.type === 'float16'
    ? new ort.Tensor('float16', tensor.data as Uint16Array, tensor.dims)
    : new ort.Tensor('float32', tensor.data as Float32Array, tensor.dims);
}

export async function loadPeftLoraFeeds(ref: LoraRef, context: LoraFeedContext): Promise<Map<string, ort.Tensor>> {
  const fallback: LoraElementType = context.manifest.lora.dtype ?? (context.manifest.dtype === 'fp16' ? 'float16' : 'float32');
  const elementType = (name: string): LoraElementType => {
    const type = context.inputTypes?.get(name);
    return type === 'float16' ? 'float16' : type === 'float32' ? 'float32' : fallback;
  };
  const adapter = loadPeftAdapter(ref, { targets: context.manifest.lora.targets, elementType });
  const feeds = new Map<string, ort.Tensor>();
  for (const module of adapter.modules) {
    feeds.set(module.A.name, toOrtTensor(module.A));
    feeds.set(module.B.name, toOrtTensor(module.B));
  }
  return feeds;
}
