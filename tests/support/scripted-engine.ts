// An engine that streams a given text (no model): for tests of what the adapters do with answers
// of known Markdown, length or content, which a random tiny model cannot give. What the real
// engine produces is covered by the end-to-end tests that use it.
import { setTimeout as sleep } from 'node:timers/promises';
import { DeltaStream } from '../../src/engine/stream.js';
import type { Engine, GenerateRequest, GenerationStream, ModelInfo } from '../../src/engine/types.js';
import { VistyleError } from '../../src/errors.js';

/** Streams `script(request)` in pieces of `pieceChars`, one every `deltaMs`. */
export class ScriptedEngine implements Engine {
  readonly requests: GenerateRequest[] = [];
  readonly info: ModelInfo = {
    modelDir: 'scripted',
    dtype: 'fp32',
    provider: 'cpu',
    maxContextTokens: 4096,
    imageSize: 56,
    imageTokens: 16,
    eosTokenIds: [1],
    loraTargets: [],
    slots: 1,
  };

  constructor(
    private readonly script: (request: GenerateRequest) => string,
    private readonly deltaMs = 20,
    private readonly pieceChars = 40,
  ) {}

  generate(request: GenerateRequest, options: { signal?: AbortSignal } = {}): GenerationStream {
    this.requests.push(request);
    const text = this.script(request);
    const stream = new DeltaStream();
    void (async () => {
      const started = Date.now();
      for (let i = 0; i < text.length; i += this.pieceChars) {
        if (options.signal?.aborted) {
          stream.fail(options.signal.reason ?? new VistyleError('CANCELLED', 'cancelled'));
          return;
        }
        stream.push(text.slice(i, i + this.pieceChars));
        await sleep(this.deltaMs);
      }
      const totalMs = Date.now() - started;
      stream.end({
        text,
        tokens: [...text].map((_, i) => i),
        promptTokens: 10,
        ttftMs: this.deltaMs,
        tokensPerSecond: 100,
        finishReason: 'eos',
        timings: { imageMs: 0, visionMs: 0, prefillMs: 0, decodeMs: totalMs, totalMs },
        cachedPromptTokens: 0,
        imageCount: 1,
        droppedMessages: 0,
      });
    })();
    return stream;
  }

  async close(): Promise<void> {}
}
