// Which files of the hub repository the model needs. Everything else (README, .gitattributes,
// pytorch_model.bin, ONNX exports, images...) is left on the hub.
import { VistyleError } from '../../src/errors.js';
import type { RemoteFile } from './hubs.js';

/** Top-level files read by the checkpoint reader, the tokenizer, the chat template and the processor. */
export const CHECKPOINT_FILES: readonly string[] = [
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
  'chat_template.json',
  'chat_template.jinja',
  'preprocessor_config.json',
  'processor_config.json',
];

const SINGLE_WEIGHTS = 'model.safetensors';
const WEIGHTS_INDEX = 'model.safetensors.index.json';
const SHARD = /^model-\d{5}-of-\d{5}\.safetensors$/;

const REQUIRED = ['config.json', 'tokenizer.json'];

/**
 * Picks the files to download from a repository listing. Weights: the single `model.safetensors`,
 * or the index with its shards when the checkpoint is sharded (never both).
 */
export function selectCheckpointFiles(files: readonly RemoteFile[], describe: string): RemoteFile[] {
  const byPath = new Map(files.map((file) => [file.path, file]));
  const missing = REQUIRED.filter((name) => !byPath.has(name));
  if (missing.length > 0) {
    throw new VistyleError('CHECKPOINT_INVALID', `${describe} has no ${missing.join(' or ')}: is it a Hugging Face checkpoint?`);
  }
  const chosen = CHECKPOINT_FILES.flatMap((name) => byPath.get(name) ?? []);
  const single = byPath.get(SINGLE_WEIGHTS);
  const index = byPath.get(WEIGHTS_INDEX);
  if (single) {
    chosen.push(single);
  } else if (index) {
    const shards = files.filter((file) => SHARD.test(file.path)).sort((a, b) => a.path.localeCompare(b.path));
    if (shards.length === 0) {
      throw new VistyleError('CHECKPOINT_INVALID', `${describe} has ${WEIGHTS_INDEX} but no model-NNNNN-of-NNNNN.safetensors shards`);
    }
    chosen.push(index, ...shards);
  } else {
    throw new VistyleError('CHECKPOINT_INVALID', `${describe} has no safetensors weights (${SINGLE_WEIGHTS} or ${WEIGHTS_INDEX})`);
  }
  return chosen;
}

/** Shard names an index refers to (to check that the download holds every one of them). */
export function shardsOfIndex(indexJson: unknown): string[] {
  if (typeof indexJson !== 'object' || indexJson === null) return [];
  const weightMap = (indexJson as { weight_map?: unknown }).weight_map;
  if (typeof weightMap !== 'object' || weightMap === null) return [];
  return [...new Set(Object.values(weightMap).filter((v): v is string => typeof v === 'string'))].sort();
}
