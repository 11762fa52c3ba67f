// A fake model hub on 127.0.0.1 that speaks the parts of the Hugging Face and ModelScope HTTP APIs
// that `vistyle model pull` uses, with a separate "CDN" server (another origin) that LFS downloads
// are redirected to, and switches to break transfers in the ways real networks do.
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeFile {
  path: string;
  data: Buffer;
  /** Stored in LFS on the hub: listed with sha256, downloaded through the CDN redirect. */
  lfs?: boolean;
}

export interface RequestRecord {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  range: string | undefined;
  authorization: string | undefined;
  acceptEncoding: string | undefined;
}

export interface Faults {
  /** First download of the file: send this many bytes of the body, then close the socket. */
  interruptOnce: Map<string, number>;
  /** Next N requests for the file (or 'listing') answer HTTP 500. */
  fail500: Map<string, number>;
  /** Serve the file with one byte flipped: 'once' for the next download only, or 'always'. */
  corrupt: Map<string, 'once' | 'always'>;
  /** First download of the file: send this many bytes, then go silent (connection left open). */
  stallOnce: Map<string, number>;
  /** Answer Range requests for the file with the whole file (HTTP 200). */
  ignoreRange: Set<string>;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function gitBlobSha1(data: Buffer): string {
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
  });
}

export class FakeHub {
  readonly modelId: string;
  readonly commit = randomBytes(20).toString('hex');
  readonly requests: RequestRecord[] = [];
  readonly faults: Faults = {
    interruptOnce: new Map(),
    fail500: new Map(),
    corrupt: new Map(),
    stallOnce: new Map(),
    ignoreRange: new Set(),
  };
  /** Files served; tests may replace it to simulate a new revision. */
  files: FakeFile[];
  url = '';
  cdnUrl = '';
  private readonly hub: Server;
  private readonly cdn: Server;

  constructor(modelId: string, files: FakeFile[]) {
    this.modelId = modelId;
    this.files = files;
    this.hub = createServer((req, res) => this.handle('hub', req, res));
    this.cdn = createServer((req, res) => this.handle('cdn', req, res));
  }

  async start(): Promise<this> {
    this.url = await listen(this.hub);
    this.cdnUrl = await listen(this.cdn);
    return this;
  }

  async stop(): Promise<void> {
    for (const server of [this.hub, this.cdn]) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  /** Download requests (not listings) for a repository path, on either server. */
  downloadsOf(path: string): RequestRecord[] {
    const file = this.file(path);
    const blob = file ? `/cdn/${sha256(file.data)}` : undefined;
    return this.requests.filter((r) => {
      const url = new URL(r.url, 'http://127.0.0.1');
      if (r.server === 'cdn') return url.pathname === blob;
      if (url.pathname.includes('/resolve/')) return decodeURIComponent(url.pathname).endsWith(`/${path}`);
      return url.pathname.endsWith('/repo') && url.searchParams.get('FilePath') === path;
    });
  }

  private file(path: string): FakeFile | undefined {
    return this.files.find((f) => f.path === path);
  }

  private takeCount(map: Map<string, number>, key: string): boolean {
    const left = map.get(key) ?? 0;
    if (left <= 0) return false;
    map.set(key, left - 1);
    return true;
  }

  private handle(server: 'hub' | 'cdn', req: IncomingMessage, res: ServerResponse): void {
    this.requests.push({
      server,
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      range: req.headers.range,
      authorization: req.headers.authorization,
      acceptEncoding: req.headers['accept-encoding'],
    });
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const id = this.modelId;
    if (server === 'cdn') {
      const file = this.files.find((f) => `/cdn/${sha256(f.data)}` === url.pathname);
      if (!file) return this.json(res, 404, { error: 'no such blob' });
      return this.serveFile(file, req, res, {});
    }

    // Hugging Face: listing
    const hfListing = `/api/models/${id}/revision/`;
    if (url.pathname.startsWith(hfListing)) {
      if (this.takeCount(this.faults.fail500, 'listing')) return this.json(res, 500, { error: 'Internal Error' });
      const revision = decodeURIComponent(url.pathname.slice(hfListing.length));
      if (revision !== 'main' && revision !== this.commit) {
        res.setHeader('X-Error-Code', 'RevisionNotFound');
        return this.json(res, 404, { error: `Invalid rev id: ${revision}` });
      }
      const blobs = url.searchParams.get('blobs') === 'true';
      return this.json(res, 200, {
        _id: 'x',
        id,
        sha: this.commit,
        siblings: this.files.map((f) =>
          !blobs
            ? { rfilename: f.path }
            : f.lfs
              ? {
                  rfilename: f.path,
                  size: f.data.length,
                  blobId: gitBlobSha1(Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(f.data)}\n`)),
                  lfs: { sha256: sha256(f.data), size: f.data.length, pointerSize: 134 },
                }
              : { rfilename: f.path, size: f.data.length, blobId: gitBlobSha1(f.data) },
        ),
      });
    }
    // Hugging Face: resolve
    const hfResolve = `/${id}/resolve/`;
    if (url.pathname.startsWith(hfResolve)) {
      const rest = url.pathname.slice(hfResolve.length);
      const slash = rest.indexOf('/');
      const revision = decodeURIComponent(rest.slice(0, slash));
      const path = decodeURIComponent(rest.slice(slash + 1));
      if (revision !== 'main' && revision !== this.commit) {
        res.setHeader('X-Error-Code', 'RevisionNotFound');
        return this.json(res, 404, { error: 'Revision Not Found' });
      }
      const file = this.file(path);
      if (!file) {
        res.setHeader('X-Error-Code', 'EntryNotFound');
        return this.json(res, 404, { error: 'Entry not found' });
      }
      if (this.takeCount(this.faults.fail500, path)) return this.json(res, 500, { error: 'Internal Error' });
      res.setHeader('X-Repo-Commit', this.commit);
      if (file.lfs) {
        res.setHeader('X-Linked-Etag', `"${sha256(file.data)}"`);
        res.setHeader('X-Linked-Size', String(file.data.length));
        res.writeHead(302, { Location: `${this.cdnUrl}/cdn/${sha256(file.data)}?Expires=1&Signature=secret-signature` });
        return void res.end();
      }
      return this.serveFile(file, req, res, { ETag: `"${gitBlobSha1(file.data)}"` });
    }

    // ModelScope: listing
    if (url.pathname === `/api/v1/models/${id}/repo/files`) {
      if (this.takeCount(this.faults.fail500, 'listing')) return this.json(res, 500, { Code: 500, Message: 'internal error' });
      const revision = url.searchParams.get('Revision');
      if (revision !== 'master' && revision !== this.commit) {
        return this.json(res, 404, { Code: 10010205001, Message: `revision ${revision} not found`, Success: false });
      }
      return this.json(res, 200, {
        Code: 200,
        Data: {
          Files: [
            { Name: 'docs', Path: 'docs', Type: 'tree', Size: 0, Sha256: '' },
            ...this.files.map((f) => ({
              Name: f.path.split('/').pop(),
              Path: f.path,
              Type: 'blob',
              Size: f.data.length,
              Sha256: sha256(f.data),
              IsLFS: Boolean(f.lfs),
              Revision: this.commit,
            })),
          ],
        },
        Message: 'success',
        Success: true,
      });
    }
    // ModelScope: file
    if (url.pathname === `/api/v1/models/${id}/repo`) {
      const path = url.searchParams.get('FilePath') ?? '';
      const revision = url.searchParams.get('Revision');
      const file = this.file(path);
      if (!file || (revision !== 'master' && revision !== this.commit)) return this.json(res, 404, { Code: 404, Message: 'file not found' });
      if (this.takeCount(this.faults.fail500, path)) return this.json(res, 500, { Code: 500, Message: 'internal error' });
      return this.serveFile(file, req, res, {});
    }
    this.json(res, 404, { error: 'not found' });
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  }

  private serveFile(file: FakeFile, req: IncomingMessage, res: ServerResponse, headers: Record<string, string>): void {
    let data = file.data;
    const corrupt = this.faults.corrupt.get(file.path);
    if (corrupt) {
      data = Buffer.from(data);
      const middle = Math.floor(data.length / 2);
      data[middle] = (data[middle] ?? 0) ^ 0xff;
      if (corrupt === 'once') this.faults.corrupt.delete(file.path);
    }
    const size = data.length;
    let start = 0;
    let status = 200;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range && !this.faults.ignoreRange.has(file.path)) {
      start = Number(range[1]);
      if (start >= size) {
        res.writeHead(416, { 'Content-Range': `bytes */${size}` });
        return void res.end();
      }
      status = 206;
      headers['Content-Range'] = `bytes ${start}-${size - 1}/${size}`;
    }
    const body = data.subarray(start);
    res.writeHead(status, { ...headers, 'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes', 'Content-Length': body.length });

    const interruptAt = this.faults.interruptOnce.get(file.path);
    if (interruptAt !== undefined) {
      this.faults.interruptOnce.delete(file.path);
      res.write(body.subarray(0, interruptAt), () => {
        setTimeout(() => res.socket?.destroy(), 20);
      });
      return;
    }
    const stallAt = this.faults.stallOnce.get(file.path);
    if (stallAt !== undefined) {
      this.faults.stallOnce.delete(file.path);
      res.write(body.subarray(0, stallAt)); // and then nothing, until the client gives up
      return;
    }
    res.end(body);
  }
}

/** Digest helpers for assertions. */
export const digests = { sha256, gitBlobSha1 };

/** A local URL where nothing listens: a port that was just bound and released. */
export async function closedPortUrl(): Promise<string> {
  const server = createServer();
  const url = await listen(server);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return url;
}
