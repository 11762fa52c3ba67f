// `vistyle doctor` on a good setup and on each broken one: the line that says what is wrong (and
// that its fix is given), and the exit status. Real services: the fake Telegram and Discord servers,
// a tiny generated model, a real SQLite store, real styles files and PEFT adapter folders.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePeftAdapter } from '../../models/lora/writer.js';
import { runDoctor, formatResult, type DoctorReport } from '../../src/doctor/run.js';
import { checkDisk } from '../../src/doctor/checks/model.js';
import { checkNode } from '../../src/doctor/checks/environment.js';
import { closestName } from '../../src/doctor/closest.js';
import type { CheckResult } from '../../src/doctor/types.js';
import { FakeDiscord } from '../support/fake-discord/index.js';
import { FakeTelegram } from '../support/fake-telegram/index.js';
import { runVistyle } from '../support/run-cli.js';
import { tinyModel } from '../support/tiny-model.js';
import { attentionTargets, randomLoraWeights } from '../lora/helpers.js';

let dir: string;
let home: string;
let modelDir: string;
let noLoraModelDir: string;
let telegram: FakeTelegram;
let discord: FakeDiscord;
let stylesFile: string;
const savedHome = process.env.VISTYLE_HOME;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vistyle-doctor-'));
  home = join(dir, 'home');
  // the demo model and the default adapters folder follow VISTYLE_HOME of this process
  process.env.VISTYLE_HOME = home;
  [modelDir, noLoraModelDir] = [(await tinyModel()).modelDir, (await tinyModel({ build: { noLora: true } })).modelDir];
  telegram = await FakeTelegram.start();
  discord = await FakeDiscord.start();
  const adapter = join(dir, 'pirate-adapter');
  writePeftAdapter(adapter, { modules: randomLoraWeights(attentionTargets(), 2), rank: 2, alpha: 4 });
  stylesFile = join(dir, 'styles.yaml');
  writeFileSync(
    stylesFile,
    `styles:\n  pirate:\n    names: { en: Pirate, zh: 海盗 }\n    description: Arr.\n    systemPrompt: You are a pirate.\n    adapter: ./pirate-adapter\n`,
  );
});
afterAll(async () => {
  if (savedHome === undefined) delete process.env.VISTYLE_HOME;
  else process.env.VISTYLE_HOME = savedHome;
  await telegram.close();
  await discord.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A working setup: both platforms, the tiny model, a styles file with an adapter. */
function goodEnv(): NodeJS.ProcessEnv {
  return {
    VISTYLE_HOME: home,
    VISTYLE_MODEL_DIR: modelDir,
    VISTYLE_THREADS: '1',
    VISTYLE_STYLES_FILE: stylesFile,
    TELEGRAM_BOT_TOKEN: telegram.token,
    TELEGRAM_API_ROOT: telegram.apiRoot,
    DISCORD_TOKEN: discord.token,
    DISCORD_APPLICATION_ID: discord.applicationId,
    DISCORD_API_ROOT: discord.apiRoot,
  };
}

function lines(report: DoctorReport, check: string): CheckResult[] {
  return report.results.filter((r) => r.check === check);
}

function only(report: DoctorReport, check: string, status: CheckResult['status']): CheckResult {
  const found = lines(report, check).filter((r) => r.status === status);
  expect(found, report.results.map(formatResult).join('\n')).toHaveLength(1);
  return found[0]!;
}

const doctor = (env: NodeJS.ProcessEnv, smoke = false) => runDoctor({ env, envFile: null, smoke, networkTimeoutMs: 3000 });

describe('vistyle doctor on a good setup', () => {
  it('every check passes, the one-token run included', async () => {
    const report = await doctor(goodEnv(), true);
    const text = report.results.map(formatResult).join('\n');
    expect(report.failed, text).toBe(0);
    expect(report.todo, text).toBe(0);
    expect(only(report, 'model', 'ok').text).toContain('fp32 for any provider');
    expect(only(report, 'smoke', 'ok').text).toMatch(/^one token from the model on cpu/);
    expect(only(report, 'telegram', 'ok').text).toBe('the token works: @vistyle_test_bot');
    expect(only(report, 'discord', 'ok').text).toMatch(/^the token works: application/);
    expect(only(report, 'store', 'ok').text).toContain('will be created');
    expect(only(report, 'styles', 'ok').text).toContain('pirate');
    expect(only(report, 'adapters', 'ok').text).toContain('style "pirate"');
    expect(only(report, 'adapters', 'ok').text).toContain('fits the model');
    // every line that is not ok says how to fix it
    for (const r of report.results) if (r.status === 'fail' || r.status === 'todo' || r.status === 'warn') expect(r.fix).toBeTruthy();
  });

  it('the CLI prints one line per check and exits 0', async () => {
    const run = await runVistyle(['doctor', '--no-smoke'], { ...goodEnv(), VISTYLE_ENV_FILE: join(dir, 'none.env') });
    expect(run.code, run.stdout).toBe(0);
    expect(run.stdout).toMatch(/^ok\s+telegram\s+the token works/m);
    expect(run.stdout).not.toContain(telegram.token);
    expect(run.stdout.trimEnd().split('\n').at(-1)).toMatch(/^ready: `vistyle start` should work/);
  });
});

describe('vistyle doctor on broken setups', () => {
  it('a token Telegram rejects: FAIL, with where the token came from; exit 1', async () => {
    const env = { ...goodEnv(), TELEGRAM_BOT_TOKEN: '999:not-the-fakes-token' };
    const line = only(await doctor(env), 'telegram', 'fail');
    expect(line.text).toBe('Telegram rejected the bot token (check TELEGRAM_BOT_TOKEN) (TELEGRAM_BOT_TOKEN was set in the environment)');
    expect(line.fix).toContain('@BotFather');
    const run = await runVistyle(['doctor', '--no-smoke'], { ...env, VISTYLE_ENV_FILE: join(dir, 'none.env') });
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^FAIL\s+telegram\s+Telegram rejected the bot token/m);
    expect(run.stdout).not.toContain('not-the-fakes-token');
  });

  it('a Discord token and an application id of different applications: FAIL', async () => {
    const line = only(await doctor({ ...goodEnv(), DISCORD_APPLICATION_ID: '123456789012345678' }), 'discord', 'fail');
    expect(line.text).toContain(`DISCORD_TOKEN belongs to application ${discord.applicationId}, not to DISCORD_APPLICATION_ID 123456789012345678`);
    const rejected = only(await doctor({ ...goodEnv(), DISCORD_TOKEN: 'wrong-token' }), 'discord', 'fail');
    expect(rejected.text).toMatch(/^Discord rejected DISCORD_TOKEN/);
  });

  it('a platform that cannot be reached is a warning, not a failure (the token may be fine)', async () => {
    const report = await doctor({ ...goodEnv(), TELEGRAM_API_ROOT: 'http://127.0.0.1:9' });
    expect(only(report, 'telegram', 'warn').text).toMatch(/^cannot reach the Telegram Bot API at 127\.0\.0\.1:9 .*the token was not checked/);
    expect(report.failed).toBe(0);
  });

  it('VISTYLE_MODEL_DIR naming no model, and a model folder missing a graph: FAIL, and no smoke run', async () => {
    const missing = await doctor({ ...goodEnv(), VISTYLE_MODEL_DIR: join(dir, 'nothing-here') }, true);
    expect(only(missing, 'model', 'fail').text).toContain(`no built model at ${join(dir, 'nothing-here')}`);
    expect(only(missing, 'model', 'fail').text).toContain('VISTYLE_MODEL_DIR=');
    expect(only(missing, 'smoke', 'skip').text).toContain('model folder is broken');

    const broken = join(dir, 'broken-model');
    mkdirSync(broken);
    const { cpSync } = await import('node:fs');
    cpSync(modelDir, broken, { recursive: true });
    rmSync(join(broken, 'decoder.onnx'));
    expect(only(await doctor({ ...goodEnv(), VISTYLE_MODEL_DIR: broken }), 'model', 'fail').text).toMatch(/is incomplete: missing decoder\.onnx/);
  });

  it('a misspelt variable is flagged with the closest known name', async () => {
    const report = await doctor({ ...goodEnv(), VISTYLE_PROVDER: 'cuda' });
    const line = only(report, 'config', 'warn');
    expect(line.text).toBe('VISTYLE_PROVDER (set in the environment) is not a vistyle setting and is ignored; did you mean VISTYLE_PROVIDER?');
    expect(line.fix).toBe('rename it to VISTYLE_PROVIDER');
    expect(report.failed).toBe(0);
    expect(closestName('VISTYLE_STYLE_FILE', ['VISTYLE_STYLES_FILE', 'VISTYLE_HOME'])).toBe('VISTYLE_STYLES_FILE');
    expect(closestName('VISTYLE_SOMETHING_ELSE', ['VISTYLE_HOME'])).toBeUndefined();
  });

  it('an invalid value: FAIL naming it, and the checks that need the configuration are skipped', async () => {
    const report = await doctor({ ...goodEnv(), VISTYLE_USER_PER_MINUTE: 'lots' });
    expect(only(report, 'config', 'fail').text).toMatch(/^invalid configuration: VISTYLE_USER_PER_MINUTE: expected a number \(got "lots"\) \(VISTYLE_USER_PER_MINUTE=lots was set in the environment\)/);
    expect(lines(report, 'telegram')).toEqual([]);
    expect(only(report, 'doctor', 'skip').text).toContain('need a valid configuration');
  });

  it('a configured provider this machine lacks: FAIL on its line, no smoke run', async () => {
    const report = await doctor({ ...goodEnv(), VISTYLE_PROVIDER: 'cuda' }, true);
    const line = only(report, 'provider', 'fail');
    expect(line.text).toMatch(/^cuda: .*CUDA provider library libonnxruntime_providers_cuda\.so is not installed/);
    expect(line.text).toContain('VISTYLE_PROVIDER=cuda was set in the environment; without it vistyle runs on the CPU');
    expect(only(report, 'smoke', 'skip').text).toContain('provider cannot run');
  });

  it('a damaged database: FAIL on the store line', async () => {
    const db = join(dir, 'damaged.db');
    writeFileSync(db, Buffer.alloc(8192, 0x5a));
    const line = only(await doctor({ ...goodEnv(), VISTYLE_DB_PATH: db }), 'store', 'fail');
    expect(line.text).toContain(db);
    expect(line.text).toContain('VISTYLE_DB_PATH=');
  });

  it('a database path under a file: FAIL, it cannot be created', async () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    const line = only(await doctor({ ...goodEnv(), VISTYLE_DB_PATH: join(file, 'vistyle.db') }), 'store', 'fail');
    expect(line.text).toMatch(/cannot be created: .* is a file, not a folder/);
  });

  it('a broken styles file: FAIL naming the file and the field', async () => {
    const bad = join(dir, 'bad-styles.yaml');
    writeFileSync(bad, 'styles:\n  pirate:\n    names: Pirate\n    description: Arr.\n    systemPrompt: You are a pirate.\n    temprature: 2\n');
    const line = only(await doctor({ ...goodEnv(), VISTYLE_STYLES_FILE: bad }), 'styles', 'fail');
    expect(line.text).toContain(`styles file ${bad}`);
    expect(line.text).toContain('unknown field "temprature"');
  });

  it('an adapter on a model built without LoRA inputs, and a half-written adapter folder', async () => {
    const noLora = only(await doctor({ ...goodEnv(), VISTYLE_MODEL_DIR: noLoraModelDir }), 'adapters', 'fail');
    expect(noLora.text).toMatch(/^style "pirate": .*built without LoRA inputs/);

    const half = join(home, 'adapters', 'grumpy');
    mkdirSync(half, { recursive: true });
    writeFileSync(join(half, 'adapter_config.json'), '{}');
    try {
      const report = await doctor(goodEnv());
      expect(only(report, 'adapters', 'warn').text).toBe(`${half} is not a complete adapter (needs adapter_config.json and adapter_model.safetensors): style "grumpy" runs without it`);
    } finally {
      rmSync(half, { recursive: true, force: true });
    }
  });

  it('no room for the model pull: FAIL on the disk line; an old Node: FAIL on the node line', async () => {
    const ctx = { env: {}, envFile: null, config: null, configError: null, networkTimeoutMs: 1000 };
    expect(checkDisk(ctx, false, () => 1e9).status).toBe('fail');
    expect(checkDisk(ctx, false, () => 3 * 2 ** 30).status).toBe('warn');
    expect(checkDisk(ctx, false, () => 50 * 2 ** 30).status).toBe('ok');
    expect(checkDisk(ctx, true, () => 1e9).status).toBe('ok');
    expect(checkNode('18.19.0')).toMatchObject({ status: 'fail' });
    expect(checkNode('20.9.0')).toMatchObject({ status: 'ok' });
  });

  it('a port vistyle start would listen on: free, taken by another program, taken by a running vistyle, not an address here', async () => {
    /** A port that was free a moment ago (listened on and closed again). */
    const freePort = async (): Promise<number> => {
      const probe = createTcpServer();
      await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
      const { port } = probe.address() as AddressInfo;
      await new Promise((resolve) => probe.close(resolve));
      return port;
    };
    const listen = async (server: Server): Promise<number> => {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return (server.address() as AddressInfo).port;
    };
    const close = (server: Server): Promise<unknown> => new Promise((resolve) => server.close(resolve));

    const free = await freePort();
    const ok = only(await doctor({ ...goodEnv(), VISTYLE_HTTP_PORT: String(free) }), 'ports', 'ok');
    expect(ok.text).toBe(`the HTTP server (API, web page, /healthz, /metrics) can listen on 127.0.0.1:${free}`);

    // a plain TCP server holds the port: start would fail, and the fix says how to find it
    const other = createTcpServer((socket) => socket.destroy());
    const taken = await listen(other);
    try {
      const report = await doctor({ ...goodEnv(), VISTYLE_HTTP_PORT: String(taken) });
      const line = only(report, 'ports', 'fail');
      expect(line.text).toBe(`127.0.0.1:${taken} for the HTTP server (API, web page, /healthz, /metrics) is in use by another program: \`vistyle start\` would fail (VISTYLE_HTTP_PORT=${taken} was set in the environment)`);
      expect(line.fix).toContain(`sport = :${taken}`);
      expect(report.failed).toBe(1);
      // chosen through the older VISTYLE_METRICS_PORT: chosen all the same, so start would fail too
      const metricsOnly = await doctor({ ...goodEnv(), VISTYLE_METRICS_PORT: String(taken) });
      expect(only(metricsOnly, 'ports', 'fail').text).toContain('is in use by another program');
    } finally {
      await close(other);
    }

    // a server answering /healthz holds it: most likely vistyle itself, a warning, not a failure
    const running = createHttpServer((req, res) => res.writeHead(req.url === '/healthz' ? 200 : 404).end('ok'));
    const runningPort = await listen(running);
    try {
      const report = await doctor({ ...goodEnv(), VISTYLE_HTTP_PORT: String(runningPort) });
      expect(only(report, 'ports', 'warn').text).toMatch(/^127\.0\.0\.1:\d+ is in use by a server that answers \/healthz: most likely vistyle, already running/);
      expect(report.failed).toBe(0);
    } finally {
      await close(running);
    }

    // an address this machine does not have (TEST-NET-1, RFC 5737)
    const foreign = only(await doctor({ ...goodEnv(), VISTYLE_HTTP_PORT: String(free), VISTYLE_HTTP_HOST: '192.0.2.1' }), 'ports', 'fail');
    expect(foreign.text).toMatch(/^192\.0\.2\.1 is not an address of this machine/);
    expect(foreign.fix).toContain('set VISTYLE_HTTP_HOST to 127.0.0.1');
  });
});
