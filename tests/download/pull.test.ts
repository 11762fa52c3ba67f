// downloadCheckpoint against a fake hub on 127.0.0.1: selection, both hubs, resume, retries,
// checksums, skipping what is present, token scoping.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { downloadCheckpoint, DOWNLOAD_RECORD_FILE, type DownloadCheckpointOptions } from '../../models/download/index.js';
import { isVistyleError } from '../../src/errors.js';
import { FakeHub, closedPortUrl, digests, type FakeFile } from './fake-hub.js';

const MODEL_ID = 'llava-hf/llava-interleave-qwen-0.5b-hf';
const FIXTURE = new URL('../fixtures/tiny-a/', import.meta.url);

/** The tiny checkpoint as a hub repository, with files the model does not need beside it. */
function tinyRepo(): FakeFile[] {
  const read = (name: string): Buffer => readFileSync(new URL(name, FIXTURE));
  const needed = [
    'config.json',
    'generation_config.json',
    'tokenizer.json',
    'tokenizer_config.json',
    'vocab.json',
    'merges.txt',
    'chat_template.json',
    'preprocessor_config.json',
    'processor_config.json',
    'model.safetensors',
  ];
  return [
    ...needed.map((path) => ({ path, data: read(path), lfs: path === 'model.safetensors' || path === 'tokenizer.json' })),
    { path: '.gitattributes', data: Buffer.from('*.safetensors filter=lfs diff=lfs merge=lfs -text\n') },
    { path: 'README.md', data: Buffer.from('# tiny\n') },
    { path: 'pytorch_model.bin', data: randomBytes(4096), lfs: true },
    { path: 'onnx/decoder.onnx', data: randomBytes(2048), lfs: true },
  ];
}

const NEEDED = [
  'chat_template.json',
  'config.json',
  'generation_config.json',
  'merges.txt',
  'model.safetensors',
  'preprocessor_config.json',
  'processor_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'vocab.json',
];

let hub: FakeHub;
let work: string;

beforeEach(async () => {
  hub = await new FakeHub(MODEL_ID, tinyRepo()).start();
  work = mkdtempSync(join(tmpdir(), 'vistyle-pull-'));
});

afterEach(async () => {
  await hub.stop();
  rmSync(work, { recursive: true, force: true });
});

function options(extra: Partial<DownloadCheckpointOptions> = {}): DownloadCheckpointOptions {
  return {
    dir: join(work, 'checkpoint'),
    env: { HF_ENDPOINT: hub.url, MODELSCOPE_ENDPOINT: hub.url },
    retry: { retries: 3, baseDelayMs: 5, maxDelayMs: 20 },
    stallTimeoutMs: 2000,
    responseTimeoutMs: 5000,
    ...extra,
  };
}

function expectSameAsHub(dir: string): void {
  for (const name of NEEDED) {
    const served = hub.files.find((f) => f.path === name)!.data;
    expect(digests.sha256(readFileSync(join(dir, name))), name).toBe(digests.sha256(served));
  }
}

function checkpointFiles(dir: string): string[] {
  return readdirSync(dir).filter((name) => !name.startsWith('.')).sort();
}

describe('downloadCheckpoint from the Hugging Face API', () => {
  it('fetches exactly the files the model needs, pinned to the listed commit, LFS through the CDN', async () => {
    const result = await downloadCheckpoint(options());
    const dir = result.dir;
    expect(checkpointFiles(dir)).toEqual(NEEDED);
    expectSameAsHub(dir);
    expect(result.commit).toBe(hub.commit);
    expect(result.revision).toBe('main');
    expect(result.files.every((f) => f.status === 'fetched')).toBe(true);
    expect(result.files.find((f) => f.path === 'model.safetensors')?.verifiedBy).toBe('sha256');
    expect(result.files.find((f) => f.path === 'config.json')?.verifiedBy).toBe('git-blob');

    // the listing asked for sizes and hashes; downloads used the commit, not the moving branch
    const listing = hub.requests.find((r) => r.url.startsWith('/api/models/'));
    expect(listing?.url).toBe(`/api/models/${MODEL_ID}/revision/main?blobs=true`);
    const resolves = hub.requests.filter((r) => r.url.includes('/resolve/'));
    expect(resolves.length).toBe(NEEDED.length);
    expect(resolves.every((r) => r.url.includes(`/resolve/${hub.commit}/`))).toBe(true);
    // LFS bodies came from the CDN origin, everything without content encoding
    expect(hub.downloadsOf('model.safetensors').map((r) => r.server)).toEqual(['hub', 'cdn']);
    expect(hub.requests.every((r) => r.acceptEncoding === 'identity')).toBe(true);
    // nothing outside the needed set was requested
    for (const skipped of ['README.md', 'pytorch_model.bin', '.gitattributes', 'onnx/decoder.onnx']) {
      expect(hub.downloadsOf(skipped)).toEqual([]);
    }
    const record = JSON.parse(readFileSync(join(dir, DOWNLOAD_RECORD_FILE), 'utf8'));
    expect(record).toMatchObject({ modelId: MODEL_ID, source: 'huggingface', revision: 'main', commit: hub.commit });
    expect(record.files.map((f: { path: string }) => f.path).sort()).toEqual(NEEDED);
  });

  it('sends HF_TOKEN to the hub only, never to the CDN it redirects to', async () => {
    const token = 'hf_test_token_abcdefghijklmnop';
    await downloadCheckpoint(options({ env: { HF_ENDPOINT: hub.url, HF_TOKEN: token } }));
    const toHub = hub.requests.filter((r) => r.server === 'hub');
    const toCdn = hub.requests.filter((r) => r.server === 'cdn');
    expect(toHub.length).toBeGreaterThan(0);
    expect(toCdn.length).toBeGreaterThan(0);
    expect(toHub.every((r) => r.authorization === `Bearer ${token}`)).toBe(true);
    expect(toCdn.every((r) => r.authorization === undefined)).toBe(true);
  });

  it('VISTYLE_HF_ENDPOINT wins over HF_ENDPOINT', async () => {
    const result = await downloadCheckpoint(options({ env: { VISTYLE_HF_ENDPOINT: hub.url, HF_ENDPOINT: await closedPortUrl() } }));
    expect(result.endpoint).toBe(hub.url);
    expectSameAsHub(result.dir);
  });

  it('resumes an interrupted transfer with a Range request and verifies the result', async () => {
    hub.faults.interruptOnce.set('model.safetensors', 200_000);
    const retries: string[] = [];
    const result = await downloadCheckpoint(
      options({
        reporter: { ...quietReporter(), retry: (path, reason) => retries.push(`${path}: ${reason}`) },
      }),
    );
    expectSameAsHub(result.dir);
    const cdn = hub.downloadsOf('model.safetensors').filter((r) => r.server === 'cdn');
    expect(cdn.length).toBe(2);
    expect(cdn[0]!.range).toBeUndefined();
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(cdn[1]!.range ?? '')?.[1]);
    expect(resumedAt).toBeGreaterThan(0);
    expect(resumedAt).toBeLessThanOrEqual(200_000);
    expect(retries.length).toBe(1);
    expect(retries[0]).toMatch(/^model\.safetensors: /);
    expect(existsSync(join(result.dir, 'model.safetensors.incomplete'))).toBe(false);
  });

  it('continues a partial file left by an earlier run instead of starting over', async () => {
    const dir = join(work, 'checkpoint');
    const full = hub.files.find((f) => f.path === 'model.safetensors')!.data;
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'model.safetensors.incomplete'), full.subarray(0, 300_000));
    let planned: { total: number; resumable: number } | undefined;
    const result = await downloadCheckpoint(
      options({ reporter: { ...quietReporter(), plan: (p) => (planned = { total: p.totalBytes, resumable: p.resumableBytes }) } }),
    );
    expectSameAsHub(result.dir);
    const cdn = hub.downloadsOf('model.safetensors').filter((r) => r.server === 'cdn');
    expect(cdn.map((r) => r.range)).toEqual(['bytes=300000-']);
    expect(planned?.resumable).toBe(300_000);
    const fetched = result.files.find((f) => f.path === 'model.safetensors');
    expect(fetched?.verifiedBy).toBe('sha256');
    expect(result.bytesReceived).toBeLessThan(NEEDED.reduce((n, p) => n + hub.files.find((f) => f.path === p)!.data.length, 0) - 299_000);
  });

  it('drops a partial file that an interrupted pull of another revision left behind', async () => {
    // an earlier pull of other weights stopped halfway
    const oldWeights = randomBytes(400_000);
    const current = hub.files.find((f) => f.path === 'model.safetensors')!;
    const newWeights = current.data;
    current.data = oldWeights;
    hub.faults.stallOnce.set('model.safetensors', 250_000);
    const controller = new AbortController();
    let received = 0;
    await downloadCheckpoint(
      options({
        stallTimeoutMs: 30_000,
        signal: controller.signal,
        reporter: {
          ...quietReporter(),
          fileStart: (path) => (received = path === 'model.safetensors' ? 0 : -1e9),
          bytes: (count) => {
            received += count;
            if (received === 250_000) setTimeout(() => controller.abort(), 20);
          },
        },
      }),
    ).catch(() => undefined);
    const dir = join(work, 'checkpoint');
    expect(readFileSync(join(dir, 'model.safetensors.incomplete')).length).toBe(250_000);
    // the hub now has new weights: the old partial must not be resumed
    current.data = newWeights;
    const notes: string[] = [];
    const result = await downloadCheckpoint(options({ reporter: { ...quietReporter(), note: (t) => notes.push(t) } }));
    expectSameAsHub(result.dir);
    expect(notes).toEqual([]); // no checksum failure on the way
    expect(hub.downloadsOf('model.safetensors').filter((r) => r.server === 'cdn').at(-1)?.range).toBeUndefined();
    expect(existsSync(join(dir, '.vistyle-partials.json'))).toBe(false);
  });

  it('starts the file over when the server ignores the Range header', async () => {
    const dir = join(work, 'checkpoint');
    const full = hub.files.find((f) => f.path === 'model.safetensors')!.data;
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'model.safetensors.incomplete'), full.subarray(0, 1000));
    hub.faults.ignoreRange.add('model.safetensors');
    const result = await downloadCheckpoint(options());
    expectSameAsHub(result.dir);
  });

  it('retries a 500 from the listing and from a file, then succeeds', async () => {
    hub.faults.fail500.set('listing', 1);
    hub.faults.fail500.set('config.json', 2);
    const retries: string[] = [];
    const result = await downloadCheckpoint(options({ reporter: { ...quietReporter(), retry: (path, reason) => retries.push(`${path}: ${reason}`) } }));
    expectSameAsHub(result.dir);
    expect(retries).toEqual(['file listing: HTTP 500', 'config.json: HTTP 500', 'config.json: HTTP 500']);
  });

  it('gives up after the configured retries with one line naming the file and the status', async () => {
    hub.faults.fail500.set('tokenizer_config.json', 100);
    const error = await downloadCheckpoint(options({ retry: { retries: 2, baseDelayMs: 1, maxDelayMs: 2 } })).catch((e: unknown) => e);
    expect(isVistyleError(error, 'NETWORK')).toBe(true);
    expect((error as Error).message).toMatch(/^download of tokenizer_config\.json failed.*HTTP 500/);
    expect((error as Error).message).not.toContain('\n');
    expect(hub.downloadsOf('tokenizer_config.json').length).toBe(3);
  });

  it('resumes after a stalled transfer (no bytes for the stall time-out)', async () => {
    hub.faults.stallOnce.set('model.safetensors', 50_000);
    const result = await downloadCheckpoint(options({ stallTimeoutMs: 300 }));
    expectSameAsHub(result.dir);
    const cdn = hub.downloadsOf('model.safetensors').filter((r) => r.server === 'cdn');
    expect(cdn.length).toBe(2);
    expect(cdn[1]!.range).toMatch(/^bytes=\d+-$/);
  });

  it('downloads a file again once when its checksum is wrong', async () => {
    hub.faults.corrupt.set('model.safetensors', 'once');
    const notes: string[] = [];
    const result = await downloadCheckpoint(options({ reporter: { ...quietReporter(), note: (t) => notes.push(t) } }));
    expectSameAsHub(result.dir);
    expect(notes.some((n) => /model\.safetensors: checksum mismatch \(sha256 /.test(n))).toBe(true);
  });

  it('fails with a clear error, deleting the partial, when the checksum stays wrong', async () => {
    hub.faults.corrupt.set('model.safetensors', 'always');
    const error = await downloadCheckpoint(options()).catch((e: unknown) => e);
    expect(isVistyleError(error, 'CHECKPOINT_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(/^model\.safetensors failed its checksum twice \(sha256 [0-9a-f]{12}…, expected [0-9a-f]{12}…\)/);
    const dir = join(work, 'checkpoint');
    expect(existsSync(join(dir, 'model.safetensors'))).toBe(false);
    expect(existsSync(join(dir, 'model.safetensors.incomplete'))).toBe(false);
  });

  it('detects a damaged small file by its git blob id', async () => {
    hub.faults.corrupt.set('config.json', 'always');
    const error = await downloadCheckpoint(options()).catch((e: unknown) => e);
    expect(isVistyleError(error, 'CHECKPOINT_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(/^config\.json failed its checksum twice \(git blob /);
  });

  it('skips files already present and verified, and replaces a damaged one', async () => {
    const first = await downloadCheckpoint(options());
    const damaged = join(first.dir, 'tokenizer_config.json');
    const bytes = readFileSync(damaged);
    bytes[0] = (bytes[0] ?? 0) ^ 0xff;
    writeFileSync(damaged, bytes);
    hub.requests.length = 0;
    const skipped: string[] = [];
    const second = await downloadCheckpoint(options({ reporter: { ...quietReporter(), fileSkipped: (p) => skipped.push(p) } }));
    expectSameAsHub(second.dir);
    const downloads = hub.requests.filter((r) => !r.url.startsWith('/api/'));
    expect(downloads.map((r) => decodeURIComponent(r.url).split('/').pop())).toEqual(['tokenizer_config.json']);
    expect(skipped.sort()).toEqual(NEEDED.filter((n) => n !== 'tokenizer_config.json'));
    expect(second.files.find((f) => f.path === 'tokenizer_config.json')?.status).toBe('fetched');
    expect(second.files.find((f) => f.path === 'model.safetensors')?.status).toBe('present');
  });

  it('explains an unknown revision without retrying', async () => {
    const error = await downloadCheckpoint(options({ revision: 'v9.9' })).catch((e: unknown) => e);
    expect(isVistyleError(error, 'CONFIG_INVALID')).toBe(true);
    expect((error as Error).message).toBe(`revision v9.9 of ${MODEL_ID} not found on Hugging Face (${hub.url}): Invalid rev id: v9.9`);
    expect(hub.requests.length).toBe(1);
  });

  it('takes the index and every shard of a sharded checkpoint, and drops stale single weights', async () => {
    const first = await downloadCheckpoint(options());
    expect(existsSync(join(first.dir, 'model.safetensors'))).toBe(true);
    // the hub moves to sharded weights
    const shard1 = randomBytes(5000);
    const shard2 = randomBytes(3000);
    const index = Buffer.from(JSON.stringify({ metadata: { total_size: 8000 }, weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }));
    hub.files = [
      ...hub.files.filter((f) => f.path !== 'model.safetensors'),
      { path: 'model.safetensors.index.json', data: index },
      { path: 'model-00001-of-00002.safetensors', data: shard1, lfs: true },
      { path: 'model-00002-of-00002.safetensors', data: shard2, lfs: true },
    ];
    const second = await downloadCheckpoint(options());
    expect(checkpointFiles(second.dir)).toEqual(
      [...NEEDED.filter((n) => n !== 'model.safetensors'), 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors', 'model.safetensors.index.json'].sort(),
    );
    expect(readFileSync(join(second.dir, 'model-00002-of-00002.safetensors')).equals(shard2)).toBe(true);
  });

  it('stops on an abort signal, keeping the partial file for the next run and releasing the lock', async () => {
    hub.faults.stallOnce.set('model.safetensors', 100_000);
    const controller = new AbortController();
    let current = '';
    let received = 0;
    const error = await downloadCheckpoint(
      options({
        stallTimeoutMs: 30_000,
        signal: controller.signal,
        reporter: {
          ...quietReporter(),
          fileStart: (path) => ((current = path), (received = 0)),
          // abort once the server has sent everything it will send before going silent
          bytes: (count) => {
            received += count;
            if (current === 'model.safetensors' && received === 100_000) setTimeout(() => controller.abort(), 20);
          },
        },
      }),
    ).catch((e: unknown) => e);
    expect(isVistyleError(error, 'CANCELLED')).toBe(true);
    expect((error as Error).message).toBe('download cancelled; run the same command again to resume');
    const dir = join(work, 'checkpoint');
    expect(existsSync(join(dir, '.vistyle-pull.lock'))).toBe(false);
    expect(readFileSync(join(dir, 'model.safetensors.incomplete')).length).toBe(100_000);
    // and the next run picks it up
    const result = await downloadCheckpoint(options());
    expectSameAsHub(result.dir);
    expect(hub.downloadsOf('model.safetensors').filter((r) => r.server === 'cdn').at(-1)?.range).toBe('bytes=100000-');
  });

  it('refuses a repository that is not a checkpoint', async () => {
    hub.files = hub.files.filter((f) => f.path !== 'config.json');
    const error = await downloadCheckpoint(options()).catch((e: unknown) => e);
    expect(isVistyleError(error, 'CHECKPOINT_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(/has no config\.json/);
  });
});

describe('downloadCheckpoint from the ModelScope API', () => {
  it('lists with Revision=master and Recursive=true and downloads through repo?FilePath=', async () => {
    const result = await downloadCheckpoint(options({ source: 'modelscope' }));
    expect(result.revision).toBe('master');
    expect(checkpointFiles(result.dir)).toEqual(NEEDED);
    expectSameAsHub(result.dir);
    expect(result.files.every((f) => f.verifiedBy === 'sha256')).toBe(true);
    expect(hub.requests[0]?.url).toBe(`/api/v1/models/${MODEL_ID}/repo/files?Revision=master&Recursive=true`);
    const model = hub.downloadsOf('model.safetensors');
    expect(model.length).toBe(1);
    expect(model[0]!.url).toBe(`/api/v1/models/${MODEL_ID}/repo?Revision=master&FilePath=model.safetensors`);
  });

  it('resumes on ModelScope too', async () => {
    hub.faults.interruptOnce.set('model.safetensors', 123_456);
    const result = await downloadCheckpoint(options({ source: 'modelscope' }));
    expectSameAsHub(result.dir);
    expect(hub.downloadsOf('model.safetensors')[1]?.range).toMatch(/^bytes=\d+-$/);
  });

  it('reports an unknown revision with the hub message', async () => {
    const error = await downloadCheckpoint(options({ source: 'modelscope', revision: 'v2' })).catch((e: unknown) => e);
    expect(isVistyleError(error, 'CONFIG_INVALID')).toBe(true);
    expect((error as Error).message).toContain('revision v2 not found');
  });
});

describe('downloadCheckpoint without a network', () => {
  it('fails with one line naming the endpoint and the mirror variable', async () => {
    const closed = await closedPortUrl();
    const error = await downloadCheckpoint(options({ env: { HF_ENDPOINT: closed }, retry: { retries: 1, baseDelayMs: 1, maxDelayMs: 1 } })).catch((e: unknown) => e);
    expect(isVistyleError(error, 'NETWORK')).toBe(true);
    expect((error as Error).message).toBe(
      `cannot reach ${closed} (connect ECONNREFUSED): check your connection or set HF_ENDPOINT to a mirror`,
    );
  });

  it('names MODELSCOPE_ENDPOINT for ModelScope', async () => {
    const closed = await closedPortUrl();
    const error = await downloadCheckpoint(
      options({ source: 'modelscope', env: { MODELSCOPE_ENDPOINT: closed }, retry: { retries: 0 } }),
    ).catch((e: unknown) => e);
    expect((error as Error).message).toBe(`cannot reach ${closed} (connect ECONNREFUSED): check your connection or set MODELSCOPE_ENDPOINT to a mirror`);
  });
});

function quietReporter() {
  const nothing = (): void => undefined;
  return { plan: nothing, fileStart: nothing, bytes: nothing, discard: nothing, fileDone: nothing, fileSkipped: nothing, retry: nothing, note: nothing, close: nothing };
}
