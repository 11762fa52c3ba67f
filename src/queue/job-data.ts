// What a job carries from a front end to a worker, and how an engine request becomes JSON and
// back. The request is serialised generically (whatever GenerateRequest holds: one `image` or
// several `images`, text or content parts): every Uint8Array becomes a `{ "$blob": n }` reference
// to picture bytes stored beside the job in Redis (size-capped, with a TTL, deleted when the job
// ends), and a LoRA reference (`lora` or `adapter`, `{ path, scale }`) travels by the adapter
// folder's NAME, because each worker has its own copy of the adapter files. Nothing else of the
// front end's goes in: no platform token, no API key, no file path.
import { basename } from 'node:path';
import { VistyleError } from '../errors.js';
import type { GenerateRequest } from '../engine/types.js';
import { ADAPTER_NAME_PATTERN } from './keys.js';

export interface AnswerJobData {
  v: 1;
  /** The scheduler's request id (limits; one request may make several jobs). */
  requestId: string;
  /** Whose limits it counts against (`telegram:42`), for the workers' logs. */
  userKey: string;
  /** The front end that waits for it: its reply stream and its liveness key. */
  frontEnd: string;
  replyTo: string;
  /** The engine request as JSON, pictures replaced by blob references. */
  request: unknown;
  /** Pictures stored for the job (`keys.blob(jobId, i)`). */
  blobs: number;
  /** LoRA adapter (folder name) the job needs, or null. */
  adapter: string | null;
  /** The worker ends the run after this long (a backstop: the front end times out first). */
  timeoutMs: number;
  /** When the front end accepted the request (ms since the epoch), for queue-wait metrics. */
  acceptedAt: number;
}

export interface EncodedRequest {
  json: unknown;
  blobs: Uint8Array[];
  adapter: string | null;
}

const ADAPTER_KEYS = new Set(['lora', 'adapter']);

export function encodeRequest(request: GenerateRequest): EncodedRequest {
  const blobs: Uint8Array[] = [];
  let adapter: string | null = null;
  const walk = (value: unknown, key: string | undefined): unknown => {
    if (value instanceof Uint8Array) {
      blobs.push(value);
      return { $blob: blobs.length - 1 };
    }
    if (Array.isArray(value)) return value.map((item) => walk(item, undefined));
    if (value !== null && typeof value === 'object') {
      const record = value as Record<string, unknown>;
      if (key !== undefined && ADAPTER_KEYS.has(key) && typeof record.path === 'string') {
        const name = basename(record.path.replace(/[\\/]+$/, ''));
        if (!ADAPTER_NAME_PATTERN.test(name)) {
          throw new VistyleError('ADAPTER_INVALID', `the LoRA adapter folder name "${name}" cannot be served by workers (letters, digits, . _ - only)`);
        }
        adapter = name;
        return record.scale === undefined ? { name } : { name, scale: record.scale };
      }
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(record)) if (v !== undefined) out[k] = walk(v, k);
      return out;
    }
    return value;
  };
  const json = walk(request, undefined);
  return { json, blobs, adapter };
}

/** The worker side: blob references become the bytes, adapter names this worker's folder. */
export function decodeRequest(json: unknown, blobs: Uint8Array[], adapterPath: (name: string) => string): GenerateRequest {
  const walk = (value: unknown, key: string | undefined): unknown => {
    if (Array.isArray(value)) return value.map((item) => walk(item, undefined));
    if (value !== null && typeof value === 'object') {
      const record = value as Record<string, unknown>;
      if (typeof record.$blob === 'number' && Object.keys(record).length === 1) {
        const bytes = blobs[record.$blob];
        if (!bytes) throw new VistyleError('INTERNAL', `job references picture ${record.$blob}, which it does not carry`);
        return bytes;
      }
      if (key !== undefined && ADAPTER_KEYS.has(key) && typeof record.name === 'string') {
        const path = adapterPath(record.name);
        return record.scale === undefined ? { path } : { path, scale: record.scale };
      }
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(record)) out[k] = walk(v, k);
      return out;
    }
    return value;
  };
  return walk(json, undefined) as GenerateRequest;
}

export function blobBytes(blobs: Uint8Array[]): number {
  return blobs.reduce((sum, blob) => sum + blob.byteLength, 0);
}
