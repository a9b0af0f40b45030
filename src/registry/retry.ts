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

/**
 * The retry budget of one operation (one manifest GET, one blob download with its resumes, one
 * blob upload with its sessions): the only place that decides whether to try again, from the
 * error's `temporary` flag alone.
 *
 * Contract: every attempt of the operation, at whatever depth it is made (the exchange, a resumed
 * body, a new upload session), reports its failure to the same budget, so failures in a row never
 * exceed `policy.attempts` however the operation is structured: a nested loop that catches the
 * error the budget already gave up on and reports it again is refused at once. `progressed()`
 * starts the count afresh when the operation moved forward (bytes received, a chunk accepted).
 */
export class RetryBudget {
  readonly #policy: RetryPolicy;
  readonly #hooks: RetryHooks;
  #failures = 0;

  constructor(policy: RetryPolicy, hooks: RetryHooks = {}) {
    this.#policy = policy;
    this.#hooks = hooks;
  }

  /** One attempt only (a request whose body cannot be replayed, a best-effort cancel). */
  static single(): RetryBudget {
    return new RetryBudget({ ...DEFAULT_RETRY_POLICY, attempts: 1 });
  }

  /** After a failed attempt: wait and return (try again), or throw `err` (give up). */
  async failed(err: unknown): Promise<void> {
    const wait = retryDelayMs(this.#policy, this.#failures + 1, err);
    if (wait === undefined) throw err;
    this.#failures++;
    this.#hooks.onRetry?.(err, this.#failures, wait);
    await sleep(wait, this.#hooks.signal);
  }

  /** The operation moved forward: the next failure is the first of a new streak. */
  progressed(): void {
    this.#failures = 0;
  }
}

export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  if (ms <= 0) return;
  await delay(ms, undefined, signal ? { signal } : {});
}
