// Opens a built model folder (written by `vistyle model build`): reads and validates
// vistyle-model.json against the manifest schema and checks that every file it names is there.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { VistyleError } from '../errors.js';
import { MANIFEST_FILE, MANIFEST_FORMAT, MANIFEST_VERSION, ModelManifestSchema, type ModelManifest } from '../../models/manifest.js';

export interface ModelFolder {
  dir: string;
  manifest: ModelManifest;
  /** Absolute paths of the graphs and copied checkpoint files. */
  paths: {
    vision: string;
    embed: string;
    decoder: string;
    config: string;
    tokenizer: string;
    tokenizerConfig: string | null;
    chatTemplate: string | null;
    preprocessorConfig: string;
    generationConfig: string | null;
  };
}

function inFolder(dir: string, file: string): string {
  return isAbsolute(file) ? file : join(dir, file);
}

export function openModelFolder(modelDir: string): ModelFolder {
  const dir = resolve(modelDir);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new VistyleError('MODEL_NOT_FOUND', `no built model at ${dir} (build one with \`vistyle model build\` or \`vistyle model pull\`)`, {
      details: { path: dir },
    });
  }
  const manifestPath = join(dir, MANIFEST_FILE);
  if (!existsSync(manifestPath)) {
    throw new VistyleError('MODEL_NOT_FOUND', `${manifestPath} is missing: ${dir} is not a built model folder (build one with \`vistyle model build\`)`, {
      details: { path: manifestPath },
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(manifestPath, 'utf8'));
  } catch (error) {
    throw new VistyleError('MODEL_INVALID', `${manifestPath} is not valid JSON: ${(error as Error).message}`, {
      cause: error,
      details: { path: manifestPath },
    });
  }
  const version = (raw as { format?: unknown; version?: unknown } | null)?.version;
  if ((raw as { format?: unknown } | null)?.format === MANIFEST_FORMAT && version !== MANIFEST_VERSION) {
    throw new VistyleError(
      'MODEL_INVALID',
      `${manifestPath} was written by another vistyle (model format version ${String(version)}; this vistyle reads version ${MANIFEST_VERSION}): rebuild the model with \`vistyle model build\` or \`vistyle model pull\``,
      { details: { path: manifestPath, version, expected: MANIFEST_VERSION } },
    );
  }
  const parsed = ModelManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? issue.path.join('.') : '(root)';
    throw new VistyleError(
      'MODEL_INVALID',
      `${manifestPath} is not a vistyle model manifest of this version: ${where}: ${issue?.message ?? 'invalid'} (rebuild the model with this vistyle)`,
      { details: { path: manifestPath, field: where } },
    );
  }
  const manifest = parsed.data;
  const optional = (file: string | null): string | null => (file === null ? null : inFolder(dir, file));
  const paths: ModelFolder['paths'] = {
    vision: inFolder(dir, manifest.graphs.vision),
    embed: inFolder(dir, manifest.graphs.embed),
    decoder: inFolder(dir, manifest.graphs.decoder),
    config: inFolder(dir, manifest.files.config),
    tokenizer: inFolder(dir, manifest.files.tokenizer),
    tokenizerConfig: optional(manifest.files.tokenizerConfig),
    chatTemplate: optional(manifest.files.chatTemplate),
    preprocessorConfig: inFolder(dir, manifest.files.preprocessorConfig),
    generationConfig: optional(manifest.files.generationConfig),
  };
  // Every missing file at once (a folder replaced or half deleted while the bot ran), not the first.
  const missing = Object.entries(paths).filter((entry): entry is [string, string] => entry[1] !== null && !existsSync(entry[1]));
  if (missing.length > 0) {
    const list = missing.map(([field, file]) => `${relative(dir, file) || file} (${field})`).join(', ');
    throw new VistyleError('MODEL_INVALID', `the built model at ${dir} is incomplete: missing ${list}; rebuild it with \`vistyle model build\``, {
      details: { path: missing[0]![1], field: missing[0]![0], missing: missing.map(([field, file]) => ({ field, path: file })) },
    });
  }
  return { dir, manifest, paths };
}
