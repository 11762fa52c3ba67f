// Telegram also limits a bot as a whole: about 30 messages a second across all chats (Bot FAQ),
// besides the per-chat pace the EditScheduler lanes keep. Every lane operation (send, edit, draft)
// is admitted through this one limiter, evenly spaced, before it starts (the lane then counts its
// per-chat gap from there); final texts and status messages go before streamed updates when it is
// saturated (a burst of new users), since a late streamed edit costs nothing.
import Bottleneck from 'bottleneck';

export type Urgency = 'final' | 'stream';

export class GlobalPacer {
  private readonly limiter: Bottleneck;

  constructor(messagesPerSecond: number) {
    this.limiter = new Bottleneck({ minTime: Math.ceil(1000 / Math.max(messagesPerSecond, 0.1)) });
  }

  /** Resolves when the next call of this urgency may go out. */
  admit(urgency: Urgency): Promise<void> {
    return this.limiter.schedule({ priority: urgency === 'final' ? 3 : 6 }, () => Promise.resolve());
  }

  /** Calls waiting for their turn. */
  get waiting(): number {
    return this.limiter.counts().QUEUED;
  }
}
