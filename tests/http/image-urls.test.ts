// Pictures by URL: data: URLs decoded and checked; https: URLs downloaded with the size and time
// limits behind the SSRF guard, which refuses loopback/private/link-local addresses after DNS
// resolution (the server below never sees a refused request) unless the operator allows them.
// The https server runs on 127.0.0.1 with a certificate made by openssl for the test.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockedAddressReason } from '../../src/http/address-guard.js';
import { loadImageUrl } from '../../src/http/remote-image.js';
import { PNG } from './support/fixtures.js';

const OPENSSL = '/usr/bin/openssl';
const haveOpenssl = existsSync(OPENSSL);
if (!haveOpenssl && process.env.CI === 'true') throw new Error('openssl is required under CI (tests/http/image-urls.test.ts)');
if (!haveOpenssl) console.warn('skipping the https image URL tests: /usr/bin/openssl is missing');

describe('the address guard', () => {
  it('refuses loopback, private, link-local and other non-public addresses', () => {
    for (const address of [
      '127.0.0.1',
      '127.8.9.10',
      '10.1.2.3',
      '172.16.0.1',
      '172.31.255.255',
      '192.168.1.1',
      '169.254.169.254', // cloud metadata
      '100.64.0.1',
      '0.0.0.0',
      '224.0.0.1',
      '255.255.255.255',
      '::1',
      '::',
      'fe80::1',
      'fd00::1',
      'fc12:3456::1',
      '::ffff:127.0.0.1',
      '::ffff:10.0.0.1',
      '64:ff9b::a00:1', // NAT64 of 10.0.0.1
      '[::1]',
      'fe80::1%eth0',
      'not-an-ip',
    ]) {
      expect(blockedAddressReason(address), address).toBeDefined();
    }
    expect(blockedAddressReason('169.254.169.254')).toBe('link-local');
    expect(blockedAddressReason('::1')).toBe('loopback');
  });

  it('lets public addresses through', () => {
    for (const address of ['93.184.216.34', '8.8.8.8', '172.32.0.1', '2606:4700::1111', '64:ff9b::808:808', '::ffff:8.8.4.4']) {
      expect(blockedAddressReason(address), address).toBeUndefined();
    }
  });
});

describe('data: URLs', () => {
  const signal = new AbortController().signal;
  const options = { maxBytes: 100_000, allowPrivate: false, signal };

  it('decodes base64 and checks the picture', async () => {
    const image = await loadImageUrl(`data:image/png;base64,${Buffer.from(PNG).toString('base64')}`, options);
    expect(image.mime).toBe('image/png');
    expect(Buffer.from(image.bytes).equals(Buffer.from(PNG))).toBe(true);
  });

  it('refuses what is not a picture, or too large, or not data:/https:', async () => {
    await expect(loadImageUrl(`data:image/png;base64,${Buffer.from('hello, not a picture').toString('base64')}`, options)).rejects.toMatchObject({ code: 'IMAGE_UNSUPPORTED' });
    await expect(loadImageUrl('data:text/plain,hello', options)).rejects.toMatchObject({ code: 'IMAGE_UNSUPPORTED' });
    await expect(loadImageUrl(`data:image/png;base64,${Buffer.from(PNG).toString('base64')}`, { ...options, maxBytes: 100 })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    await expect(loadImageUrl('http://example.com/cat.png', options)).rejects.toMatchObject({ code: 'IMAGE_UNSUPPORTED', message: expect.stringContaining('https: or data:') });
    await expect(loadImageUrl('file:///etc/passwd', options)).rejects.toMatchObject({ code: 'IMAGE_UNSUPPORTED' });
  });
});

describe.skipIf(!haveOpenssl)('https: URLs', () => {
  let dir: string;
  let server: Server;
  let port: number;
  let ca: Buffer;
  const hits: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vistyle-tls-'));
    execFileSync(OPENSSL, [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    ca = readFileSync(join(dir, 'cert.pem'));
    server = createServer({ key: readFileSync(join(dir, 'key.pem')), cert: ca }, (request, response) => {
      hits.push(request.url ?? '');
      const url = request.url ?? '/';
      if (url === '/cat.png') return void response.writeHead(200, { 'content-type': 'image/png' }).end(PNG);
      if (url === '/big.png') return void response.writeHead(200, { 'content-type': 'image/png', 'content-length': 5_000_000 }).end();
      if (url === '/chunked.png') {
        response.writeHead(200, { 'content-type': 'image/png' });
        const chunk = Buffer.alloc(64 * 1024);
        let sent = 0;
        const timer = setInterval(() => {
          if (response.destroyed || sent > 40) return clearInterval(timer);
          sent++;
          response.write(chunk);
        }, 1);
        return;
      }
      if (url === '/slow.png') return void response.writeHead(200, { 'content-type': 'image/png' }); // never ends
      if (url === '/text') return void response.writeHead(200, { 'content-type': 'text/html' }).end('<html>not a picture</html>');
      if (url === '/missing.png') return void response.writeHead(404).end();
      if (url === '/to-cat') return void response.writeHead(302, { location: '/cat.png' }).end();
      if (url === '/to-http') return void response.writeHead(302, { location: `http://127.0.0.1:${port}/cat.png` }).end();
      if (url === '/loop') return void response.writeHead(302, { location: '/loop' }).end();
      response.writeHead(500).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  afterAll(async () => {
    server?.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const allowed = () => ({ maxBytes: 1_000_000, allowPrivate: true, signal: new AbortController().signal, ca });

  it('refuses a loopback address, literal or resolved, before connecting', async () => {
    hits.length = 0;
    const denied = { maxBytes: 1_000_000, allowPrivate: false, signal: new AbortController().signal, ca };
    await expect(loadImageUrl(`https://127.0.0.1:${port}/cat.png`, denied)).rejects.toMatchObject({
      code: 'NETWORK',
      message: expect.stringContaining('127.0.0.1 is a loopback address'),
    });
    // `localhost` is checked on what it resolves to
    await expect(loadImageUrl(`https://localhost:${port}/cat.png`, denied)).rejects.toMatchObject({
      code: 'NETWORK',
      message: expect.stringMatching(/localhost is a loopback address.*VISTYLE_ALLOW_PRIVATE_IMAGE_URLS/),
    });
    await expect(loadImageUrl(`https://[::1]:${port}/cat.png`, denied)).rejects.toMatchObject({ code: 'NETWORK', message: expect.stringContaining('loopback') });
    expect(hits).toEqual([]);
  });

  it('downloads a picture when private addresses are allowed, following a redirect', async () => {
    const image = await loadImageUrl(`https://localhost:${port}/cat.png`, allowed());
    expect(image.mime).toBe('image/png');
    expect(image.bytes.byteLength).toBe(PNG.byteLength);
    expect((await loadImageUrl(`https://127.0.0.1:${port}/to-cat`, allowed())).bytes.byteLength).toBe(PNG.byteLength);
  });

  it('applies the size limit (declared or streamed), the time limit, and refuses non-pictures and bad redirects', async () => {
    await expect(loadImageUrl(`https://127.0.0.1:${port}/big.png`, allowed())).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    await expect(loadImageUrl(`https://127.0.0.1:${port}/chunked.png`, { ...allowed(), maxBytes: 500_000 })).rejects.toMatchObject({ code: 'IMAGE_TOO_LARGE' });
    await expect(loadImageUrl(`https://127.0.0.1:${port}/slow.png`, { ...allowed(), timeoutMs: 300 })).rejects.toMatchObject({
      code: 'NETWORK',
      message: expect.stringContaining('took longer than'),
    });
    await expect(loadImageUrl(`https://127.0.0.1:${port}/text`, allowed())).rejects.toMatchObject({ code: 'IMAGE_UNSUPPORTED' });
    await expect(loadImageUrl(`https://127.0.0.1:${port}/missing.png`, allowed())).rejects.toMatchObject({ code: 'NETWORK', message: expect.stringContaining('HTTP 404') });
    await expect(loadImageUrl(`https://127.0.0.1:${port}/to-http`, allowed())).rejects.toMatchObject({ code: 'NETWORK', message: expect.stringContaining('away from https') });
    await expect(loadImageUrl(`https://127.0.0.1:${port}/loop`, allowed())).rejects.toMatchObject({ code: 'NETWORK', message: expect.stringContaining('redirected more than 3') });
  });

  it('stops downloading when the request is cancelled', async () => {
    const controller = new AbortController();
    const pending = loadImageUrl(`https://127.0.0.1:${port}/slow.png`, { ...allowed(), signal: controller.signal });
    setTimeout(() => controller.abort(), 50);
    await expect(pending).rejects.toMatchObject({ code: 'CANCELLED' });
  });
});
