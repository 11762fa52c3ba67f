// The deployment files cannot be run here (no Docker engine, no systemd); these checks keep them in
// step with the code: every variable the bot reads is in .env.example and the example loads; the
// Dockerfile, compose file and systemd unit agree on paths, user, command and GPU.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import dotenv from 'dotenv';
import { describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { loadConfig } from '../../src/config/config.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string): string => readFileSync(join(REPO, path), 'utf8');

/** Variables named in the zod schema of src/config/config.ts. */
function configVariables(): string[] {
  const source = read('src/config/config.ts');
  const start = source.indexOf('const EnvSchema = z.object({');
  const end = source.indexOf('\n});', start);
  expect(start, 'EnvSchema in src/config/config.ts').toBeGreaterThan(0);
  return [...source.slice(start, end).matchAll(/^ {2}([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1]!);
}

/** Variables in .env.example, set or commented out (`#NAME=`). */
function exampleVariables(): string[] {
  return [...read('deploy/.env.example').matchAll(/^#?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]!);
}

describe('deploy/.env.example', () => {
  it('names every variable the configuration reads, and the download variables', () => {
    const listed = new Set(exampleVariables());
    const expected = [
      ...configVariables(),
      'HF_ENDPOINT',
      'VISTYLE_HF_ENDPOINT',
      'HF_TOKEN',
      'MODELSCOPE_ENDPOINT',
      'VISTYLE_MODELSCOPE_ENDPOINT',
      // the data maker's (models/data/maker.ts)
      'VISTYLE_DATA_API_KEY',
      'DEEPSEEK_API_KEY',
      'OPENAI_API_KEY',
      'VISTYLE_DATA_API_BASE',
      'VISTYLE_DATA_API_MODEL',
    ];
    expect(expected.length).toBeGreaterThan(30);
    expect(expected.filter((name) => !listed.has(name))).toEqual([]);
  });

  it('names only variables that some code reads', () => {
    const code = ['src/config/config.ts', 'models/download/hubs.ts', 'src/paths.ts', 'models/data/maker.ts'].map(read).join('\n');
    expect(exampleVariables().filter((name) => !code.includes(`'${name}'`) && !code.includes(`${name}:`) && !code.includes(`env.${name}`))).toEqual([]);
  });

  it('loads as a valid configuration once a token is filled in, with nothing machine-specific: CPU, the default home', () => {
    const env = dotenv.parse(read('deploy/.env.example'));
    const config = loadConfig({ ...env, TELEGRAM_BOT_TOKEN: '123456:test-token-for-the-example', VISTYLE_HOME: undefined });
    expect(config.telegram?.token).toBe('123456:test-token-for-the-example');
    expect(config.discord).toBeUndefined(); // empty Discord lines count as unset
    expect(env.VISTYLE_PROVIDER).toBeUndefined();
    expect(config.model.provider).toBe('cpu');
    expect(env.VISTYLE_HOME).toBeUndefined();
    for (const name of ['VISTYLE_MODEL_DIR', 'VISTYLE_DB_PATH', 'VISTYLE_STYLES_FILE', 'VISTYLE_LOG_FILE', 'VISTYLE_DEVICE_ID']) expect(env[name], name).toBeUndefined();
    // the GPU and service values are there as commented examples
    expect(read('deploy/.env.example')).toMatch(/^#VISTYLE_PROVIDER=cuda$/m);
    expect(read('deploy/.env.example')).toMatch(/^#VISTYLE_HOME=\/var\/lib\/vistyle$/m);
  });
});

describe('deploy/Dockerfile and deploy/docker-compose.yml', () => {
  const dockerfile = read('deploy/Dockerfile');
  const compose = YAML.parse(read('deploy/docker-compose.yml'));
  const service = compose.services.vistyle;

  it('build the repository with npm ci, the TypeScript build and the CUDA provider', () => {
    expect(dockerfile).toMatch(/RUN npm ci\b/);
    expect(dockerfile).toMatch(/npm run build/);
    expect(dockerfile).toMatch(/npm run install-cuda/);
    expect(dockerfile).toMatch(/ARG CUDA_IMAGE=nvidia\/cuda:12\.[0-9.]+-cudnn-runtime-ubuntu[0-9.]+/);
    expect(dockerfile).toMatch(/ARG NODE_IMAGE=node:20/);
    // every COPY from the build context exists in the repository (a folder with files in it:
    // git does not keep empty folders, so a fresh clone would not have it)
    for (const match of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const source of match[1]!.split(/\s+/)) {
        const path = join(REPO, source);
        expect(existsSync(path), source).toBe(true);
        if (statSync(path).isDirectory()) {
          const files = readdirSync(path, { recursive: true, withFileTypes: true }).filter((entry) => entry.isFile());
          expect(files.length, `${source} has files`).toBeGreaterThan(0);
        }
      }
    }
    // the folders the CLI's code lives in (bench and tests are not needed at run time)
    for (const folder of ['src', 'adapters', 'models']) expect(dockerfile).toMatch(new RegExp(`^COPY ${folder} \\./${folder}$`, 'm'));
    // the compose build points at this Dockerfile with the repository as context
    expect(join(REPO, 'deploy', service.build.context)).toBe(REPO.replace(/\/$/, ''));
    expect(service.build.dockerfile).toBe('deploy/Dockerfile');
  });

  it('run the CLI the package declares, as a non-root user', () => {
    const bin = JSON.parse(read('package.json')).bin.vistyle as string;
    expect(dockerfile).toContain(`ENTRYPOINT ["node", "/app/${bin}"]`);
    expect(dockerfile).toMatch(/^CMD \["start"\]$/m);
    expect(dockerfile).toMatch(/^USER vistyle$/m);
    expect(service.command).toEqual(['start']);
  });

  it('keep VISTYLE_HOME on the volume, with the GPU reserved', () => {
    const home = /VISTYLE_HOME=(\S+)/.exec(dockerfile)?.[1];
    expect(home).toBe('/var/lib/vistyle');
    expect(dockerfile).toContain(`VOLUME ["${home}"]`);
    expect(service.environment.VISTYLE_HOME).toBe(home);
    expect(service.volumes).toContain(`vistyle-data:${home}`);
    expect(Object.keys(compose.volumes)).toContain('vistyle-data');
    expect(service.env_file).toBe('.env');
    expect(service.deploy.resources.reservations.devices).toEqual([{ driver: 'nvidia', count: 1, capabilities: ['gpu'] }]);
    expect(service.init).toBe(true);
  });
});

describe('deploy/vistyle.service', () => {
  const unit = read('deploy/vistyle.service');
  const service = unit.slice(unit.indexOf('[Service]'), unit.indexOf('[Install]'));
  const value = (key: string): string[] => [...service.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1]!);

  it('runs `vistyle start` as an unprivileged user with the env file, restarting on failure', () => {
    const bin = JSON.parse(read('package.json')).bin.vistyle as string;
    expect(value('ExecStart')).toEqual([`/usr/bin/node /opt/vistyle/${bin} start`]);
    expect(value('User')).toEqual(['vistyle']);
    expect(value('EnvironmentFile')).toEqual(['/etc/vistyle/vistyle.env']);
    expect(value('Restart')).toEqual(['on-failure']);
    expect(unit).toMatch(/^WantedBy=multi-user\.target$/m);
  });

  it('can write VISTYLE_HOME and still reach the GPU', () => {
    const home = value('Environment').find((v) => v.startsWith('VISTYLE_HOME='))?.split('=')[1];
    expect(home).toBe('/var/lib/vistyle');
    expect(value('ReadWritePaths')).toContain(home);
    expect(value('StateDirectory')).toEqual(['vistyle']);
    expect(service).not.toMatch(/^PrivateDevices=(yes|true)/m);
    expect(service).not.toMatch(/^MemoryDenyWriteExecute=(yes|true)/m);
    // the drain time the bot allows itself fits in the stop time-out
    const drain = Number(/VISTYLE_SHUTDOWN_DRAIN_SECONDS=(\d+)/.exec(read('deploy/.env.example'))?.[1]);
    expect(Number.parseInt(value('TimeoutStopSec')[0]!, 10)).toBeGreaterThan(drain);
  });
});
