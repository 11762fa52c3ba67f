// The original work's datasets (../shared/seed-data, never committed) must read as they are with
// the dataset reader the trainer format shares. Skipped on a clone without them.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readStyledDataset } from '../../models/data/dataset.js';

const seedDir = resolve(__dirname, '../../../shared/seed-data');
const files = [
  ['angry.json', 1000],
  ['guangdong_native.json', 977],
  ['saleman.json', 1000],
] as const;

describe.skipIf(!existsSync(seedDir))('seed datasets', () => {
  for (const [name, count] of files) {
    it(`reads ${name} as {question, ans, url} samples`, () => {
      const { samples, invalid } = readStyledDataset(join(seedDir, name));
      expect(invalid).toBe(0);
      expect(samples).toHaveLength(count);
      for (const sample of samples) {
        expect(sample.question.length).toBeGreaterThan(0);
        expect(sample.ans.length).toBeGreaterThan(0);
        expect(sample.url).toMatch(/^https:\/\/.+\.jpg$/);
      }
    });
  }

  it('has the Cantonese particles in the Cantonese set and not in the grumpy one', () => {
    const cantonese = readStyledDataset(join(seedDir, 'guangdong_native.json')).samples;
    const grumpy = readStyledDataset(join(seedDir, 'angry.json')).samples;
    const share = (samples: typeof cantonese): number => samples.filter((s) => /[嘅咗啲喺]/.test(s.ans)).length / samples.length;
    expect(share(cantonese)).toBeGreaterThan(0.8);
    expect(share(grumpy)).toBeLessThan(0.05);
  });
});
