// The PEFT loader as the engine calls it: an adapter folder -> onnxruntime tensors by graph input
// name, for the targets the adapter covers (the engine feeds rank 0 to the rest). Matches
// src/engine/adapters.ts's AdapterLoader signature.
import * as ort from 'onnxruntime-node';
import type { AdapterRef } from '../../src/engine/types.js';
import type { ModelManifest } from '../manifest.js';
import { loadPeftAdapter, type LoraElementType, type LoraTensor } from './loader.js';

export interface AdapterFeedContext {
  manifest: ModelManifest;
  /** Element type of each graph input (from the sessions); LoRA inputs default to the build dtype. */
  inputTypes?: ReadonlyMap<string, string>;
}

export function toOrtTensor(tensor: LoraTensor): ort.Tensor {
  return tensor.type === 'float16'
    ? new ort.Tensor('float16', tensor.data as Uint16Array, tensor.dims)
    : new ort.Tensor('float32', tensor.data as Float32Array, tensor.dims);
}

export async function loadPeftAdapterFeeds(ref: AdapterRef, context: AdapterFeedContext): Promise<Map<string, ort.Tensor>> {
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
