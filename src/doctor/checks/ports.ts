// `vistyle doctor`'s ports lines: can `vistyle start` listen where it will? The HTTP server, where
// httpPlan puts it (VISTYLE_HTTP_PORT, the older VISTYLE_METRICS_PORT, or 8484 for health and
// metrics only), and Telegram's webhook server in webhook mode. Each is tried by listening on it
// for a moment, as start will; a port that is taken and answers /healthz is most likely this
// vistyle, already running.
import { createServer } from 'node:net';
import type { AppConfig } from '../../config/config.js';
import { originNote } from '../../config/provenance.js';
import { httpPlan } from '../../http/app.js';
import { checkHealth } from '../../http/healthcheck.js';
import { result, type CheckResult, type DoctorContext } from '../types.js';

interface Listener {
  /** What is served there, for the line. */
  what: string;
  host: string;
  port: number;
  /** The variables that chose the address (for the fix and the origin note). */
  settings: string[];
  /** start fails when it cannot listen (the operator chose it); else it runs on without it. */
  required: boolean;
}

function listeners(config: AppConfig): Listener[] {
  const plan = httpPlan(config, false);
  const settings = config.http.port !== undefined ? ['VISTYLE_HTTP_PORT', 'VISTYLE_HTTP_HOST']
    : config.metrics ? ['VISTYLE_METRICS_PORT', 'VISTYLE_METRICS_HOST'] : ['VISTYLE_HTTP_PORT'];
  const out: Listener[] = [{
    what: plan.api ? 'the HTTP server (API, web page, /healthz, /metrics)' : 'the health and metrics server (/healthz, /readyz, /metrics)',
    host: plan.host,
    port: plan.port,
    settings,
    required: plan.explicit,
  }];
  const webhook = config.telegram?.webhook;
  if (webhook) {
    out.push({ what: "Telegram's webhook server", host: webhook.host, port: webhook.port, settings: ['TELEGRAM_WEBHOOK_PORT', 'TELEGRAM_WEBHOOK_HOST'], required: true });
  }
  return out;
}

/** Listens on host:port and closes again: null when that worked, else the error. */
function tryListen(host: string, port: number): Promise<NodeJS.ErrnoException | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', (error: NodeJS.ErrnoException) => resolve(error));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(null)));
  });
}

/** The address a client on this machine reaches a wildcard listener at. */
function localAddress(host: string): string {
  const bare = host.replace(/^\[|\]$/g, '');
  return bare === '0.0.0.0' ? '127.0.0.1' : bare === '::' ? '::1' : bare;
}

async function checkListener(l: Listener, env: NodeJS.ProcessEnv): Promise<CheckResult> {
  const address = `${l.host.includes(':') ? `[${l.host}]` : l.host}:${l.port}`;
  const note = originNote(l.settings, env);
  const origin = note ? ` (${note})` : '';
  if (l.port === 0) return result('ports', 'ok', `${l.what}: port 0, the system picks a free one at start`);
  const error = await tryListen(l.host, l.port);
  if (error === null) return result('ports', 'ok', `${l.what} can listen on ${address}`);
  const portSetting = l.settings[0]!;
  const hostSetting = l.settings[1] ?? portSetting;
  switch (error.code) {
    case 'EADDRINUSE': {
      const health = await checkHealth({ host: localAddress(l.host), port: l.port, path: '/healthz' }, 2_000);
      if (health.ok) {
        return result('ports', 'warn', `${address} is in use by a server that answers /healthz: most likely vistyle, already running${origin}`,
          `if that is not this vistyle, stop the other one or choose another ${portSetting}`);
      }
      const consequence = l.required ? '`vistyle start` would fail' : '`vistyle start` runs on without health and metrics';
      return result('ports', l.required ? 'fail' : 'warn', `${address} for ${l.what} is in use by another program: ${consequence}${origin}`,
        `stop that program (\`ss -ltnp 'sport = :${l.port}'\` shows which) or set ${portSetting} to a free port`);
    }
    case 'EACCES':
      return result('ports', 'fail', `${l.what} may not listen on ${address}: ports below 1024 need privileges${origin}`,
        `set ${portSetting} to 1024 or above (and put a reverse proxy in front), or give node CAP_NET_BIND_SERVICE`);
    case 'EADDRNOTAVAIL':
      return result('ports', 'fail', `${l.host} is not an address of this machine: ${l.what} cannot listen on it${origin}`,
        `set ${hostSetting} to 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return result('ports', 'fail', `the host name ${l.host} for ${l.what} does not resolve${origin}`,
        `set ${hostSetting} to an address of this machine, e.g. 127.0.0.1 or 0.0.0.0`);
    default:
      return result('ports', 'fail', `${l.what} cannot listen on ${address}: ${error.code ?? error.message}${origin}`,
        `set ${portSetting} and ${hostSetting} to a free port on an address of this machine`);
  }
}

export async function checkPorts(ctx: DoctorContext): Promise<CheckResult[]> {
  if (!ctx.config) return [];
  const out: CheckResult[] = [];
  for (const l of listeners(ctx.config)) out.push(await checkListener(l, ctx.env));
  return out;
}
