// Retrying network work with exponential backoff and jitter.
import { setTimeout as delay } from 'node:timers/promises';
import { isRetryable } from './http.js';

export interface RetryPolicy {
  /** Attempts after the first one. */
  retries: number;
  /** First wait; doubles on each further failure. */
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { retries: 5, baseDelayMs: 1000, maxDelayMs: 30_000 };

/** Wait before retry number `failures` (1 = first retry): base·2^(n-1), capped, ±25% jitter. */
export function backoffDelayMs(failures: number, policy: RetryPolicy): number {
  const raw = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, failures - 1));
  return Math.round(raw * (0.75 + Math.random() * 0.5));
}

export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (ms <= 0) return;
  await delay(ms, undefined, signal ? { signal } : undefined);
}

export interface RetryNotice {
  /** The failure that is being retried. */
  error: unknown;
  /** Retry number, 1-based. */
  attempt: number;
  retries: number;
  delayMs: number;
}

/** Runs `operation`, retrying network failures, 5xx and 429 per the policy. */
export async function withRetries<T>(
  operation: () => Promise<T>,
  policy: RetryPolicy,
  onRetry?: (notice: RetryNotice) => void,
  signal?: AbortSignal,
  /** Extra say on whether a failure is retried, given the failures so far. */
  allowRetry: (error: unknown, failures: number) => boolean = () => true,
): Promise<T> {
  for (let failures = 0; ; ) {
    try {
      return await operation();
    } catch (error) {
      if (signal?.aborted || !isRetryable(error) || failures >= policy.retries || !allowRetry(error, failures)) throw error;
      failures++;
      const delayMs = backoffDelayMs(failures, policy);
      onRetry?.({ error, attempt: failures, retries: policy.retries, delayMs });
      await sleep(delayMs, signal);
    }
  }
}
