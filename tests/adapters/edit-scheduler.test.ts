import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Writable } from 'node:stream';
import { EditScheduler, EditSchedulers } from '../../adapters/shared/edit-scheduler.js';
import { createLogger, registerSecret } from '../../src/log.js';

class RateLimited extends Error {
  constructor(readonly retryAfterSec: number) {
    super('429: Too Many Requests');
  }
}
const retryAfterMs = (error: unknown) => (error instanceof RateLimited ? error.retryAfterSec * 1000 : undefined);

describe('EditScheduler', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('logs a failed streamed edit without the credentials the platform error carries', async () => {
    const lines: string[] = [];
    const destination = new Writable({ write: (chunk, _enc, done) => (lines.push(String(chunk)), done()) });
    const logger = createLogger({ level: 'warn', destination });
    registerSecret('bot-token-123456');
    class PlatformError extends Error {
      // like discord.js's DiscordAPIError: the request URL, with a credential in it, is a property
      readonly url = 'https://discord.test/api/webhooks/1/interaction-token-abcdef/messages/@original';
    }
    const lane = new EditScheduler({ minIntervalMs: 10, retryAfterMs, logger });
    lane.update('m1', 'partial', async () => {
      throw new PlatformError('request to /botbot-token-123456/editMessageText failed');
    });
    await vi.advanceTimersByTimeAsync(0);
    const logged = lines.join('');
    expect(logged).toContain('streamed edit failed');
    expect(logged).not.toContain('bot-token-123456');
    expect(logged).not.toContain('interaction-token-abcdef');
  });

  it('keeps the minimum interval between edits and coalesces to the latest text', async () => {
    const sent: Array<{ at: number; text: string }> = [];
    const t0 = Date.now();
    const send = async (text: string) => void sent.push({ at: Date.now() - t0, text });
    const lane = new EditScheduler({ minIntervalMs: 1000, retryAfterMs });
    lane.update('m1', 'a', send);
    await vi.advanceTimersByTimeAsync(0);
    for (const text of ['ab', 'abc', 'abcd']) lane.update('m1', text, send);
    await vi.advanceTimersByTimeAsync(999);
    expect(sent.map((s) => s.text)).toEqual(['a']);
    await vi.advanceTimersByTimeAsync(1);
    expect(sent.map((s) => s.text)).toEqual(['a', 'abcd']);
    expect(sent[1]!.at).toBeGreaterThanOrEqual(1000);
  });

  it('honours retry_after on a 429, grows the gap, and still delivers the final text', async () => {
    const sent: Array<{ at: number; text: string }> = [];
    const t0 = Date.now();
    let failNext = true;
    const send = async (text: string) => {
      if (failNext) {
        failNext = false;
        throw new RateLimited(5);
      }
      sent.push({ at: Date.now() - t0, text });
    };
    const lane = new EditScheduler({ minIntervalMs: 1000, retryAfterMs });
    lane.update('m1', 'partial', send);
    await vi.advanceTimersByTimeAsync(0);
    expect(lane.intervalMs).toBe(2000);
    const done = lane.final('m1', () => send('final answer'));
    lane.update('m1', 'late partial', send); // sealed: must not overwrite the final
    await vi.advanceTimersByTimeAsync(4999);
    expect(sent).toEqual([]);
    await vi.advanceTimersByTimeAsync(100);
    await done;
    expect(sent).toEqual([{ at: expect.any(Number), text: 'final answer' }]);
    expect(sent[0]!.at).toBeGreaterThanOrEqual(5000);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(sent.map((s) => s.text)).toEqual(['final answer']);
  });

  it('retries a final operation through several 429s and resolves with its value', async () => {
    let attempts = 0;
    const lane = new EditScheduler({ minIntervalMs: 100, retryAfterMs });
    const done = lane.final(undefined, async () => {
      attempts += 1;
      if (attempts < 3) throw new RateLimited(1);
      return 'msg-42';
    });
    await vi.advanceTimersByTimeAsync(5_000);
    await expect(done).resolves.toBe('msg-42');
    expect(attempts).toBe(3);
  });

  it('rejects a final operation with the platform error when it is not a rate limit', async () => {
    const lane = new EditScheduler({ minIntervalMs: 100, retryAfterMs });
    const done = lane.final('m', async () => {
      throw new Error("Bad Request: can't parse entities");
    });
    await expect(done).rejects.toThrow(/parse entities/);
  });

  it('drops a failed streamed edit (not a rate limit) and carries on', async () => {
    const sent: string[] = [];
    let calls = 0;
    const send = async (text: string) => {
      calls += 1;
      if (calls === 1) throw new Error('network hiccup');
      sent.push(text);
    };
    const lane = new EditScheduler({ minIntervalMs: 10, retryAfterMs });
    lane.update('m', 'one', send);
    await vi.advanceTimersByTimeAsync(0);
    lane.update('m', 'two', send);
    await vi.advanceTimersByTimeAsync(20);
    expect(sent).toEqual(['two']);
  });

  it('retries a rate-limited streamed edit when no newer text arrived', async () => {
    const sent: string[] = [];
    let calls = 0;
    const send = async (text: string) => {
      calls += 1;
      if (calls === 1) throw new RateLimited(2);
      sent.push(text);
    };
    const lane = new EditScheduler({ minIntervalMs: 100, retryAfterMs });
    lane.update('m', 'only', send);
    await vi.advanceTimersByTimeAsync(1_900);
    expect(sent).toEqual([]);
    await vi.advanceTimersByTimeAsync(300);
    expect(sent).toEqual(['only']);
  });

  it('shrinks a grown gap back after a run of successes', async () => {
    let fail = true;
    const send = async () => {
      if (fail) {
        fail = false;
        throw new RateLimited(0);
      }
    };
    const lane = new EditScheduler({ minIntervalMs: 100, retryAfterMs, decayAfter: 2 });
    lane.update('m', 'x', send);
    await vi.advanceTimersByTimeAsync(0);
    expect(lane.intervalMs).toBe(200);
    await vi.advanceTimersByTimeAsync(1_000); // the retried edit succeeds: one success
    expect(lane.intervalMs).toBe(200);
    const done = lane.final(undefined, async () => undefined); // second success in a row
    await vi.advanceTimersByTimeAsync(1_000);
    await done;
    expect(lane.intervalMs).toBe(100);
  });

  it('close() rejects waiting finals', async () => {
    const lane = new EditScheduler({ minIntervalMs: 1000 });
    await lane.final(undefined, async () => undefined);
    const waiting = lane.final(undefined, async () => undefined);
    lane.close();
    await expect(waiting).rejects.toMatchObject({ code: 'CANCELLED' });
  });

  it('EditSchedulers keeps one lane per chat and shares its pacing across messages', async () => {
    const lanes = new EditSchedulers(() => ({ minIntervalMs: 1000 }));
    expect(lanes.forChat('c1')).toBe(lanes.forChat('c1'));
    expect(lanes.forChat('c2')).not.toBe(lanes.forChat('c1'));
    const at: number[] = [];
    const t0 = Date.now();
    const lane = lanes.forChat('c1');
    lane.update('m1', 'a', async () => void at.push(Date.now() - t0));
    lane.update('m2', 'b', async () => void at.push(Date.now() - t0));
    await vi.advanceTimersByTimeAsync(1500);
    expect(at).toHaveLength(2);
    expect(at[1]! - at[0]!).toBeGreaterThanOrEqual(1000);
  });
});
