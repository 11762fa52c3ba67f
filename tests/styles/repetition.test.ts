// The seed's demo failure: asked about test1.jpg in the grumpy voice, the model listed shop names
// and then repeated `"Bakery"` until it ran out of tokens. Every built-in style's generation
// settings, as the engine resolves them (the style's overrides on top of the engine defaults,
// buildStyledRequest -> resolveSampling), must end such a loop by themselves — without the
// generator's loop guard — within a few rounds, for every seed (greedy decoding repeats it until
// maxNewTokens). The styles sample more freely than the engine defaults (top-p 0.9), so a noise
// token now and then restarts the phrase once more; the 5-gram ban still ends each run.
import { describe, expect, it } from 'vitest';
import { Sampler } from '../../src/engine/sampler.js';
import { resolveSampling } from '../../src/engine/text-parts.js';
import { buildStyledRequest } from '../../src/styles/conversation.js';
import { LiveStyleRegistry } from '../../src/styles/registry.js';

// A model that, once it has said ` "Bakery"`, most wants to say it again; ending is its second
// choice. Tokens: 3 = ' "', 4 = 'B', 5 = 'akery', 6 = '",'; 2 = <|im_end|>; the rest is noise.
const EOS = 2;
const PHRASE = [3, 4, 5, 6];
const VOCAB = 4000;
function loopingModel(generated: readonly number[]): Float32Array {
  const logits = new Float32Array(VOCAB);
  for (let i = 0; i < VOCAB; i++) logits[i] = Math.sin(i * 12.9898 + generated.length * 78.233) * 0.5;
  const last = generated.at(-1);
  const at = last === undefined ? -1 : PHRASE.indexOf(last);
  logits[PHRASE[(at + 1) % PHRASE.length]!] = 9;
  logits[EOS] = 4;
  return logits;
}

describe('built-in styles against the seed\'s "Bakery" loop', () => {
  const registry = new LiveStyleRegistry();

  for (const style of registry.list()) {
    it(`${style.id}: its generation settings end the loop within a few rounds`, () => {
      const sampling = resolveSampling(buildStyledRequest(style, { question: '图片中有什么东西？' }).sampling);
      expect(sampling.greedy).toBe(false);
      expect(sampling.maxNewTokens).toBeLessThanOrEqual(512);
      for (let seed = 0; seed < 30; seed++) {
        const sampler = new Sampler({ ...sampling, seed });
        const tokens: number[] = [];
        let ended = false;
        while (tokens.length < sampling.maxNewTokens) {
          const id = sampler.next(loopingModel(tokens), tokens);
          if (id === EOS) {
            ended = true;
            break;
          }
          tokens.push(id);
        }
        expect(ended, `seed ${seed}: ${tokens.length} tokens without an end`).toBe(true);
        expect(tokens.filter((t) => t === 5).length).toBeLessThanOrEqual(4);
        expect(tokens.length).toBeLessThan(32);
      }
    });
  }
});
