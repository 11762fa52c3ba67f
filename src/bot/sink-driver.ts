// Drives one request's AnswerSink for the core, keeping the promises the contract makes to
// adapters: calls are serialised (a method is never called while an earlier call's promise is
// pending), `progress` is coalesced to the latest text, nothing follows the one terminal call, and
// errors thrown by non-terminal methods are logged, never fatal.
import type { ErrorCode } from '../errors.js';
import { errorFields, type Logger } from '../log.js';
import type { AnswerSink } from './types.js';

/** A slow adapter delays the terminal call by at most this much. */
const DRAIN_LIMIT_MS = 10_000;

export class SinkDriver {
  private chain: Promise<void> = Promise.resolve();
  private latestProgress: string | undefined;
  private progressQueued = false;
  private ended = false;

  constructor(
    private readonly sink: AnswerSink,
    private readonly logger: Logger,
  ) {}

  get terminated(): boolean {
    return this.ended;
  }

  queued(position: number): void {
    this.enqueue('queued', () => this.sink.queued(position));
  }

  started(): void {
    this.enqueue('started', () => this.sink.started());
  }

  progress(textSoFar: string): void {
    if (this.ended) return;
    this.latestProgress = textSoFar;
    if (this.progressQueued) return;
    this.progressQueued = true;
    this.enqueue('progress', () => {
      this.progressQueued = false;
      const text = this.latestProgress;
      this.latestProgress = undefined;
      return text === undefined ? undefined : this.sink.progress(text);
    });
  }

  /** The terminal success call; rejects when the adapter could not deliver the answer. */
  async finished(text: string): Promise<{ messageIds: string[] }> {
    if (this.ended) throw new Error('sink already terminated');
    this.ended = true;
    await this.drain();
    const delivered = await this.sink.finished(text);
    return { messageIds: Array.isArray(delivered?.messageIds) ? delivered.messageIds.map(String) : [] };
  }

  /** The terminal failure call; never rejects. */
  async failed(userMessage: string, code: ErrorCode): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.drain();
    try {
      await this.sink.failed(userMessage, code);
    } catch (error) {
      this.logger.warn({ error: errorFields(error), code }, 'adapter failed to show a failure message');
    }
  }

  private enqueue(method: string, call: () => void | Promise<void>): void {
    if (this.ended) return;
    this.chain = this.chain
      .then(() => (this.ended ? undefined : call())) // once ended, calls still waiting are dropped
      .catch((error: unknown) => this.logger.warn({ error: errorFields(error), method }, 'adapter sink call failed'));
  }

  private async drain(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.chain,
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          this.logger.warn({ limitMs: DRAIN_LIMIT_MS }, 'adapter sink is slow; sending the terminal call anyway');
          resolve();
        }, DRAIN_LIMIT_MS);
      }),
    ]);
    clearTimeout(timer);
  }
}
