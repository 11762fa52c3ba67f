// The three onnxruntime sessions of a built model (vision, embed, decoder), checked against the
// manifest so that a graph from another build fails at load time with MODEL_INVALID instead of
// at the first request.
import * as ort from 'onnxruntime-node';
import { VistyleError } from '../errors.js';
import type { ModelManifest } from '../../models/manifest.js';
import { newKeyName, newValueName, pastKeyName, pastValueName } from './kv-host.js';
import type { ModelFolder } from './model-folder.js';
import { assertCudaProviderInstalled, diagnoseProviderError, sessionOptions, type ProviderConfig } from './providers.js';

export type GraphName = 'vision' | 'embed' | 'decoder';

/** Element type of each graph input, by name (for zero LoRA tensors and the cache dtype). */
export type InputTypes = ReadonlyMap<string, ort.Tensor.Type>;

export interface GraphSession {
  name: GraphName;
  session: ort.InferenceSession;
  inputTypes: InputTypes;
}

export interface ModelSessions {
  vision: GraphSession;
  embed: GraphSession;
  decoder: GraphSession;
  release(): Promise<void>;
}

function inputTypesOf(session: ort.InferenceSession): Map<string, ort.Tensor.Type> {
  const types = new Map<string, ort.Tensor.Type>();
  session.inputMetadata.forEach((meta, index) => {
    const name = session.inputNames[index] ?? meta.name;
    if (meta.isTensor) types.set(name, meta.type);
  });
  return types;
}

function requireIo(graph: GraphSession, path: string, inputs: string[], outputs: string[]): void {
  const missingInputs = inputs.filter((name) => !graph.inputTypes.has(name));
  const missingOutputs = outputs.filter((name) => !graph.session.outputNames.includes(name));
  if (missingInputs.length > 0 || missingOutputs.length > 0) {
    const what = [...missingInputs.map((n) => `input ${n}`), ...missingOutputs.map((n) => `output ${n}`)].slice(0, 4).join(', ');
    throw new VistyleError('MODEL_INVALID', `${path} does not match vistyle-model.json (missing ${what}); rebuild the model`, {
      details: { path, missingInputs, missingOutputs },
    });
  }
}

/** Checks each graph's inputs and outputs against the manifest contract (models/manifest.ts). */
export function checkGraphsMatchManifest(sessions: Omit<ModelSessions, 'release'>, folder: ModelFolder): void {
  const m: ModelManifest = folder.manifest;
  const loraInputs = (graph: 'vision' | 'decoder'): string[] =>
    m.lora.targets.filter((t) => t.graph === graph).flatMap((t) => [t.inputA, t.inputB]);
  requireIo(sessions.vision, folder.paths.vision, ['pixel_values', ...loraInputs('vision')], ['image_features']);
  requireIo(sessions.embed, folder.paths.embed, ['input_ids'], ['inputs_embeds']);
  const layers = Array.from({ length: m.text.numLayers }, (_, i) => i);
  requireIo(
    sessions.decoder,
    folder.paths.decoder,
    ['inputs_embeds', 'position_ids', 'past_mask', ...layers.flatMap((i) => [pastKeyName(i), pastValueName(i)]), ...loraInputs('decoder')],
    ['logits', ...layers.flatMap((i) => [newKeyName(i), newValueName(i)])],
  );
  const cacheType = m.kvCache.dtype;
  for (const name of layers.flatMap((i) => [pastKeyName(i), pastValueName(i)])) {
    const type = sessions.decoder.inputTypes.get(name);
    if (type !== cacheType) {
      throw new VistyleError('MODEL_INVALID', `${folder.paths.decoder}: ${name} is ${type}, vistyle-model.json says ${cacheType}; rebuild the model`, {
        details: { path: folder.paths.decoder },
      });
    }
  }
}

async function createSession(name: GraphName, path: string, config: ProviderConfig): Promise<GraphSession> {
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(path, sessionOptions(config));
  } catch (error) {
    const providerError = await diagnoseProviderError(error, config);
    if (providerError) throw providerError;
    const message = error instanceof Error ? error.message : String(error);
    throw new VistyleError('MODEL_INVALID', `cannot load the ${name} graph ${path}: ${message.split('\n')[0]} (rebuild the model)`, {
      cause: error,
      details: { path, graph: name },
    });
  }
  return { name, session, inputTypes: inputTypesOf(session) };
}

export async function loadModelSessions(folder: ModelFolder, config: ProviderConfig): Promise<ModelSessions> {
  if (config.provider === 'cuda') assertCudaProviderInstalled();
  const opened: GraphSession[] = [];
  const release = async (): Promise<void> => {
    for (const graph of opened.splice(0)) await graph.session.release();
  };
  try {
    // One at a time: the first failure (e.g. the CUDA provider) stops before the big decoder loads.
    const vision = await createSession('vision', folder.paths.vision, config);
    opened.push(vision);
    const embed = await createSession('embed', folder.paths.embed, config);
    opened.push(embed);
    const decoder = await createSession('decoder', folder.paths.decoder, config);
    opened.push(decoder);
    const sessions = { vision, embed, decoder, release };
    checkGraphsMatchManifest(sessions, folder);
    return sessions;
  } catch (error) {
    await release();
    throw error;
  }
}
