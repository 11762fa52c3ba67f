// Where vistyle keeps things on disk by default.
import { homedir } from 'node:os';
import { join } from 'node:path';

export const DEFAULT_MODEL_ID = 'llava-hf/llava-interleave-qwen-0.5b-hf';

/** VISTYLE_HOME, default ~/.vistyle. An empty value (`VISTYLE_HOME=` in an env file) counts as unset. */
export function vistyleHome(): string {
  return process.env.VISTYLE_HOME?.trim() || join(homedir(), '.vistyle');
}

/** Folder of a pulled model: <home>/models/<owner>--<name>/{checkpoint,built}. */
export function pulledModelRoot(modelId: string = DEFAULT_MODEL_ID): string {
  return join(vistyleHome(), 'models', modelId.replace('/', '--'));
}

export function pulledCheckpointDir(modelId: string = DEFAULT_MODEL_ID): string {
  return join(pulledModelRoot(modelId), 'checkpoint');
}

export function pulledBuiltDir(modelId: string = DEFAULT_MODEL_ID): string {
  return join(pulledModelRoot(modelId), 'built');
}

/** The model `ask` and `start` use: --model, then VISTYLE_MODEL_DIR, then the pulled model. */
export function resolveModelDir(explicit?: string): string {
  return explicit || process.env.VISTYLE_MODEL_DIR?.trim() || pulledBuiltDir();
}

/**
 * Trained LoRA adapters, one folder per style id (`<dir>/pirate`): VISTYLE_ADAPTERS_DIR, default
 * <VISTYLE_HOME>/adapters. A style that names no adapter uses the one found there.
 */
export function adaptersHome(): string {
  return process.env.VISTYLE_ADAPTERS_DIR?.trim() || join(vistyleHome(), 'adapters');
}
