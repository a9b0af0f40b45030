import { setTimeout as delay } from 'node:timers/promises';
import { RegistryError, isTemporary } from './errors.js';

/**
 * Bounded retries with exponential backoff and full jitter (AWS architecture blog, "Exponential
 * Backoff And Jitter"); a Retry-After from the registry replaces the computed delay (capped).
 * Only errors whose `temporary` flag is set are retried (errors.ts is the gate that sets it).
 */
export interface RetryPolicy {
  /** Total attempts including the first. */
  readonly attempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  /** A Retry-After longer than this is not waited for: the error is reported instead. */
  readonly maxRetryAfterMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  attempts: 5,
  baseDelayMs: 200,
  maxDelayMs: 10_000,
  maxRetryAfterMs: 60_000,
};

/** The wait before retry number `retry` (1-based), or undefined when not to retry. */
export function retryDelayMs(policy: RetryPolicy, retry: number, err: unknown, random: () => number = Math.random): number | undefined {
  if (!isTemporary(err) || retry >= policy.attempts) return undefined;
  const after = err instanceof RegistryError ? err.retryAfterMs : undefined;
  if (after !== undefined) return after > policy.maxRetryAfterMs ? undefined : after;
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (retry - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

export interface RetryHooks {
  readonly signal?: AbortSignal | undefined;
  /** Called before each wait; for logging. */
  readonly onRetry?: (err: unknown, retry: number, waitMs: number) => void;
}

/** Run `fn` until it succeeds, fails permanently, or the attempts are used up. */
export async function withRetries<T>(policy: RetryPolicy, fn: (attempt: number) => Promise<T>, hooks: RetryHooks = {}): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      const wait = retryDelayMs(policy, attempt, e);
      if (wait === undefined) throw e;
      hooks.onRetry?.(e, attempt, wait);
      await sleep(wait, hooks.signal);
    }
  }
}

export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  if (ms <= 0) return;
  await delay(ms, undefined, signal ? { signal } : {});
}
