import { PassThrough } from 'node:stream';
import { TsbuildError, isAbortError } from '../errors.js';
import type { LayerEntry } from '../layer/index.js';
import type { StoredLayer } from '../image/index.js';
import type { Digest } from '../oci/index.js';
import type { Store } from '../store/index.js';

/**
 * Writes a layer straight into the store in one pass: writeLayer into a PassThrough that
 * putBlob reads, hashed on both sides and checked to agree.
 *
 * When the store side fails (a full disk, an I/O error), the writer sees only its output
 * torn down, as an AbortError or a premature close; reporting that would make a full disk
 * look like Ctrl-C ("cancelled", exit 130). The store's error is the cause, so it wins,
 * unless the user's signal really did abort. A writer error of its own (a context file that
 * cannot be read, a size that changed) wins over the store's echo of it.
 */
export async function writeLayerToStore(
  store: Store,
  entries: AsyncIterable<LayerEntry> | Iterable<LayerEntry>,
  opts: { readonly sourceDateEpoch?: number | undefined; readonly signal?: AbortSignal | undefined; readonly what?: string },
): Promise<StoredLayer> {
  const { writeLayer } = await import('../layer/index.js');
  const pass = new PassThrough();
  const put = store.blobs.putBlob(pass, { signal: opts.signal });
  let written: { diffId: Digest; size: number };
  try {
    written = await writeLayer(entries, pass, { ...(opts.sourceDateEpoch !== undefined ? { sourceDateEpoch: opts.sourceDateEpoch } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
  } catch (e) {
    pass.destroy(e as Error);
    const putError = await put.then(
      () => undefined,
      (pe: unknown) => pe,
    );
    if (putError !== undefined && opts.signal?.aborted !== true && tornDown(e)) throw putError;
    throw e;
  }
  const stored = await put;
  if (stored.digest !== written.diffId) {
    throw new TsbuildError('DIGEST_MISMATCH', `${opts.what ?? 'layer'} ${stored.digest} differs from the written diff ID ${written.diffId}`);
  }
  return { diffId: stored.digest, size: stored.size };
}

/** The errors a stream reports when the other end went away rather than failing itself. */
function tornDown(e: unknown): boolean {
  if (isAbortError(e)) return true;
  const cause = e instanceof TsbuildError ? e.cause : e;
  const code = (cause as { code?: unknown } | undefined)?.code;
  return code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ERR_STREAM_DESTROYED' || code === 'EPIPE' || isAbortError(cause);
}
