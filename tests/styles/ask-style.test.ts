// `vistyle ask --style ID` end to end on a tiny built model. Two honest observables:
//  - the prompt: with the toy tokenizer (one token per UTF-8 byte, one per special token) the
//    reported promptTokens must equal the count of the conversation rendered by the hub chat
//    template (role line, text, <|im_end|>\n per message) — system prompt and few-shot turns
//    included for --style, nothing but the question for --raw;
//  - the adapter: with the styles file giving grumpy a LoRA adapter, the greedy tokens must equal
//    those of the same checkpoint with the adapter merged into its weights (and differ from the
//    base model's).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { writePeftAdapter, type LoraModuleWeights } from '../../models/lora/writer.js';
import { ModelManifestSchema } from '../../models/manifest.js';
import { runCli } from '../../src/cli/main.js';
import { LiveStyleRegistry } from '../../src/styles/registry.js';
import type { Style } from '../../src/styles/types.js';
import { randomLoraWeights } from '../lora/helpers.js';
import { tinyModel } from '../support/tiny-model.js';


const IMAGE = join(__dirname, '..', 'fixtures', 'tiny-a', 'image1_56x56.png');
const QUESTION = 'What is here?';
const root = mkdtempSync(join(tmpdir(), 'vistyle-ask-style-'));
let baseDir: string;
let mergedDir: string;
let imageTokens: number;
const stylesWithAdapter = join(root, 'styles.yaml');
const adapterDir = join(root, 'grumpy-lora');
const otherAdapterDir = join(root, 'other-lora');

interface AskJson {
  text: string;
  tokens: number[];
  promptTokens: number;
}

async function ask(args: string[], stylesFile: string | null): Promise<{ code: number; json: AskJson | null; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const previous = process.env.VISTYLE_STYLES_FILE;
  if (stylesFile) process.env.VISTYLE_STYLES_FILE = stylesFile;
  else delete process.env.VISTYLE_STYLES_FILE;
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  });
  try {
    const code = await runCli(['node', 'vistyle', 'ask', '--image', IMAGE, '--greedy', '--max-tokens', '8', '--json', '--threads', '1', ...args]);
    const last = stdout.trim().split('\n').at(-1) ?? '';
    return { code, json: code === 0 ? (JSON.parse(last) as AskJson) : null, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
    process.exitCode = undefined;
    if (previous === undefined) delete process.env.VISTYLE_STYLES_FILE;
    else process.env.VISTYLE_STYLES_FILE = previous;
  }
}

/** Tokens of one message in the hub template: <|im_start|> role \n [images] text <|im_end|> \n. */
function messageTokens(role: string, text: string, withImage = false): number {
  return 1 + Buffer.byteLength(`${role}\n`) + (withImage ? imageTokens + 1 : 0) + Buffer.byteLength(text) + 2;
}
const GENERATION_PROMPT = 1 + Buffer.byteLength('assistant\n');

function styledPromptTokens(style: Style, question: string): number {
  let count = style.systemPrompt ? messageTokens('system', style.systemPrompt) : 0;
  for (const example of style.examples) count += messageTokens('user', example.question) + messageTokens('assistant', example.answer);
  return count + messageTokens('user', question, true) + GENERATION_PROMPT;
}

function merge(W: Float32Array, w: LoraModuleWeights, scale: number): Float32Array {
  const out = Float32Array.from(W);
  for (let o = 0; o < w.outFeatures; o++) {
    for (let i = 0; i < w.inFeatures; i++) {
      let delta = 0;
      for (let r = 0; r < w.rank; r++) delta += w.B[o * w.rank + r]! * w.A[r * w.inFeatures + i]!;
      out[o * w.inFeatures + i] = W[o * w.inFeatures + i]! + scale * delta;
    }
  }
  return out;
}

beforeAll(async () => {
  const base = await tinyModel({ chatTemplate: 'hub' });
  baseDir = base.modelDir;
  const manifest = ModelManifestSchema.parse(JSON.parse(readFileSync(join(baseDir, 'vistyle-model.json'), 'utf8')));
  imageTokens = manifest.vision.imageTokens;
  const weights = randomLoraWeights(manifest.lora.targets, 4, 21, 0.4);
  writePeftAdapter(adapterDir, { modules: weights, rank: 4, alpha: 8 });
  writePeftAdapter(otherAdapterDir, { modules: randomLoraWeights(manifest.lora.targets, 2, 33, 0.4), rank: 2, alpha: 2 });
  writeFileSync(stylesWithAdapter, 'styles:\n  grumpy:\n    adapter: ./grumpy-lora\n');
  const byWeight = new Map(weights.map((w) => [`${w.module}.weight`, w]));
  mergedDir = (
    await tinyModel({
      chatTemplate: 'hub',
      build: { noLora: true },
      transform: (name, values) => {
        const w = byWeight.get(name);
        return w ? merge(values, w, 2) : values;
      },
    })
  ).modelDir;
}, 240_000);

afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('vistyle ask --style', () => {
  const builtins = new LiveStyleRegistry();

  it('renders the grumpy system prompt and few-shot turns into the prompt', async () => {
    const grumpy = await ask(['--model', baseDir, '--style', 'grumpy', QUESTION], null);
    expect(grumpy.code, grumpy.stderr).toBe(0);
    expect(grumpy.json!.promptTokens).toBe(styledPromptTokens(builtins.get('grumpy')!, QUESTION));

    const raw = await ask(['--model', baseDir, '--raw', QUESTION], null);
    expect(raw.json!.promptTokens).toBe(messageTokens('user', QUESTION, true) + GENERATION_PROMPT);

    const plain = await ask(['--model', baseDir, QUESTION], null);
    expect(plain.json!.promptTokens).toBe(styledPromptTokens(builtins.get('plain')!, QUESTION));
    expect(new Set([grumpy.json!.promptTokens, raw.json!.promptTokens, plain.json!.promptTokens]).size).toBe(3);
  });

  it('applies the adapter the styles file gives the style: the merged model\'s greedy tokens', async () => {
    const withAdapter = await ask(['--model', baseDir, '--style', 'grumpy', QUESTION], stylesWithAdapter);
    const merged = await ask(['--model', mergedDir, '--style', 'grumpy', QUESTION], null);
    const withoutAdapter = await ask(['--model', baseDir, '--style', 'grumpy', QUESTION], null);
    expect(withAdapter.code, withAdapter.stderr).toBe(0);
    expect(withAdapter.json!.tokens).toHaveLength(8);
    expect(withAdapter.json!.tokens).toEqual(merged.json!.tokens);
    expect(withAdapter.json!.tokens).not.toEqual(withoutAdapter.json!.tokens);
    // the prompt is the same either way: only the adapter differs
    expect(withAdapter.json!.promptTokens).toBe(withoutAdapter.json!.promptTokens);
  });

  it('lets --adapter replace the style\'s adapter, and applies it with --raw too', async () => {
    const styleAdapter = await ask(['--model', baseDir, '--style', 'grumpy', QUESTION], stylesWithAdapter);
    const overridden = await ask(['--model', baseDir, '--style', 'grumpy', '--adapter', otherAdapterDir, QUESTION], stylesWithAdapter);
    expect(overridden.json!.tokens).not.toEqual(styleAdapter.json!.tokens);

    const rawWithAdapter = await ask(['--model', baseDir, '--raw', '--adapter', adapterDir, QUESTION], stylesWithAdapter);
    const rawMerged = await ask(['--model', mergedDir, '--raw', QUESTION], null);
    expect(rawWithAdapter.json!.tokens).toEqual(rawMerged.json!.tokens);
    // --raw ignores the style file's adapter
    const rawOnly = await ask(['--model', baseDir, '--raw', QUESTION], stylesWithAdapter);
    const rawBase = await ask(['--model', baseDir, '--raw', QUESTION], null);
    expect(rawOnly.json!.tokens).toEqual(rawBase.json!.tokens);
  });

  it('refuses an unknown style and a broken adapter with one line', async () => {
    const unknown = await ask(['--model', baseDir, '--style', 'pirate', QUESTION], null);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr.trim().split('\n')).toHaveLength(1);
    expect(unknown.stderr).toContain('unknown style "pirate"');

    const missing = await ask(['--model', baseDir, '--adapter', join(root, 'nope'), QUESTION], null);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('nope');
    // checked before the model is loaded: a model folder that does not exist is never reached
    const early = await ask(['--model', join(root, 'no-model'), '--adapter', join(root, 'nope'), QUESTION], null);
    expect(early.code).toBe(1);
    expect(early.stderr).toContain(`LoRA adapter ${join(root, 'nope')}: no such folder`);
  });
});
