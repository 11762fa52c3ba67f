// `vistyle serve` in this process on 127.0.0.1 (a free port) with the tiny model: the real HTTP
// server, bot core, scheduler and engine worker. Logs are kept for assertions.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { runServe } from '../../../src/cli/commands/serve.js';
import type { RunningBot, StartOptions } from '../../../src/cli/commands/start.js';
import { tinyModel } from '../../support/tiny-model.js';

export { PNG, PNG_2, PNG_DATA_URL, dataUrl } from './fixtures.js';

export interface Served {
  url: string;
  /** http://127.0.0.1:PORT/v1 */
  baseURL: string;
  app: RunningBot;
  logs(): string;
  stop(): Promise<void>;
}

export interface Starting {
  /** The HTTP server's URL, once it listens (before the model has loaded). */
  listening: Promise<string>;
  /** Once everything has started. */
  started: Promise<Served>;
}

/** Starts `vistyle serve`; `listening` resolves as soon as the HTTP server is up. */
export function startServe(env: Record<string, string> = {}, extra: Pick<StartOptions, 'engineFactory' | 'imageUrlCa'> = {}): Starting {
  let logs = '';
  let listened!: (url: string) => void;
  const listening = new Promise<string>((resolve) => (listened = resolve));
  const logDestination = new Writable({
    write(chunk, _encoding, done) {
      logs += String(chunk);
      const url = /"url":"(http:[^"]+)"/.exec(String(chunk))?.[1];
      if (url) listened(url);
      done();
    },
  });
  const stop = new AbortController();
  let home = '';
  const started = (async (): Promise<Served> => {
    const { modelDir } = await tinyModel();
    home = mkdtempSync(join(tmpdir(), 'vistyle-serve-'));
    let onStarted!: (app: RunningBot) => void;
    const ready = new Promise<RunningBot>((resolve) => (onStarted = resolve));
    const running = runServe(
      { port: 0, host: '127.0.0.1' },
      {
        env: {
          VISTYLE_MODEL_DIR: modelDir,
          VISTYLE_HOME: home,
          VISTYLE_THREADS: '1',
          VISTYLE_SHUTDOWN_DRAIN_SECONDS: '2',
          VISTYLE_LOG_LEVEL: 'debug',
          ...env,
        },
        signal: stop.signal,
        logDestination,
        onStarted,
        ...extra,
      },
    );
    const app = await Promise.race([ready, running.then(() => Promise.reject(new Error(`serve stopped early:\n${logs}`)))]);
    const url = `http://127.0.0.1:${app.httpPort}`;
    return {
      url,
      baseURL: `${url}/v1`,
      app,
      logs: () => logs,
      async stop() {
        stop.abort();
        await running;
        rmSync(home, { recursive: true, force: true });
      },
    };
  })();
  return { listening, started };
}

/** `vistyle serve` once it has started. */
export function serve(env: Record<string, string> = {}, extra: Pick<StartOptions, 'engineFactory' | 'imageUrlCa'> = {}): Promise<Served> {
  return startServe(env, extra).started;
}
