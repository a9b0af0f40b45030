import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { TsbuildError } from '../errors.js';
import type { Digest } from '../oci/index.js';
import { errnoCode } from './atomic-file.js';
import { ownerState, parseTempOwner } from '../host/index.js';
import { pulledForms } from './compressed-layers.js';
import { liveLeases } from './lease.js';
import { findReachable, type RootRef } from './reachability.js';
import type { Store } from './store.js';

export interface GcOptions {
  /** Count what would go, remove nothing. */
  readonly dryRun?: boolean;
  /**
   * More roots besides index.json, e.g. the step cache's layers and configs. A descriptor
   * with a manifest, index or config media type is followed like a tag; a bare digest keeps
   * just that blob.
   */
  readonly extraRoots?: readonly RootRef[];
  /** Diff IDs whose snapshots must stay although no kept config names them. */
  readonly keepSnapshots?: readonly Digest[];
  /**
   * Unreferenced blobs and snapshots younger than this stay (default 1 h). This is the
   * store's answer to "a build wrote a blob and has not tagged it yet": blob writes take no
   * lock, so a gc between the write and the tag must not take the blob. A blob written again
   * gets a fresh mtime (it is a new file renamed over the old one).
   */
  readonly graceMs?: number;
  /** Temp entries whose name names no owner are removed after this (default 1 h). */
  readonly tempMaxAgeMs?: number;
  readonly signal?: AbortSignal | undefined;
}

export interface GcResult {
  readonly removedBlobs: number;
  readonly freedBytes: number;
  readonly removedTemps: number;
  readonly removedSnapshots: number;
  /** Unreferenced but younger than graceMs, so kept this time. */
  readonly keptYoung: number;
}

const HOUR = 60 * 60 * 1000;

/**
 * Deletes those of `digests` that nothing needs: not reachable from a tag (index.json) nor from
 * a live lease (another build or `run` using them now). Decided and done under the store lock,
 * so no tag or lease can appear in between. For a build's own blobs that must not outlive it (an
 * image only pushed, whose manifest names layers the store may not hold). Returns the deleted.
 */
export async function dropUnreferenced(store: Store, digests: readonly Digest[], opts: { readonly signal?: AbortSignal | undefined } = {}): Promise<Digest[]> {
  const { signal } = opts;
  return store.withLock(async () => {
    const index = await store.readIndex({ signal });
    const leased = await liveLeases(store);
    const reach = await findReachable(store, [...index.manifests, ...leased.roots], { signal });
    const deleted: Digest[] = [];
    for (const d of new Set(digests)) {
      if (reach.blobs.has(d) || reach.unpackedLayers.has(d)) continue;
      if (await store.blobs.deleteBlob(d)) deleted.push(d);
    }
    return deleted;
  }, { signal });
}

/**
 * Mark and sweep, under the store lock (so no tag changes in between):
 *  mark: everything reachable from index.json, `extraRoots` and live leases (reachability.ts, lease.ts),
 *  the uncompressed layers of reachable images kept packed (reachability.ts unpackedLayers),
 *  and the compressed blobs a pull kept for reachable layers (compressed-layers.ts pulledForms);
 *  sweep: unreferenced blobs, snapshots whose diff ID no kept config lists, and temp entries
 *  of processes that are gone.
 * A manifest or config that cannot be read or parsed stops gc with STORE_CORRUPT before anything
 * is removed: not knowing what it references, gc cannot know what is garbage.
 */
export async function collectGarbage(store: Store, opts: GcOptions = {}): Promise<GcResult> {
  const { signal } = opts;
  const dryRun = opts.dryRun ?? false;
  const grace = opts.graceMs ?? HOUR;
  return store.withLock(async () => {
    const index = await store.readIndex({ signal });
    // What running builds and runs hold (lease.ts) is live, however old or untagged.
    const leased = await liveLeases(store, { removeStale: !dryRun });
    const reach = await findReachable(store, [...index.manifests, ...(opts.extraRoots ?? []), ...leased.roots], { signal });
    const first = reach.invalid[0];
    if (first) {
      throw new TsbuildError('STORE_CORRUPT', `gc stopped: referenced blob ${first.digest} cannot be read`, {
        hint: 'run fsck; remove the tag that points at the damaged image, then run gc again',
        cause: first.error,
      });
    }
    // The registry's compressed blobs of kept layers, as a pull kept them (compressed-layers.ts).
    const pulled = new Set<Digest>();
    for (const id of reach.diffIds) for (const d of await pulledForms(store, id, { signal })) pulled.add(d);
    const now = Date.now();
    let removedBlobs = 0;
    let freedBytes = 0;
    let keptYoung = 0;
    for (const d of await store.blobs.listBlobs()) {
      signal?.throwIfAborted();
      // The uncompressed layers of an image kept packed (`pull --no-unpack`), made on first
      // use (adopt-layers.ts unpackStoredImage), stay with it.
      if (reach.blobs.has(d) || reach.unpackedLayers.has(d) || pulled.has(d)) continue;
      const st = await store.blobs.statBlob(d);
      if (!st) continue;
      if (now - st.mtimeMs < grace) {
        keptYoung++;
        continue;
      }
      if (dryRun || (await store.blobs.deleteBlob(d))) {
        removedBlobs++;
        freedBytes += st.size;
      }
    }

    const keepSnaps = new Set<Digest>([...reach.diffIds, ...(opts.keepSnapshots ?? []), ...leased.snapshots]);
    let removedSnapshots = 0;
    for (const id of await store.listSnapshots()) {
      signal?.throwIfAborted();
      if (keepSnaps.has(id)) continue;
      const st = await lstat(store.snapshotPath(id)).catch(() => undefined);
      if (!st) continue;
      if (now - st.mtimeMs < grace) {
        keptYoung++;
        continue;
      }
      if (dryRun || (await store.removeSnapshot(id, { signal }))) removedSnapshots++;
    }

    const removedTemps = await sweepTemps(store, { dryRun, maxAgeMs: opts.tempMaxAgeMs ?? HOUR, signal });
    return { removedBlobs, freedBytes, removedTemps, removedSnapshots, keptYoung };
  }, { signal });
}

/** Temp entries whose owner is gone; shared with fsck (which only lists them). */
export async function staleTemps(store: Store, maxAgeMs: number): Promise<Array<{ path: string; pid: number | undefined }>> {
  let names: string[];
  try {
    names = await readdir(store.paths.tmp);
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return [];
    throw e;
  }
  const now = Date.now();
  const out: Array<{ path: string; pid: number | undefined }> = [];
  for (const name of names) {
    const path = join(store.paths.tmp, name);
    const owner = parseTempOwner(name);
    if (owner) {
      // A live owner's temp stays however old it is: a 10 GB layer may download for hours.
      if (ownerState(owner) === 'dead') out.push({ path, pid: owner.pid });
      continue;
    }
    const st = await lstat(path).catch(() => undefined);
    if (st && now - st.mtimeMs > maxAgeMs) out.push({ path, pid: undefined });
  }
  return out;
}

async function sweepTemps(store: Store, opts: { dryRun: boolean; maxAgeMs: number; signal: AbortSignal | undefined }): Promise<number> {
  let removed = 0;
  for (const { path } of await staleTemps(store, opts.maxAgeMs)) {
    opts.signal?.throwIfAborted();
    if (!opts.dryRun) {
      const st = await lstat(path).catch(() => undefined);
      if (!st) continue;
      if (st.isDirectory()) await store.removeTree(path, opts.signal);
      else await rm(path, { force: true });
    }
    removed++;
  }
  return removed;
}
