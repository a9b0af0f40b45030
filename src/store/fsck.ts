import pLimit from 'p-limit';
import { isTsbuildError } from '../errors.js';
import type { Digest } from '../oci/index.js';
import { staleTemps } from './gc.js';
import { readLockHolder } from './lock.js';
import { ownerState } from '../host/index.js';
import { findReachable } from './reachability.js';
import { refNameOf } from './layout-index.js';
import type { Store } from './store.js';

/** One thing wrong with a store. */
export type FsckProblem =
  /** The file's content does not hash to its name. */
  | { readonly kind: 'blob-corrupt'; readonly digest: Digest; readonly actual: Digest; readonly path: string }
  /** A file under blobs/ whose name is not a digest. */
  | { readonly kind: 'stray-file'; readonly path: string }
  /** index.json names a manifest that is not in the store. */
  | { readonly kind: 'tag-missing-blob'; readonly name: string | undefined; readonly digest: Digest }
  /** A manifest names a config or layer that is not in the store. */
  | { readonly kind: 'missing-blob'; readonly digest: Digest; readonly referencedBy: Digest }
  /** A manifest, index or config that cannot be read or parsed. */
  | { readonly kind: 'invalid-json'; readonly digest: Digest; readonly message: string }
  /** A temp file or dir left behind by a process that is gone. */
  | { readonly kind: 'stale-temp'; readonly path: string; readonly pid: number | undefined }
  /** The lock file belongs to a process that is gone (the next locker takes it over). */
  | { readonly kind: 'stale-lock'; readonly pid: number };

export interface FsckOptions {
  /** Re-hash every blob (default true); false checks only structure and references. */
  readonly verifyContent?: boolean;
  /** Blobs hashed in parallel (default 2). */
  readonly concurrency?: number;
  readonly signal?: AbortSignal | undefined;
}

/**
 * Check a store without changing it (and without the lock: it only reads, and every write in
 * the store is an atomic rename). index.json itself was validated by openStore; a broken one
 * fails there with STORE_CORRUPT.
 */
export async function fsckStore(store: Store, opts: FsckOptions = {}): Promise<FsckProblem[]> {
  const { signal } = opts;
  const problems: FsckProblem[] = [];

  if (opts.verifyContent ?? true) {
    const limit = pLimit(opts.concurrency ?? 2);
    const blobs = await store.blobs.listBlobs();
    const results = await Promise.all(
      blobs.map((d) =>
        limit(async () => {
          if (!d.startsWith('sha256:')) return undefined;
          try {
            const r = await store.blobs.verifyBlob(d, { signal });
            return r.ok ? undefined : ({ kind: 'blob-corrupt', digest: d, actual: r.actual, path: store.blobs.blobPath(d) } as const);
          } catch (e) {
            if (isTsbuildError(e) && e.code === 'BLOB_NOT_FOUND') return undefined; // removed meanwhile
            throw e;
          }
        }),
      ),
    );
    for (const r of results) if (r) problems.push(r);
  }
  for (const path of await store.blobs.listStrayBlobFiles()) problems.push({ kind: 'stray-file', path });

  const index = await store.readIndex({ signal });
  for (const m of index.manifests) {
    if (!(await store.blobs.hasBlob(m.digest))) problems.push({ kind: 'tag-missing-blob', name: refNameOf(m), digest: m.digest });
  }
  const reach = await findReachable(store, index.manifests, { signal });
  for (const miss of reach.missing) {
    if (miss.parent !== undefined && !miss.fromIndex) {
      problems.push({ kind: 'missing-blob', digest: miss.digest, referencedBy: miss.parent });
    }
  }
  for (const bad of reach.invalid) problems.push({ kind: 'invalid-json', digest: bad.digest, message: bad.error.message });

  for (const t of await staleTemps(store, 60 * 60 * 1000)) problems.push({ kind: 'stale-temp', path: t.path, pid: t.pid });

  const holder = await readLockHolder(store.paths.lock);
  if (holder && ownerState(holder) === 'dead') problems.push({ kind: 'stale-lock', pid: holder.pid });
  return problems;
}
