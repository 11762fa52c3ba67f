// The web page's files (src/http/assets: plain HTML, CSS and JS, copied next to the compiled code
// by `npm run build`), read once and served from memory with a strict Content-Security-Policy: the
// page loads nothing from anywhere else and talks only to this server.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServerResponse } from 'node:http';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
};

export const PAGE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

interface Asset {
  type: string;
  body: Buffer;
}

export class PageAssets {
  private readonly files = new Map<string, Asset>();

  constructor(dir: string = defaultAssetsDir()) {
    if (!existsSync(dir)) return;
    for (const name of readdirSync(dir)) {
      const type = TYPES[extname(name)];
      if (type) this.files.set(`/${name}`, { type, body: readFileSync(join(dir, name)) });
    }
  }

  get available(): boolean {
    return this.files.has('/index.html');
  }

  /** Serves `path` when it is one of the page's files; false otherwise. */
  serve(path: string, response: ServerResponse): boolean {
    const asset = this.files.get(path === '/' ? '/index.html' : path);
    if (!asset) return false;
    response.writeHead(200, {
      'content-type': asset.type,
      'content-length': asset.body.length,
      'cache-control': 'no-cache',
      'content-security-policy': PAGE_CSP,
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
    });
    response.end(asset.body);
    return true;
  }
}

/** assets/ beside this module: src/http/assets from the sources, dist/src/http/assets once built. */
function defaultAssetsDir(): string {
  return fileURLToPath(new URL('./assets/', import.meta.url));
}
