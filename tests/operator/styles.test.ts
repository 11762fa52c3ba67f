// Styles as an operator uses them: --styles-file on every command that takes --style, ids in any
// case, an unknown style that says where styles come from, trained adapters found in
// <VISTYLE_HOME>/adapters/<style>, and the README's trainer line that reads the system prompt
// from `vistyle styles --json` with jq.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { LiveStyleRegistry } from '../../src/styles/registry.js';
import { runVistyle } from '../support/run-cli.js';
import { tinyModel } from '../support/tiny-model.js';
import { startFakeChatServer, type FakeChatServer } from '../data/fake-chat-server.js';
import { ROOT, vistyleOnPath } from './support.js';

const PICTURE = join(ROOT, 'tests/fixtures/images/test_image_64x48.png');
let dir: string;
let stylesFile: string;
let modelDir: string;

/** The README's styles file of "Add a style by prompt" (the first yaml block after its heading). */
function readmeStylesYaml(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('### Add a style by prompt'));
  return /```yaml\n([\s\S]*?)```/.exec(section)![1]!;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vistyle-operator-styles-'));
  stylesFile = join(dir, 'styles.yaml');
  writeFileSync(stylesFile, readmeStylesYaml());
  modelDir = (await tinyModel()).modelDir;
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const noStylesEnv = { VISTYLE_STYLES_FILE: undefined, VISTYLE_HOME: join(tmpdir(), 'vistyle-operator-styles-home-unused') };

describe('--styles-file and style ids', () => {
  it('vistyle ask --styles-file FILE --style pirate uses the README\'s pirate, in any case', async () => {
    for (const id of ['pirate', 'Pirate', 'PIRATE']) {
      const run = await runVistyle(['ask', '--model', modelDir, '--styles-file', stylesFile, '--style', id, '--image', PICTURE, '--max-tokens', '2', '--json', 'What is it?'], noStylesEnv);
      expect(run.code, run.stderr).toBe(0);
    }
    // the pirate's system prompt and example make the prompt longer than the plain default's
    const plain = await runVistyle(['ask', '--model', modelDir, '--image', PICTURE, '--max-tokens', '2', '--json', 'What is it?'], noStylesEnv);
    const pirate = await runVistyle(['ask', '--model', modelDir, '--styles-file', stylesFile, '--style', 'Pirate', '--image', PICTURE, '--max-tokens', '2', '--json', 'What is it?'], noStylesEnv);
    const tokens = (out: string) => (JSON.parse(out.trimEnd().split('\n').at(-1)!) as { promptTokens: number }).promptTokens;
    expect(tokens(pirate.stdout)).toBeGreaterThan(tokens(plain.stdout) + 20);
  });

  it('--style Grumpy is the built-in grumpy', async () => {
    const run = await runVistyle(['ask', '--model', modelDir, '--style', 'Grumpy', '--image', PICTURE, '--max-tokens', '1', 'What is it?'], noStylesEnv);
    expect(run.code, run.stderr).toBe(0);
  });

  it('an unknown style says where styles come from: no file in use, or the file in use', async () => {
    const none = await runVistyle(['ask', '--model', modelDir, '--style', 'pirate', '--image', PICTURE, 'What is it?'], noStylesEnv);
    expect(none.code).toBe(1);
    expect(none.stderr).toBe(
      'vistyle: unknown style "pirate" (known: plain, grumpy, cantonese, salesman); no styles file is in use: pass --styles-file FILE, or set VISTYLE_STYLES_FILE (in the environment or .env)\n',
    );
    const other = await runVistyle(['ask', '--model', modelDir, '--styles-file', stylesFile, '--style', 'parrot', '--image', PICTURE, 'What is it?'], noStylesEnv);
    expect(other.stderr).toContain(`unknown style "parrot" (known: plain, grumpy, cantonese, salesman, pirate); the styles file in use is ${stylesFile}`);
    const listed = await runVistyle(['styles', '--styles-file', stylesFile, '--json'], noStylesEnv);
    expect((JSON.parse(listed.stdout) as { styles: { id: string }[] }).styles.map((s) => s.id)).toContain('pirate');
  });

  it('vistyle data make --styles-file FILE --style Pirate gives the data API the pirate\'s voice', async () => {
    const server: FakeChatServer = await startFakeChatServer();
    try {
      const input = join(dir, 'captions.jsonl');
      writeFileSync(input, '{"url":"u/1","caption":"a red boat [good]"}\n');
      const out = join(dir, 'pirate.jsonl');
      const run = await runVistyle(
        ['data', 'make', '--styles-file', stylesFile, '--input', input, '--style', 'Pirate', '--out', out, '--api-base', server.baseUrl, '--no-progress', '--json'],
        { ...noStylesEnv, VISTYLE_DATA_API_KEY: 'sk-test-key-0123456789' },
      );
      expect(run.code, run.stderr).toBe(0);
      expect(server.requests[0]!.body.messages.map((m) => m.content).join('\n')).toContain('old pirate captain');
    } finally {
      await server.close();
    }
  });
});

describe('trained adapters in their default place', () => {
  const adapter = (path: string): void => {
    mkdirSync(path, { recursive: true });
    writeFileSync(join(path, 'adapter_config.json'), '{}');
    writeFileSync(join(path, 'adapter_model.safetensors'), '');
  };

  it('a style that names none uses <adapters>/<id>; a named one and `adapter: null` win', () => {
    const adapters = join(dir, 'home', 'adapters');
    adapter(join(adapters, 'pirate'));
    adapter(join(adapters, 'grumpy'));
    adapter(join(adapters, 'salesman'));
    mkdirSync(join(adapters, 'cantonese')); // half written: passed over
    const file = join(dir, 'with-adapters.yaml');
    adapter(join(dir, 'elsewhere'));
    writeFileSync(file, `${readmeStylesYaml()}  grumpy:\n    adapter: ./elsewhere\n  salesman:\n    adapter: null\n`);
    const registry = new LiveStyleRegistry({ file, watch: false, adaptersDir: adapters });
    try {
      expect(registry.get('pirate')!.adapter).toEqual({ path: join(adapters, 'pirate') });
      expect(registry.get('grumpy')!.adapter).toEqual({ path: join(dir, 'elsewhere') });
      expect(registry.get('salesman')!.adapter).toBeNull();
      expect(registry.get('cantonese')!.adapter).toBeNull();
      expect(registry.get('plain')!.adapter).toBeNull();
    } finally {
      registry.close();
    }
  });
});

describe("the README's trainer line", () => {
  const hasJq = spawnSync('jq', ['--version']).status === 0;
  // CI installs jq (.ci/run); elsewhere the test skips without it
  it.skipIf(!hasJq && process.env.CI !== 'true')('$(vistyle styles ... --json | jq -r ...) prints the pirate\'s system prompt', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const line = readme.split('\n').find((l) => l.includes('--system-prompt "$('));
    expect(line, 'the trainer line in README.md').toBeDefined();
    const command = /--system-prompt "\$\((.*)\)"\s*$/.exec(line!)![1]!;
    expect(command).toContain(`jq -r '.styles[] | select(.id=="pirate") | .systemPrompt'`);
    const bin = vistyleOnPath(dir);
    const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, VISTYLE_STYLES_FILE: '', VISTYLE_ENV_FILE: join(dir, 'none.env') };
    // the README runs it from the folder that holds styles.yaml
    const printed = execFileSync('bash', ['-o', 'pipefail', '-c', command], { cwd: dir, env, encoding: 'utf8' });
    const expected = (parse(readmeStylesYaml()) as { styles: { pirate: { systemPrompt: string } } }).styles.pirate.systemPrompt;
    expect(expected).toMatch(/^You are an old pirate captain/);
    expect(printed).toBe(`${expected}\n`);
  });
});
