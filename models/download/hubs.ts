// The two hubs a checkpoint can come from, reduced to what a download needs: where the file listing
// is, how to read it, and the URL of one file. Both hold the model under the same id.
//
// Hugging Face:  GET {endpoint}/api/models/{id}/revision/{rev}?blobs=true
//                  -> { sha, siblings: [{ rfilename, size, blobId, lfs?: { sha256, size } }] }
//                GET {endpoint}/{id}/resolve/{rev}/{path}   (LFS files redirect to a CDN)
// ModelScope:    GET {endpoint}/api/v1/models/{id}/repo/files?Revision={rev}&Recursive=true
//                  -> { Code: 200, Data: { Files: [{ Path, Type, Size, Sha256 }] } }
//                GET {endpoint}/api/v1/models/{id}/repo?Revision={rev}&FilePath={path}
import { VistyleError } from '../../src/errors.js';

export type HubSource = 'huggingface' | 'modelscope';
export const HUB_SOURCES: readonly HubSource[] = ['huggingface', 'modelscope'];

export const DEFAULT_HF_ENDPOINT = 'https://huggingface.co';
export const DEFAULT_MODELSCOPE_ENDPOINT = 'https://www.modelscope.cn';

/** One file of a repository as its hub lists it. */
export interface RemoteFile {
  path: string;
  /** Bytes; undefined when the hub did not say. */
  size?: number;
  /** sha256 of the content (LFS files on Hugging Face, every file on ModelScope). */
  sha256?: string;
  /** Git blob id (sha1 of "blob <size>\0" + content) of a file kept in git, not LFS. */
  gitBlobSha1?: string;
}

export interface RepoListing {
  /** The commit the listing describes, when the hub says (Hugging Face). */
  commit?: string;
  files: RemoteFile[];
}

export interface Hub {
  source: HubSource;
  /** Base URL without a trailing slash. */
  endpoint: string;
  /** The environment variable an operator sets to use a mirror (for error messages). */
  endpointEnv: string;
  /** Branch used when no revision is given: `main` on Hugging Face, `master` on ModelScope. */
  defaultRevision: string;
  listingUrl(modelId: string, revision: string): string;
  parseListing(body: unknown, modelId: string, revision: string): RepoListing;
  fileUrl(modelId: string, revision: string, path: string): string;
  /** Whether an access token may be sent to this hub (never to the CDN it redirects to). */
  acceptsToken: boolean;
}

type Env = Record<string, string | undefined>;

function cleanEndpoint(value: string, variable: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new VistyleError('CONFIG_INVALID', `${variable} is not a URL: ${JSON.stringify(value)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new VistyleError('CONFIG_INVALID', `${variable} must be an http(s) URL, got ${JSON.stringify(value)}`);
  }
  if (url.username || url.password) {
    // fetch refuses such URLs, and its message would print the password; never echo the value
    throw new VistyleError(
      'CONFIG_INVALID',
      `${variable} must not carry a user name or password (${url.protocol}//user:password@...); use ${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`,
    );
  }
  return value.replace(/\/+$/, '');
}

function firstSet(env: Env, names: string[]): { name: string; value: string } | undefined {
  for (const name of names) {
    const value = env[name]?.trim();
    if (value) return { name, value };
  }
  return undefined;
}

/** Encode each segment of a repository path, keeping the slashes. */
function encodePath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}

function encodeModelId(modelId: string): string {
  return encodePath(modelId);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalSize(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
}

function optionalHex(value: unknown, length: number): string | undefined {
  if (typeof value !== 'string') return undefined;
  const hex = value.toLowerCase();
  return hex.length === length && /^[0-9a-f]+$/.test(hex) ? hex : undefined;
}

function badListing(source: string, modelId: string, why: string): VistyleError {
  return new VistyleError('NETWORK', `${source} returned an unexpected file listing for ${modelId}: ${why}`);
}

export function huggingFaceHub(env: Env = process.env): Hub {
  const set = firstSet(env, ['VISTYLE_HF_ENDPOINT', 'HF_ENDPOINT']);
  const endpoint = set ? cleanEndpoint(set.value, set.name) : DEFAULT_HF_ENDPOINT;
  return {
    source: 'huggingface',
    endpoint,
    endpointEnv: 'HF_ENDPOINT',
    defaultRevision: 'main',
    acceptsToken: true,
    listingUrl: (modelId, revision) =>
      `${endpoint}/api/models/${encodeModelId(modelId)}/revision/${encodeURIComponent(revision)}?blobs=true`,
    fileUrl: (modelId, revision, path) =>
      `${endpoint}/${encodeModelId(modelId)}/resolve/${encodeURIComponent(revision)}/${encodePath(path)}`,
    parseListing(body, modelId) {
      if (!isRecord(body) || !Array.isArray(body.siblings)) throw badListing('Hugging Face', modelId, 'no "siblings"');
      const files: RemoteFile[] = [];
      for (const sibling of body.siblings) {
        if (!isRecord(sibling) || typeof sibling.rfilename !== 'string') continue;
        const lfs = isRecord(sibling.lfs) ? sibling.lfs : undefined;
        const file: RemoteFile = { path: sibling.rfilename };
        const size = optionalSize(lfs?.size) ?? optionalSize(sibling.size);
        if (size !== undefined) file.size = size;
        const sha256 = optionalHex(lfs?.sha256, 64);
        if (sha256) file.sha256 = sha256;
        // blobId is the git blob of the file itself only when it is not an LFS pointer
        const blob = lfs ? undefined : optionalHex(sibling.blobId, 40);
        if (blob) file.gitBlobSha1 = blob;
        files.push(file);
      }
      const listing: RepoListing = { files };
      const commit = optionalHex(body.sha, 40);
      if (commit) listing.commit = commit;
      return listing;
    },
  };
}

export function modelScopeHub(env: Env = process.env): Hub {
  const set = firstSet(env, ['VISTYLE_MODELSCOPE_ENDPOINT', 'MODELSCOPE_ENDPOINT']);
  let endpoint = DEFAULT_MODELSCOPE_ENDPOINT;
  if (set) {
    endpoint = cleanEndpoint(set.value, set.name);
  } else if (env.MODELSCOPE_DOMAIN?.trim()) {
    // the modelscope library's own variable: a bare domain or a URL
    const domain = env.MODELSCOPE_DOMAIN.trim();
    endpoint = cleanEndpoint(/^https?:\/\//.test(domain) ? domain : `https://${domain}`, 'MODELSCOPE_DOMAIN');
  }
  return {
    source: 'modelscope',
    endpoint,
    endpointEnv: 'MODELSCOPE_ENDPOINT',
    defaultRevision: 'master',
    acceptsToken: false,
    listingUrl: (modelId, revision) =>
      `${endpoint}/api/v1/models/${encodeModelId(modelId)}/repo/files?Revision=${encodeURIComponent(revision)}&Recursive=true`,
    fileUrl: (modelId, revision, path) =>
      `${endpoint}/api/v1/models/${encodeModelId(modelId)}/repo?Revision=${encodeURIComponent(revision)}&FilePath=${encodeURIComponent(path)}`,
    parseListing(body, modelId, revision) {
      if (!isRecord(body)) throw badListing('ModelScope', modelId, 'not a JSON object');
      if (body.Code !== undefined && body.Code !== 200) {
        const message = typeof body.Message === 'string' ? body.Message : `code ${String(body.Code)}`;
        throw new VistyleError('NETWORK', `ModelScope refused the file listing of ${modelId} at revision ${revision}: ${message}`);
      }
      const data = isRecord(body.Data) ? body.Data : undefined;
      if (!data || !Array.isArray(data.Files)) throw badListing('ModelScope', modelId, 'no "Data.Files"');
      const files: RemoteFile[] = [];
      for (const entry of data.Files) {
        if (!isRecord(entry) || typeof entry.Path !== 'string' || entry.Type === 'tree') continue;
        const file: RemoteFile = { path: entry.Path };
        const size = optionalSize(entry.Size);
        if (size !== undefined) file.size = size;
        const sha256 = optionalHex(entry.Sha256, 64);
        if (sha256) file.sha256 = sha256;
        files.push(file);
      }
      return { files };
    },
  };
}

export function resolveHub(source: HubSource, env: Env = process.env): Hub {
  return source === 'modelscope' ? modelScopeHub(env) : huggingFaceHub(env);
}

export function parseHubSource(value: string): HubSource {
  const normalised = value.trim().toLowerCase();
  if (normalised === 'huggingface' || normalised === 'hf') return 'huggingface';
  if (normalised === 'modelscope' || normalised === 'ms') return 'modelscope';
  throw new VistyleError('CONFIG_INVALID', `unknown source ${JSON.stringify(value)}: use huggingface or modelscope`);
}

/** The access token for Hugging Face: HF_TOKEN, or the older HUGGING_FACE_HUB_TOKEN. */
export function huggingFaceToken(env: Env = process.env): string | undefined {
  return firstSet(env, ['HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN'])?.value;
}
