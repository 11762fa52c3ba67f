// Weights over the threshold go to `<graph>.onnx.data` next to the graph, referenced by a relative
// location: onnxruntime-node loads them from a file path (also after the folder moves) and the
// outputs equal those of the inline build exactly.
import { existsSync, mkdtempSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { buildModel } from '../../models/build/build.js';
import { fixtureArray, fixtureInputs, maxAbsDiff, TINY_A_DIR } from './fixture.js';
import { Graphs } from './ort-helpers.js';

const root = mkdtempSync(join(tmpdir(), 'vistyle-extdata-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

async function run(dir: string): Promise<{ features: Float32Array; logits: Float32Array }> {
  const graphs = await Graphs.open(dir);
  try {
    const inputs = fixtureInputs();
    const features = await graphs.runVision(fixtureArray('image1_pixel_values').data);
    const embeds = await graphs.mergedEmbeds([inputs.input_ids], features);
    const logits = await graphs.step(graphs.emptyCache(1), embeds);
    return { features, logits };
  } finally {
    await graphs.close();
  }
}

describe('external data', () => {
  it('is written above the threshold and loads from a path with identical outputs', async () => {
    const inline = await buildModel({ checkpointDir: TINY_A_DIR, outDir: join(root, 'inline') });
    const ext = await buildModel({ checkpointDir: TINY_A_DIR, outDir: join(root, 'ext'), externalDataThreshold: 0 });
    for (const graph of ['vision.onnx', 'embed.onnx', 'decoder.onnx']) {
      expect(inline.files[`${graph}.data`]).toBeUndefined();
      expect(existsSync(join(root, 'inline', `${graph}.data`))).toBe(false);
      expect(ext.files[`${graph}.data`]).toBeGreaterThan(0);
      // the graph file keeps only small tensors
      expect(statSync(join(root, 'ext', graph)).size).toBeLessThan(statSync(join(root, 'inline', graph)).size / 2);
    }
    // relative location: move the folder, then load
    renameSync(join(root, 'ext'), join(root, 'moved'));
    const a = await run(join(root, 'inline'));
    const b = await run(join(root, 'moved'));
    expect(maxAbsDiff(a.features, b.features)).toBe(0);
    expect(maxAbsDiff(a.logits, b.logits)).toBe(0);
    expect(maxAbsDiff(b.logits, fixtureArray('logits').data.subarray(57 * 512))).toBeLessThan(1e-4);
  });

  it('a rebuild below the threshold removes a stale data file', async () => {
    const dir = join(root, 'rebuild');
    await buildModel({ checkpointDir: TINY_A_DIR, outDir: dir, externalDataThreshold: 0 });
    expect(existsSync(join(dir, 'decoder.onnx.data'))).toBe(true);
    await buildModel({ checkpointDir: TINY_A_DIR, outDir: dir });
    expect(existsSync(join(dir, 'decoder.onnx.data'))).toBe(false);
    await run(dir);
  });
});
