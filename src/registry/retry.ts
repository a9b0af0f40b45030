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
 * Contract: every attempt of the operation, at whatever depth it is made, reports its failure to
 * the same budget, naming its step (`transfer`, `chunk`, `session`, ...). A step that keeps
 * failing is tried exactly `policy.attempts` times; an error the budget gave up on is final, so a
 * loop around the failed step that reports it again gets it back at once (no retry loop can
 * multiply another). `progressed(step)` starts a step's count afresh when the operation moved
 * forward (bytes received, a chunk accepted): the count bounds failures in a row.
 */
export class RetryBudget {
  readonly #policy: RetryPolicy;
  readonly #hooks: RetryHooks;
  readonly #failures = new Map<string, number>();
  readonly #gaveUp = new WeakSet<object>();

  constructor(policy: RetryPolicy, hooks: RetryHooks = {}) {
    this.#policy = policy;
    this.#hooks = hooks;
  }

  /** One attempt only: for a request whose body cannot be replayed, or a best-effort cancel. */
  static single(): RetryBudget {
    return new RetryBudget({ ...DEFAULT_RETRY_POLICY, attempts: 1 });
  }

  /** After a failed attempt at `step`: wait and return (try again), or throw `err` (give up). */
  async failed(err: unknown, step = 'request'): Promise<void> {
    const final = typeof err === 'object' && err !== null && this.#gaveUp.has(err);
    const retry = (this.#failures.get(step) ?? 0) + 1;
    const wait = final ? undefined : retryDelayMs(this.#policy, retry, err);
    if (wait === undefined) {
      if (typeof err === 'object' && err !== null) this.#gaveUp.add(err);
      throw err;
    }
    this.#failures.set(step, retry);
    this.#hooks.onRetry?.(err, retry, wait);
    await sleep(wait, this.#hooks.signal);
  }

  /** `step` moved forward: its next failure is the first of a new streak. */
  progressed(step = 'request'): void {
    this.#failures.delete(step);
  }
}

export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  if (ms <= 0) return;
  await delay(ms, undefined, signal ? { signal } : {});
}
