// `vistyle serve`: the OpenAI-compatible API (/v1/chat/completions, /v1/models), the web page at /,
// /healthz, /readyz and /metrics on one HTTP server, with no chat platform. It is `vistyle start`
// without the adapters: the same engine, scheduler, limits and styles (src/http/app.ts says where it
// listens and who may call it).
import type { Command } from 'commander';
import { startupExitStatus, VistyleError, withExitStatus } from '../../errors.js';
import { runStart, type StartOptions } from './start.js';

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('serve the OpenAI-compatible API and the web page (VISTYLE_HTTP_HOST:VISTYLE_HTTP_PORT, default 127.0.0.1:8484)')
    .option('-m, --model <dir>', 'built model folder (default: VISTYLE_MODEL_DIR, then the pulled model)')
    .option('--host <address>', 'address to listen on (default: VISTYLE_HTTP_HOST, else 127.0.0.1)')
    .option('--port <number>', 'port to listen on (default: VISTYLE_HTTP_PORT, else 8484; 0 picks a free one)')
    .action(async (options: { model?: string; host?: string; port?: string }) => {
      try {
        await runServe(options);
      } catch (error) {
        // the same documented exit statuses as `vistyle start` (docs/deploy.md)
        throw withExitStatus(error, startupExitStatus(error));
      }
      setTimeout(() => process.exit(typeof process.exitCode === 'number' ? process.exitCode : 0), 3_000).unref();
    });
}

/** Runs `vistyle serve` until a signal (or `extra.signal`) stops it. */
export async function runServe(options: { model?: string; host?: string; port?: string | number }, extra: Omit<StartOptions, 'serve' | 'http' | 'model'> = {}): Promise<void> {
  let port: number | undefined;
  if (options.port !== undefined) {
    port = Number(options.port);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new VistyleError('CONFIG_INVALID', `--port: expected a port number 0-65535 (got "${options.port}")`);
  }
  await runStart({
    ...extra,
    serve: true,
    ...(options.model ? { model: options.model } : {}),
    http: { ...(options.host ? { host: options.host } : {}), ...(port === undefined ? {} : { port }) },
  });
}
