// Cross-origin access to the API for browser clients on other pages (a chat UI served from its own
// origin that calls /v1 from the browser). Off unless VISTYLE_HTTP_CORS_ORIGINS names origins:
// the web page vistyle serves itself is same-origin and needs none of this. The API authenticates
// with a bearer key, never cookies, so no credentials are allowed.
import type { IncomingMessage, ServerResponse } from 'node:http';

const ALLOWED_METHODS = 'GET, POST, OPTIONS';
/** Allowed when a preflight names none: the key and the JSON body. */
const DEFAULT_ALLOWED_HEADERS = 'authorization, content-type';
const PREFLIGHT_MAX_AGE_S = 600;
/** Response headers a page may read (the rate limiter's wait). */
const EXPOSED_HEADERS = 'retry-after';

export class CorsPolicy {
  private readonly any: boolean;
  private readonly origins: ReadonlySet<string>;

  constructor(origins: readonly string[]) {
    this.any = origins.includes('*');
    this.origins = new Set(origins.filter((o) => o !== '*'));
  }

  get enabled(): boolean {
    return this.any || this.origins.size > 0;
  }

  allows(origin: string): boolean {
    return this.any || this.origins.has(origin);
  }

  /**
   * For a /v1 request: answers a preflight (OPTIONS with Access-Control-Request-Method) and
   * returns true, or sets the headers an allowed origin's actual request needs and returns false.
   */
  handle(request: IncomingMessage, response: ServerResponse): boolean {
    const origin = request.headers.origin;
    const preflight = request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined;
    if (this.enabled) response.setHeader('vary', 'Origin');
    if (origin === undefined) return false;
    const allowed = this.allows(origin);
    if (preflight) {
      if (!allowed) {
        // no CORS headers: the browser refuses the call; the status tells the operator's logs why
        response.writeHead(403, { 'content-type': 'text/plain; charset=utf-8' }).end(
          this.enabled ? `origin ${origin} is not in VISTYLE_HTTP_CORS_ORIGINS\n` : 'cross-origin calls are off: set VISTYLE_HTTP_CORS_ORIGINS\n',
        );
        return true;
      }
      const requested = request.headers['access-control-request-headers'];
      response.writeHead(204, {
        'access-control-allow-origin': this.any ? '*' : origin,
        'access-control-allow-methods': ALLOWED_METHODS,
        // echo what the browser asks for (the SDKs add their own x-stainless-* headers); the key is
        // checked by the API whatever headers come with it
        'access-control-allow-headers': typeof requested === 'string' && requested.trim() ? requested : DEFAULT_ALLOWED_HEADERS,
        'access-control-max-age': String(PREFLIGHT_MAX_AGE_S),
      }).end();
      return true;
    }
    if (allowed) {
      response.setHeader('access-control-allow-origin', this.any ? '*' : origin);
      response.setHeader('access-control-expose-headers', EXPOSED_HEADERS);
    }
    return false;
  }
}
