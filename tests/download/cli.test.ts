// `vistyle model pull` as a person runs it: a real process, exit codes, what lands on stdout and
// stderr, and the built model folder at the end (the tiny reference checkpoint served by a fake hub).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeHub, closedPortUrl, type FakeFile } from './fake-hub.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MODEL_ID = 'llava-hf/llava-interleave-qwen-0.5b-hf';
const MODEL_FOLDER = 'llava-hf--llava-interleave-qwen-0.5b-hf';
const FIXTURE = new URL('../fixtures/tiny-a/', import.meta.url);
const TRY_IT = 'vistyle ask --image photo.jpg "What is in this picture?"';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI from source in a child process, with only the variables given (plus PATH/HOME). */
function vistyle(args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'src/cli/main.ts'), ...args], {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmpdir(), VISTYLE_ENV_FILE: '/nonexistent/.env', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function tinyRepo(): FakeFile[] {
  const names = readdirSync(FIXTURE).filter((name) => name.includes('.') && name !== 'image1_56x56.png');
  return [
    ...names.map((path) => ({ path, data: readFileSync(new URL(path, FIXTURE)), lfs: path.endsWith('.safetensors') })),
    { path: 'README.md', data: Buffer.from('# tiny\n') },
  ];
}

let hub: FakeHub;
let work: string;

beforeAll(async () => {
  hub = await new FakeHub(MODEL_ID, tinyRepo()).start();
  work = mkdtempSync(join(tmpdir(), 'vistyle-pull-cli-'));
});

afterAll(async () => {
  await hub.stop();
  rmSync(work, { recursive: true, force: true });
});

describe('vistyle model pull without a network', () => {
  it('prints one line naming the endpoint and HF_ENDPOINT, and exits 1', async () => {
    const closed = await closedPortUrl();
    const run = await vistyle(['model', 'pull'], { HF_ENDPOINT: closed, VISTYLE_HOME: join(work, 'offline') });
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    // ...and where the endpoint came from (the operator's provenance note)
    expect(run.stderr).toBe(
      `vistyle: cannot reach ${closed} (connect ECONNREFUSED): check your connection or set HF_ENDPOINT to a mirror (HF_ENDPOINT=${closed} was set in the environment)\n`,
    );
  });

  it('names the DNS failure for a host that does not resolve', async () => {
    const run = await vistyle(['model', 'pull', '--retries', '0'], {
      HF_ENDPOINT: 'http://vistyle-no-such-host.invalid',
      VISTYLE_HOME: join(work, 'offline'),
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(
      /^vistyle: cannot reach http:\/\/vistyle-no-such-host\.invalid \(getaddrinfo (ENOTFOUND|EAI_AGAIN)\): check your connection or set HF_ENDPOINT to a mirror \(HF_ENDPOINT=http:\/\/vistyle-no-such-host\.invalid was set in the environment\)\n$/,
    );
  });
});

describe('vistyle model pull against a hub', () => {
  it('downloads, builds into the default folder, and says how to try it', async () => {
    const home = join(work, 'home');
    const run = await vistyle(['model', 'pull'], { HF_ENDPOINT: hub.url, VISTYLE_HOME: home });
    expect(run.stderr).not.toMatch(/vistyle: /); // no error line
    expect(run.code).toBe(0);
    const checkpoint = join(home, 'models', MODEL_FOLDER, 'checkpoint');
    const built = join(home, 'models', MODEL_FOLDER, 'built');
    expect(readFileSync(join(checkpoint, 'model.safetensors')).equals(readFileSync(new URL('model.safetensors', FIXTURE)))).toBe(true);
    expect(existsSync(join(checkpoint, 'README.md'))).toBe(false);
    const manifest = JSON.parse(readFileSync(join(built, 'vistyle-model.json'), 'utf8'));
    expect(manifest.dtype).toBe('int8'); // the CPU default
    expect(manifest.quantization).toMatchObject({ bits: 8, blockSize: 32 });
    expect(manifest.source.checkpoint).toBe(checkpoint);
    for (const graph of Object.values(manifest.graphs) as string[]) expect(existsSync(join(built, graph))).toBe(true);
    // stderr is not a terminal here: plain progress lines, no bar
    expect(run.stderr).toContain('downloading model.safetensors');
    expect(run.stderr).toContain('model.safetensors: 608 kB, sha256 verified');
    expect(run.stderr).not.toContain('\u2588');
    expect(run.stdout).toContain(`model: ${built} (int8)`);
    expect(run.stdout.trimEnd().endsWith(`try it:\n  ${TRY_IT}`)).toBe(true);

    // again: nothing to download, nothing to build
    hub.requests.length = 0;
    const again = await vistyle(['model', 'pull'], { HF_ENDPOINT: hub.url, VISTYLE_HOME: home });
    expect(again.code).toBe(0);
    expect(hub.requests.map((r) => r.url)).toEqual([`/api/models/${MODEL_ID}/revision/main?blobs=true`]);
    expect(again.stdout).toContain('already up to date');
    expect(again.stdout).toContain(`model: ${built} (int8) is already built from this checkpoint`);

    // another block size is another build
    const other = await vistyle(['model', 'pull', '--dtype', 'int4', '--block-size', '64'], { HF_ENDPOINT: hub.url, VISTYLE_HOME: home });
    expect(other.code).toBe(0);
    expect(other.stdout).toContain(`model: ${built} (int4)`);
    expect(other.stdout).not.toContain('already built');
    expect(JSON.parse(readFileSync(join(built, 'vistyle-model.json'), 'utf8')).quantization.blockSize).toBe(64);
  });

  it('builds fp16 by default when VISTYLE_PROVIDER=cuda, and names --model for another --out', async () => {
    const home = join(work, 'cuda-home');
    const out = join(work, 'elsewhere');
    const run = await vistyle(['model', 'pull', '--out', out], { HF_ENDPOINT: hub.url, VISTYLE_HOME: home, VISTYLE_PROVIDER: 'cuda' });
    expect(run.code).toBe(0);
    expect(JSON.parse(readFileSync(join(out, 'vistyle-model.json'), 'utf8')).dtype).toBe('fp16');
    expect(run.stdout).toContain(`vistyle ask --model ${out} --image photo.jpg "What is in this picture?"`);
  });

  it('--no-build downloads only, from ModelScope, into --dir', async () => {
    const dir = join(work, 'ms-checkpoint');
    const home = join(work, 'ms-home');
    const run = await vistyle(['model', 'pull', '--source', 'modelscope', '--no-build', '--dir', dir], {
      MODELSCOPE_ENDPOINT: hub.url,
      VISTYLE_HOME: home,
    });
    expect(run.code).toBe(0);
    expect(existsSync(join(dir, 'config.json'))).toBe(true);
    expect(existsSync(join(home, 'models', MODEL_FOLDER, 'built'))).toBe(false);
    expect(run.stdout).toContain('from modelscope');
    expect(run.stdout).toContain(`vistyle model build --checkpoint ${dir} --out ${join(home, 'models', MODEL_FOLDER, 'built')} --dtype int8`);
  });

  it('refuses an unknown --source', async () => {
    const run = await vistyle(['model', 'pull', '--source', 'github'], { VISTYLE_HOME: join(work, 'x') });
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/--source.*github.*(huggingface|choices)/s);
  });
});
