// Telegram also limits a bot as a whole: about 30 messages a second across all chats (Bot FAQ),
// besides the per-chat pace the EditScheduler lanes keep. Every lane operation (send, edit, draft)
// is admitted through this one gate, evenly spaced, before it starts (the lane then counts its
// per-chat gap from there); final texts and status messages go before streamed updates when it is
// saturated (a burst of new users), since a late streamed edit costs nothing.
//
// The spacing is measured between the times admissions really happen, one at a time. Bottleneck's
// own minTime spaces the times it *planned* (each queued job gets its timer in advance), so after
// the event loop has been busy for a while the overdue timers all fire together and a burst of
// calls goes out at once: more than 30 in a second. Bottleneck still orders the waiting calls by
// urgency; the gap is kept here.
import Bottleneck from 'bottleneck';

export type Urgency = 'final' | 'stream';

export class GlobalPacer {
  private readonly limiter = new Bottleneck({ maxConcurrent: 1 });
  private readonly gapMs: number;
  private lastAdmittedAt = -Infinity;

  constructor(messagesPerSecond: number) {
    this.gapMs = Math.ceil(1000 / Math.max(messagesPerSecond, 0.1));
  }

  /** Resolves when the next call of this urgency may go out. */
  admit(urgency: Urgency): Promise<void> {
    return this.limiter.schedule({ priority: urgency === 'final' ? 3 : 6 }, () => this.takeTurn());
  }

  private async takeTurn(): Promise<void> {
    // a timer can fire late, or early by a millisecond's rounding: wait until really due
    let wait: number;
    while ((wait = this.lastAdmittedAt + this.gapMs - performance.now()) > 0) {
      await new Promise((resolve) => setTimeout(resolve, Math.ceil(wait)));
    }
    this.lastAdmittedAt = performance.now();
  }
}
