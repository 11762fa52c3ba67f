// Drives one request's AnswerSink for the core, keeping the promises the contract makes to
// adapters: calls are serialised (a method is never called while an earlier call's promise is
// pending), `progress` is coalesced to the latest text, nothing follows the one terminal call, and
// errors thrown by non-terminal methods are logged, never fatal. It also finishes every text the
// adapter gets: status lines translated into the request's language, streamed and final answers
// cleaned of control characters, and a blank final answer replaced by a polite one, so that
// adapters never translate or re-check anything themselves.
import type { ErrorCode } from '../errors.js';
import { errorFields, type Logger } from '../log.js';
import { stripControlChars } from './control-chars.js';
import { t } from './i18n.js';
import type { AnswerSink, Language, StatusText } from './types.js';

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
    private readonly language: Language,
  ) {}

  get terminated(): boolean {
    return this.ended;
  }

  queued(position: number): void {
    this.enqueue('queued', () => this.sink.queued(position, this.status(t(this.language, 'queued', { position }))));
  }

  started(): void {
    this.enqueue('started', () => this.sink.started(this.status(t(this.language, 'thinking'))));
  }

  /** The answer so far; blank text (after cleaning) is not shown. */
  progress(textSoFar: string): void {
    if (this.ended) return;
    const text = stripControlChars(textSoFar);
    if (text.trim() === '') return;
    this.latestProgress = text;
    if (this.progressQueued) return;
    this.progressQueued = true;
    this.enqueue('progress', () => {
      this.progressQueued = false;
      const text = this.latestProgress;
      this.latestProgress = undefined;
      return text === undefined ? undefined : this.sink.progress(text);
    });
  }

  /**
   * The terminal success call with the model's answer, cleaned (control characters, surrounding
   * whitespace) and, when nothing is left, replaced by the polite "nothing to say" text: the
   * adapter always gets something to show. `notices` (already translated) follow the answer.
   * Resolves with the text delivered; rejects when the adapter could not deliver it.
   */
  async finished(answer: string, notices: readonly string[] = []): Promise<{ messageIds: string[]; text: string }> {
    if (this.ended) throw new Error('sink already terminated');
    this.ended = true;
    // Notices (pictures skipped, old turns left out) go under the answer, a paragraph each.
    const text = [finalAnswerText(answer, this.language), ...notices.map((notice) => stripControlChars(notice).trim()).filter(Boolean)].join('\n\n');
    await this.drain();
    const delivered = await this.sink.finished(text);
    return { text, messageIds: Array.isArray(delivered?.messageIds) ? delivered.messageIds.map(String) : [] };
  }

  /** The terminal failure call; never rejects. `refused`: before the request entered the queue. */
  async failed(userMessage: string, code: ErrorCode, refused: boolean): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    await this.drain();
    try {
      await this.sink.failed(userMessage, code, { refused });
    } catch (error) {
      this.logger.warn({ error: errorFields(error), code }, 'adapter failed to show a failure message');
    }
  }

  private status(text: string): StatusText {
    return { text, cancelLabel: t(this.language, 'cancelButton') };
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

/** What a user is shown for the model's final answer: cleaned, never blank. */
export function finalAnswerText(answer: string, language: Language): string {
  const text = stripControlChars(answer).trim();
  return text === '' ? t(language, 'emptyAnswer') : text;
}
