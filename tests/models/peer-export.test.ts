// The benchmark's peer runs the same model: the transformers.js layout written by
// models/export/transformers-js.ts, loaded by @huggingface/transformers' own
// LlavaForConditionalGeneration (its tokenizer, image processor and generate loop), gives the
// same greedy tokens as vistyle's engine on the same checkpoint — fp32 on the tiny-a fixture
// (whose greedy tokens transformers computed), and int4 on a generated checkpoint (both sides
// reading the same MatMulNBits weights).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadPeer } from '../../bench/peer.js';
import { buildModel } from '../../models/build/build.js';
import { generateCheckpoint } from '../../models/checkpoint/generate.js';
import { exportTransformersJs, type PeerDtype } from '../../models/export/transformers-js.js';
import { createLocalEngine } from '../../src/engine/local-engine.js';
import { resolveSampling } from '../../src/engine/text-parts.js';
import { TINY_A_DIR } from './fixture.js';

const root = mkdtempSync(join(tmpdir(), 'vistyle-peer-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const IMAGE = new Uint8Array(readFileSync(join(TINY_A_DIR, 'image1_56x56.png')));
const QUESTION = 'What is in this picture?';
const TOKENS = 12;

async function both(checkpointDir: string, dtype: PeerDtype, name: string): Promise<{ vistyle: number[]; peer: number[]; prompt: [number, number] }> {
  const built = join(root, `${name}-vistyle`);
  await buildModel({ checkpointDir, outDir: built, dtype, ...(dtype === 'fp32' ? {} : { accuracyLevel: 4 }) });
  const peerDir = join(root, `${name}-peer`);
  exportTransformersJs({ checkpointDir, outDir: peerDir, dtype, ...(dtype === 'fp32' ? {} : { accuracyLevel: 4 }) });

  const engine = await createLocalEngine({ modelDir: built, threads: 1 });
  let vistyle: number[];
  let vistylePrompt: number;
  try {
    const stream = engine.generate({
      images: [IMAGE],
      messages: [{ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: QUESTION }] }],
      sampling: resolveSampling({ greedy: true, maxNewTokens: TOKENS, stopStrings: [] }),
    });
    for await (const _ of stream) void _;
    const result = await stream.result;
    vistyle = result.tokens;
    vistylePrompt = result.promptTokens;
  } finally {
    await engine.close();
  }
  const peer = await loadPeer(peerDir, dtype, 1);
  try {
    const run = await peer.generate(IMAGE, QUESTION, TOKENS);
    return { vistyle, peer: run.tokens, prompt: [vistylePrompt, run.promptTokens] };
  } finally {
    await peer.close();
  }
}

/** vistyle's tokens leave out the end-of-text token it stopped at; the peer's include it. */
function expectSameGreedy(vistyle: number[], peer: number[]): void {
  expect(vistyle.length).toBeGreaterThan(3);
  expect(peer.slice(0, vistyle.length)).toEqual(vistyle);
  if (vistyle.length < TOKENS) expect(peer.length).toBe(vistyle.length + 1);
}

describe('transformers.js on the exported layout', () => {
  it('fp32, tiny-a: the same prompt and the same greedy tokens as vistyle', async () => {
    const r = await both(TINY_A_DIR, 'fp32', 'tiny-a');
    expect(r.prompt[1]).toBe(r.prompt[0]);
    expectSameGreedy(r.vistyle, r.peer);
  });

  it('int4 (MatMulNBits), generated checkpoint: the same greedy tokens', async () => {
    const ckpt = join(root, 'int4-ckpt');
    generateCheckpoint(ckpt, { dtype: 'BF16', seed: 31, vision: { imageSize: 56 } });
    const r = await both(ckpt, 'int4', 'int4');
    expect(r.prompt[1]).toBe(r.prompt[0]);
    expectSameGreedy(r.vistyle, r.peer);
  });
});
