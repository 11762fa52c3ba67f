import { describe, expect, it, vi } from 'vitest';
import { VistyleError } from '../../src/errors.js';
import { BotMetrics } from '../../src/metrics/metrics.js';
import { LimitError, Scheduler, type RunContext, type SchedulerOptions } from '../../src/scheduler/scheduler.js';

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const tick = (ms = 5) => new Promise((resolve) => setTimeout(resolve, ms));

function scheduler(options: Partial<SchedulerOptions> = {}) {
  return new Scheduler({ slots: 1, userInFlight: 1, userPerMinute: 0, maxQueueLength: 100, requestTimeoutMs: 10_000, ...options });
}

/** A job whose run waits until released (or aborted), recording what happened. */
function controlledJob(id: string, userKey = id) {
  const gate = deferred();
  const log = { positions: [] as number[], started: false, signal: undefined as AbortSignal | undefined };
  return {
    log,
    release: () => gate.resolve(),
    spec: {
      id,
      userKey,
      onPosition: (p: number) => log.positions.push(p),
      onStart: () => {
        log.started = true;
      },
      run: async ({ signal }: RunContext) => {
        log.signal = signal;
        await Promise.race([gate.promise, new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }))]);
        return `done ${id}`;
      },
    },
  };
}

describe('Scheduler', () => {
  it('reports each waiting job its position and updates it as the queue moves', async () => {
    const s = scheduler();
    const jobs = ['a', 'b', 'c', 'd'].map((id) => controlledJob(id));
    const handles = jobs.map((job) => s.submit(job.spec));
    await vi.waitFor(() => expect(jobs[0]!.log.started).toBe(true));
    expect(jobs[0]!.log.positions).toEqual([]); // it never waited
    expect(jobs.slice(1).map((j) => j.log.positions)).toEqual([[1], [2], [3]]);
    expect(s.status()).toMatchObject({ waiting: 3, inFlight: 1 });

    jobs[0]!.release();
    await expect(handles[0]!.result).resolves.toBe('done a');
    await vi.waitFor(() => expect(jobs[1]!.log.started).toBe(true));
    expect(jobs[2]!.log.positions).toEqual([2, 1]);
    expect(jobs[3]!.log.positions).toEqual([3, 2]);

    // cancelling a waiting job moves the ones behind it up
    expect(s.cancel('c')).toBe(true);
    await expect(handles[2]!.result).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(jobs[3]!.log.positions).toEqual([3, 2, 1]);
    expect(jobs[2]!.log.started).toBe(false);

    jobs[1]!.release();
    await vi.waitFor(() => expect(jobs[3]!.log.started).toBe(true));
    jobs[3]!.release();
    await expect(handles[3]!.result).resolves.toBe('done d');
    expect(jobs[2]!.log.started).toBe(false); // a cancelled job never runs
    expect(s.status()).toMatchObject({ waiting: 0, inFlight: 0 });
  });

  it('limits a user to their in-flight allowance, freeing it when the job ends', async () => {
    const s = scheduler({ userInFlight: 1 });
    const first = controlledJob('1', 'alice');
    const handle = s.submit(first.spec);
    let refused: unknown;
    try {
      s.submit(controlledJob('2', 'alice').spec);
    } catch (error) {
      refused = error;
    }
    expect(refused).toBeInstanceOf(LimitError);
    expect(refused).toMatchObject({ code: 'RATE_LIMITED', reason: 'in-flight' });
    // another user is not affected
    const bob = controlledJob('3', 'bob');
    const bobHandle = s.submit(bob.spec);
    first.release();
    await handle.result;
    const again = controlledJob('4', 'alice');
    const againHandle = s.submit(again.spec);
    bob.release();
    again.release();
    await expect(Promise.all([bobHandle.result, againHandle.result])).resolves.toEqual(['done 3', 'done 4']);
  });

  it('limits a user to N accepted requests per sliding minute', async () => {
    let now = 1_000_000;
    const s = scheduler({ userInFlight: 10, userPerMinute: 2, now: () => now });
    const run = async () => 'ok';
    await s.submit({ id: '1', userKey: 'u', run }).result;
    now += 10_000;
    await s.submit({ id: '2', userKey: 'u', run }).result;
    now += 10_000;
    let refused: LimitError | undefined;
    try {
      s.submit({ id: '3', userKey: 'u', run });
    } catch (error) {
      refused = error as LimitError;
    }
    expect(refused).toMatchObject({ code: 'RATE_LIMITED', reason: 'per-minute' });
    expect(refused!.details?.retryAfterMs).toBe(40_000); // the first one leaves the window in 40 s
    expect(() => s.submit({ id: '4', userKey: 'other', run })).not.toThrow();
    now += 40_001;
    await expect(s.submit({ id: '5', userKey: 'u', run }).result).resolves.toBe('ok');
  });

  it('refuses with QUEUE_FULL beyond the cap, counting only jobs that really wait', async () => {
    const s = scheduler({ maxQueueLength: 2, userInFlight: 5 });
    // three at once: one will start at once, two wait -> all accepted
    const jobs = ['a', 'b', 'c'].map((id) => controlledJob(id));
    const handles = jobs.map((job) => s.submit(job.spec));
    let refused: unknown;
    try {
      s.submit(controlledJob('d').spec);
    } catch (error) {
      refused = error;
    }
    expect(refused).toMatchObject({ code: 'QUEUE_FULL', reason: 'queue-full' });
    expect((refused as LimitError).details?.waiting).toBe(2);
    for (const job of jobs) job.release();
    await Promise.all(handles.map((h) => h.result));
  });

  it('times out a running job: the run is aborted with TIMEOUT and the next job runs', async () => {
    const s = scheduler({ requestTimeoutMs: 50 });
    const slow = controlledJob('slow');
    const next = controlledJob('next');
    const slowHandle = s.submit(slow.spec);
    const nextHandle = s.submit(next.spec);
    await expect(slowHandle.result).rejects.toMatchObject({ code: 'TIMEOUT' });
    expect(slow.log.signal?.aborted).toBe(true);
    await vi.waitFor(() => expect(next.log.started).toBe(true));
    next.release();
    await expect(nextHandle.result).resolves.toBe('done next');
  });

  it('cancels a running job through its AbortSignal', async () => {
    const s = scheduler();
    const job = controlledJob('x');
    const handle = s.submit(job.spec);
    await vi.waitFor(() => expect(job.log.started).toBe(true));
    expect(s.cancel('x')).toBe(true);
    await expect(handle.result).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(job.log.signal?.aborted).toBe(true);
    expect((job.log.signal?.reason as VistyleError).code).toBe('CANCELLED');
    expect(s.cancel('x')).toBe(false);
  });

  it('settles every accepted job exactly once under a mixed load (nothing lost)', async () => {
    const s = scheduler({ slots: 2, userInFlight: 3, maxQueueLength: 1000 });
    const settled = new Map<string, number>();
    const handles: Array<{ id: string; result: Promise<unknown> }> = [];
    let refused = 0;
    for (let i = 0; i < 60; i++) {
      const id = `job-${i}`;
      try {
        const handle = s.submit({
          id,
          userKey: `user-${i % 12}`,
          run: async ({ signal }) => {
            await new Promise((resolve, reject) => {
              const timer = setTimeout(resolve, (i * 7) % 5);
              signal.addEventListener('abort', () => {
                clearTimeout(timer);
                reject(signal.reason);
              });
            });
            if (i % 9 === 0) throw new VistyleError('ENGINE_CRASHED', 'boom');
            return i;
          },
        });
        handles.push(handle);
        const count = () => settled.set(id, (settled.get(id) ?? 0) + 1);
        handle.result.then(count, count);
      } catch (error) {
        expect(error).toBeInstanceOf(LimitError);
        refused += 1;
      }
      if (i % 11 === 5) s.cancel(`job-${i - 1}`);
    }
    await Promise.allSettled(handles.map((h) => h.result));
    await tick();
    expect(handles.length + refused).toBe(60);
    expect(handles.length).toBeGreaterThan(30);
    for (const h of handles) expect(settled.get(h.id)).toBe(1);
    expect(s.status()).toMatchObject({ waiting: 0, inFlight: 0 });
  });

  it('shuts down: waiting jobs get SHUTTING_DOWN, running ones may finish, new ones are refused', async () => {
    const s = scheduler({ userInFlight: 5 });
    const running = controlledJob('r');
    const waiting = controlledJob('w');
    const runningHandle = s.submit(running.spec);
    const waitingHandle = s.submit(waiting.spec);
    await vi.waitFor(() => expect(running.log.started).toBe(true));
    const stopping = s.shutdown(1_000);
    await expect(waitingHandle.result).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
    expect(() => s.submit(controlledJob('late').spec)).toThrow(expect.objectContaining({ code: 'SHUTTING_DOWN' }));
    running.release();
    await stopping;
    await expect(runningHandle.result).resolves.toBe('done r');
  });

  it('aborts running jobs that outlast the shutdown drain', async () => {
    const s = scheduler();
    const stuck = controlledJob('stuck');
    const handle = s.submit(stuck.spec);
    handle.result.catch(() => undefined);
    await vi.waitFor(() => expect(stuck.log.started).toBe(true));
    await s.shutdown(30);
    await expect(handle.result).rejects.toMatchObject({ code: 'SHUTTING_DOWN' });
    expect(stuck.log.signal?.aborted).toBe(true);
  });

  it('keeps Prometheus gauges and the wait histogram up to date', async () => {
    const metrics = new BotMetrics();
    const s = scheduler({ metrics, userInFlight: 5 });
    const a = controlledJob('a');
    const b = controlledJob('b');
    const ha = s.submit(a.spec);
    const hb = s.submit(b.spec);
    await vi.waitFor(() => expect(a.log.started).toBe(true));
    expect((await metrics.queueLength.get()).values[0]?.value).toBe(1);
    expect((await metrics.inFlight.get()).values[0]?.value).toBe(1);
    a.release();
    b.release();
    await Promise.all([ha.result, hb.result]);
    expect((await metrics.queueLength.get()).values[0]?.value).toBe(0);
    const text = await metrics.text();
    expect(text).toMatch(/vistyle_queue_wait_seconds_count 2/);
  });
});
