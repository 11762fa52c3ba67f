// The GenerationStream a RemoteEngine hands out: deltas as they arrive from the worker, then the
// result. It is the engine's own buffering stream (nothing is lost to a late consumer) that can
// also `restart()`: when the job starts over on another worker, deltas of the dead attempt that
// the consumer has not taken yet are dropped (what it did take, the scheduler's restart hook tells
// the core to forget).
import { DeltaStream } from '../engine/stream.js';

export class RemoteStream extends DeltaStream {
  /** The text of the current attempt so far (for a cancelled result). */
  text = '';

  override push(delta: string): void {
    if (this.settled || delta.length === 0) return;
    this.text += delta;
    super.push(delta);
  }

  restart(): void {
    this.dropBuffered();
    this.text = '';
  }
}
