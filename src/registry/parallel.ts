import { setMaxListeners } from 'node:events';
import pLimit from 'p-limit';

/**
 * `fn` over `items`, at most `concurrency` at once (p-limit). The first failure aborts the others
 * (through the signal `fn` gets) and is what rejects, but only once every started task has
 * settled: when the caller sees the error, no task is still writing to the store.
 */
export async function mapParallel<T, R>(
  items: readonly T[],
  concurrency: number,
  signal: AbortSignal | undefined,
  fn: (item: T, index: number, signal: AbortSignal) => Promise<R>,
): Promise<R[]> {
  const limit = pLimit(Math.max(1, concurrency));
  const inner = new AbortController();
  // Every request and stream of every task listens on this signal.
  setMaxListeners(0, inner.signal);
  const onAbort = (): void => inner.abort(signal?.reason);
  if (signal?.aborted === true) inner.abort(signal.reason);
  signal?.addEventListener('abort', onAbort, { once: true });
  let failed = false;
  let firstError: unknown;
  try {
    const settled = await Promise.allSettled(
      items.map((item, i) =>
        limit(async () => {
          // Queued tasks start after a failure only to stop at once.
          inner.signal.throwIfAborted();
          return fn(item, i, inner.signal);
        }).catch((e: unknown) => {
          if (!failed) {
            failed = true;
            firstError = e;
            inner.abort(e);
          }
          throw e;
        }),
      ),
    );
    if (failed) throw firstError;
    return settled.map((s) => (s as PromiseFulfilledResult<R>).value);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
