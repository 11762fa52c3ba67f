// Model files under real faults: the model folder deleted while an answer is being generated,
// the next engine start on a folder that is gone or half gone, `vistyle model build` killed
// half-way (no loadable half model anywhere), and --out pointing at a file or a foreign folder.
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateCheckpoint } from '../../models/checkpoint/generate.js';
import { MANIFEST_FILE } from '../../models/manifest.js';
import { createEngine } from '../../src/engine/engine.js';
import { openModelFolder } from '../../src/engine/model-folder.js';
import type { GenerateRequest } from '../../src/engine/types.js';
import { isVistyleError, type VistyleError } from '../../src/errors.js';
import { runVistyle } from '../support/run-cli.js';
import { tinyModel } from '../support/tiny-model.js';

const ROOT = new URL('../../', import.meta.url).pathname;
const PNG = new Uint8Array(readFileSync(new URL('../fixtures/images/test_image_64x48.png', import.meta.url)));

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vistyle-model-faults-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A long answer (greedy, many tokens) about the picture. */
function longAnswer(): GenerateRequest {
  return {
    images: [PNG],
    messages: [{ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: 'Describe this picture at length.' }] }],
    sampling: { greedy: true, maxNewTokens: 200 },
  };
}

async function startError(modelDir: string): Promise<VistyleError> {
  const error = await createEngine({ modelDir, threads: 1 }).then(
    async (engine) => {
      await engine.close();
      throw new Error(`the engine started on ${modelDir}`);
    },
    (e: unknown) => e,
  );
  if (!isVistyleError(error)) throw error;
  return error;
}

describe('the model folder changes under a running engine', () => {
  it('an answer in flight finishes when the folder is deleted; the next start says the folder is gone', async () => {
    const modelDir = join(dir, 'deleted');
    cpSync((await tinyModel()).modelDir, modelDir, { recursive: true });
    const engine = await createEngine({ modelDir, threads: 1 });
    try {
      const stream = engine.generate(longAnswer());
      let deltasAfter = 0;
      let deleted = false;
      for await (const _delta of stream) {
        if (!deleted) {
          rmSync(modelDir, { recursive: true, force: true });
          deleted = true;
        } else deltasAfter++;
      }
      const result = await stream.result;
      expect(deleted).toBe(true);
      expect(deltasAfter).toBeGreaterThan(0); // it kept generating after the files were gone
      expect(result.finishReason === 'length' || result.finishReason === 'eos').toBe(true);
      // and the engine keeps serving from what it loaded
      expect((await engine.generate({ ...longAnswer(), sampling: { greedy: true, maxNewTokens: 3 } }).result).tokens.length).toBeGreaterThan(0);
    } finally {
      await engine.close();
    }
    const error = await startError(modelDir);
    expect(error.code).toBe('MODEL_NOT_FOUND');
    expect(error.message).toContain(`no built model at ${modelDir}`);
  });

  it('the next start names every file that is missing from a half-deleted folder', async () => {
    const modelDir = join(dir, 'half');
    cpSync((await tinyModel()).modelDir, modelDir, { recursive: true });
    rmSync(join(modelDir, 'decoder.onnx'));
    rmSync(join(modelDir, 'tokenizer.json'));
    const error = await startError(modelDir);
    expect(error.code).toBe('MODEL_INVALID');
    expect(error.message).toMatch(/incomplete: missing decoder\.onnx \(decoder\), tokenizer\.json \(tokenizer\); rebuild it/);
  });
});

describe('vistyle model build writes atomically', () => {
  let checkpointDir: string;
  beforeAll(() => {
    // big enough that writing the decoder takes a while (tens of MB), small enough to be quick
    checkpointDir = join(dir, 'checkpoint');
    generateCheckpoint(checkpointDir, { text: { hiddenSize: 256, numLayers: 8, numHeads: 4, numKvHeads: 2, intermediateSize: 1024, vocabSize: 4096 } });
  });

  /** Starts a build and SIGKILLs it once its temporary folder holds a graph but no manifest. */
  async function killedBuild(out: string): Promise<string> {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'model', 'build', '--checkpoint', checkpointDir, '--out', out], {
      cwd: ROOT,
      stdio: 'ignore',
    });
    const exited = new Promise((resolve) => child.on('exit', resolve));
    const parent = join(out, '..');
    const partial = await new Promise<string>((resolve, reject) => {
      const timer = setInterval(() => {
        const name = readdirSync(parent).find((n) => n.startsWith('.out.partial-'));
        if (name && existsSync(join(parent, name, 'vision.onnx')) && !existsSync(join(parent, name, MANIFEST_FILE))) {
          clearInterval(timer);
          child.kill('SIGKILL');
          resolve(join(parent, name));
        }
      }, 2);
      child.on('exit', () => {
        clearInterval(timer);
        reject(new Error('the build finished before it could be killed'));
      });
    });
    await exited;
    return partial;
  }

  it('a build killed half-way leaves no loadable half model, and the next build cleans up after it', async () => {
    const parent = join(dir, 'fresh');
    mkdirSync(parent);
    const out = join(parent, 'out');
    const partial = await killedBuild(out);
    expect(existsSync(out)).toBe(false);
    expect(() => openModelFolder(out)).toThrow(/no built model at/);
    expect(() => openModelFolder(partial)).toThrow(/vistyle-model\.json is missing/); // not loadable either

    const { code } = await runVistyle(['model', 'build', '--checkpoint', checkpointDir, '--out', out]);
    expect(code).toBe(0);
    expect(openModelFolder(out).manifest.text.numLayers).toBe(8);
    expect(readdirSync(parent)).toEqual(['out']); // the killed build's folder is gone
  });

  it('a rebuild killed half-way leaves the previous model in place, whole', async () => {
    const parent = join(dir, 'rebuild');
    mkdirSync(parent);
    const out = join(parent, 'out');
    expect((await runVistyle(['model', 'build', '--checkpoint', checkpointDir, '--out', out])).code).toBe(0);
    const before = readFileSync(join(out, MANIFEST_FILE), 'utf8');
    const files = readdirSync(out).sort();
    await killedBuild(out);
    expect(readFileSync(join(out, MANIFEST_FILE), 'utf8')).toBe(before);
    expect(readdirSync(out).sort()).toEqual(files);
    expect(openModelFolder(out).manifest.createdAt).toBe(JSON.parse(before).createdAt);
  });

  it('--out naming a file, or a folder of other things, is refused in one clear line and left alone', async () => {
    const file = join(dir, 'a-file');
    writeFileSync(file, 'keep me');
    const onFile = await runVistyle(['model', 'build', '--checkpoint', checkpointDir, '--out', file]);
    expect(onFile.code).toBe(1);
    expect(onFile.stderr).toBe(`vistyle: cannot build into ${file}: it is a file, not a folder (choose another --out, or remove the file)\n`);
    expect(readFileSync(file, 'utf8')).toBe('keep me');

    const folder = join(dir, 'documents');
    mkdirSync(folder);
    writeFileSync(join(folder, 'notes.txt'), 'mine');
    const onFolder = await runVistyle(['model', 'build', '--checkpoint', checkpointDir, '--out', folder]);
    expect(onFolder.code).toBe(1);
    expect(onFolder.stderr).toMatch(/^vistyle: cannot build into .*documents: it holds other files \(notes\.txt\)/);
    expect(readdirSync(folder)).toEqual(['notes.txt']);
    expect(readdirSync(dir).filter((name) => name.includes('.partial-'))).toEqual([]);
  });
});
