// Device memory planning for WebGPU: weights + twice every slot's cache + prefix cache +
// activations, refused with the numbers (and what would fit) when the GPU is too small.
import { describe, expect, it } from 'vitest';
import { activationBytes, assertDeviceMemoryFits, deviceMemoryBudget, parseNvidiaSmiMemory, planDeviceMemory } from '../../src/engine/device-memory.js';
import { bytesPerPosition } from '../../src/engine/kv-cache.js';
import { loadConfig } from '../../src/config/config.js';
import { isVistyleError } from '../../src/errors.js';

const MiB = 2 ** 20;
// llava-interleave-qwen-0.5b in fp16: 24 layers, 16 kv heads of 64
const qwen = { numLayers: 24, numKvHeads: 16, headDim: 64, dtype: 'float16' as const };

describe('device memory plan', () => {
  it('counts the cache twice per slot (a run\'s past and present are both alive)', () => {
    const rowBytes = bytesPerPosition(qwen) * 2048; // 96 KiB per position
    expect(bytesPerPosition(qwen)).toBe(96 * 1024);
    const plan = planDeviceMemory({ weightsBytes: 1000 * MiB, rowBytes, rows: 4, prefixCacheBytes: 256 * MiB, activationBytes: 50 * MiB });
    expect(plan.cacheBytes).toBe(2 * 4 * 192 * MiB);
    expect(plan.totalBytes).toBe((1000 + 1536 + 256 + 50) * MiB);
  });

  it('refuses a context/slots combination that cannot fit, with the numbers and what fits', () => {
    const rowBytes = bytesPerPosition(qwen) * 2048;
    const plan = planDeviceMemory({ weightsBytes: 1000 * MiB, rowBytes, rows: 16, prefixCacheBytes: 0, activationBytes: 0 });
    let error: unknown;
    try {
      assertDeviceMemoryFits(plan, { bytes: 4096 * MiB, source: 'GPU 0 (nvidia-smi)' }, { maxContextTokens: 2048, slots: 16 });
    } catch (e) {
      error = e;
    }
    expect(isVistyleError(error, 'CONFIG_INVALID')).toBe(true);
    const message = (error as Error).message;
    expect(message).toContain('VISTYLE_MAX_CONTEXT_TOKENS=2048 with VISTYLE_ENGINE_SLOTS=16 needs 7144 MiB');
    expect(message).toContain('KV cache 6144 MiB = 2 x 16 x 192 MiB');
    expect(message).toContain('GPU 0 (nvidia-smi) has 4096 MiB');
    expect(message).toContain('8 slot(s) fit'); // (4096 - 1000) / 384
    expect(message).not.toContain('\n');
    // the same within budget passes
    assertDeviceMemoryFits(plan, { bytes: 8192 * MiB, source: 'x' }, { maxContextTokens: 2048, slots: 16 });
  });

  it('activations: the batch\'s logits and one prefill chunk', () => {
    expect(activationBytes({ rows: 4, vocabSize: 152000, hiddenSize: 1024, intermediateSize: 2816, chunk: 0, bytesPerValue: 2 })).toBe(4 * 152000 * 4);
  });

  it('the budget: VISTYLE_DEVICE_MEMORY_MB first, nvidia-smi\'s figure otherwise', async () => {
    expect(parseNvidiaSmiMemory('81559\n')).toBe(81559 * MiB);
    expect(parseNvidiaSmiMemory('[N/A]\n')).toBeUndefined();
    expect(await deviceMemoryBudget({ deviceMemoryMB: 2048, deviceId: 0 })).toEqual({ bytes: 2048 * MiB, source: 'VISTYLE_DEVICE_MEMORY_MB' });
    expect(loadConfig({ VISTYLE_DEVICE_MEMORY_MB: '24576' }).model.deviceMemoryMB).toBe(24576);
  });
});
