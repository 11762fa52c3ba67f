// The real engine (worker thread, tiny model) with a record of what it was asked and how each
// answer ended, so tests can see the styled prompt and that a cancelled request really stopped.
import type { AppConfig } from '../../../src/config/config.js';
import { engineOptionsOf } from '../../../src/config/config.js';
import { createEngine } from '../../../src/engine/engine.js';
import type { Engine, GenerateRequest, GenerationResult, GenerationStream } from '../../../src/engine/types.js';

export interface EngineCall {
  request: GenerateRequest;
  result: Promise<GenerationResult>;
}

export class RecordingEngine implements Engine {
  readonly calls: EngineCall[] = [];
  private hold?: Promise<void>;
  constructor(private readonly inner: Engine) {}

  get info() {
    return this.inner.info;
  }

  /**
   * Holds the next request at the engine's door until release() or until it is cancelled, so a
   * test can act while that request is certainly in flight (the tiny model answers in a fraction
   * of a second, faster than a browser click under load). A cancelled request then reaches the
   * real engine with its signal already aborted, and the engine ends it as it ends any other.
   */
  holdNext(): { release(): void } {
    let release!: () => void;
    this.hold = new Promise<void>((resolve) => (release = resolve));
    return { release };
  }

  generate(request: GenerateRequest, options?: { signal?: AbortSignal }): GenerationStream {
    const hold = this.hold;
    this.hold = undefined;
    if (!hold) {
      const stream = this.inner.generate(request, options);
      this.calls.push({ request, result: stream.result });
      return stream;
    }
    const signal = options?.signal;
    const cancelled = new Promise<void>((resolve) => (signal?.aborted ? resolve() : signal?.addEventListener('abort', () => resolve(), { once: true })));
    const started = Promise.race([hold, cancelled]).then(() => this.inner.generate(request, options));
    const result = started.then((stream) => stream.result);
    this.calls.push({ request, result });
    return {
      result,
      async *[Symbol.asyncIterator]() {
        yield* await started;
      },
    };
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** An engineFactory for runStart/runServe that keeps the engine it made. */
export function recordingEngineFactory(options: { delayMs?: number } = {}) {
  const holder: { engine?: RecordingEngine } = {};
  const factory = async (config: AppConfig): Promise<Engine> => {
    if (options.delayMs) await new Promise((resolve) => setTimeout(resolve, options.delayMs));
    // the engine `vistyle start` makes, with one slot unless the test asks for more (the queue
    // tests need requests waiting while one runs; the engine's own default is 4)
    const inner = await createEngine({ ...engineOptionsOf(config), slots: config.limits.engineSlots ?? 1 });
    holder.engine = new RecordingEngine(inner);
    return holder.engine;
  };
  return { factory, holder };
}
