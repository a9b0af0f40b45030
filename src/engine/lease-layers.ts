import { TsbuildError } from '../errors.js';
import type { StoredLayer } from '../image/index.js';
import { sha256Digest, type Digest } from '../oci/index.js';
import type { Lease, Store } from '../store/index.js';

// Apart from snapshots.ts so that a build can hold its layers without loading the layer
// applier and the sandbox (a fully cached build never unpacks anything).

/**
 * Layers of a lease whose blobs were found after the lease held them: held since, so no gc
 * can have removed them, and they need no second look. A build holds the whole stack after
 * every step; without this it would stat the base's layers again at every step.
 */
const found = new WeakMap<Lease, Set<Digest>>();

/**
 * Layers deferred into a lease (deferLayers) and not yet checked after a hold, with what they
 * belong to (for the error).
 */
const deferred = new WeakMap<Lease, Map<Digest, string>>();

function stackOf(layers: readonly StoredLayer[]): { diffIds: Digest[]; roots: Digest[]; snapshots: Digest[] } {
  const diffIds = layers.map((l) => l.diffId);
  const chains = diffIds.map((_, i) => chainId(diffIds.slice(0, i + 1)));
  // Their blobs, and every snapshot lowerDirsFor may use for them: one per diff ID, one per chain.
  return { diffIds, roots: diffIds, snapshots: [...diffIds, ...chains] };
}

/**
 * Holds a stack of layers in `lease`, then checks the blobs are still there: a concurrent
 * `rmi` or `prune` may have removed them between finding them and the lease. Also writes and
 * checks whatever was deferred before.
 */
export async function leaseLayers(lease: Lease, store: Store, layers: readonly StoredLayer[], what: string, signal?: AbortSignal): Promise<void> {
  const { diffIds, roots, snapshots } = stackOf(layers);
  const before = [...(deferred.get(lease) ?? [])];
  await lease.hold({ roots, snapshots }, { signal });
  await checkHeld(lease, store, [...before, ...diffIds.map((d): [Digest, string] => [d, what])]);
}

/**
 * A stack of layers just found in the store (a cache hit, a base image) goes into `lease`
 * without a write: a fully cached build would otherwise rewrite its lease after every step.
 * The layers are protected from the next `claimLeased` or `leaseLayers` on, which the build
 * calls before it reads them (a cache miss, a mount of another stage, an ID lookup in
 * /etc/passwd) and before it tags its image; a concurrent `rmi` or `prune` in between shows
 * then, as the same BLOB_NOT_FOUND as without the deferral.
 */
export function deferLayers(lease: Lease, layers: readonly StoredLayer[], what: string): void {
  const { diffIds, roots, snapshots } = stackOf(layers);
  lease.defer({ roots, snapshots });
  const known = found.get(lease);
  let pending = deferred.get(lease);
  if (!pending) deferred.set(lease, (pending = new Map()));
  for (const d of diffIds) if (!known?.has(d) && !pending.has(d)) pending.set(d, what);
}

/** Writes what was deferred into `lease` and checks it is still in the store (no-op if nothing was). */
export async function claimLeased(lease: Lease, store: Store, signal?: AbortSignal): Promise<void> {
  const pending = deferred.get(lease);
  if (!pending?.size) return;
  const before = [...pending];
  await lease.hold({}, { signal });
  await checkHeld(lease, store, before);
}

/**
 * Checks layers held by a write that has returned. Deferred ones leave the pending list only
 * here (what was deferred during that write is written and checked by the next one).
 */
async function checkHeld(lease: Lease, store: Store, held: ReadonlyArray<readonly [Digest, string]>): Promise<void> {
  let known = found.get(lease);
  if (!known) found.set(lease, (known = new Set()));
  const check = new Map<Digest, string>();
  for (const [d, what] of held) if (!known.has(d) && !check.has(d)) check.set(d, what);
  const unchecked = [...check];
  const present = await Promise.all(unchecked.map(([d]) => store.blobs.hasBlob(d)));
  const gone = unchecked.find((_, i) => !present[i]);
  if (gone !== undefined) {
    throw new TsbuildError('BLOB_NOT_FOUND', `layer ${gone[0]} of ${gone[1]} was removed from the store meanwhile (by rmi or prune)`, { hint: 'add the image again (pull, load or build) and retry' });
  }
  const pending = deferred.get(lease);
  for (const [d] of held) {
    known.add(d);
    pending?.delete(d);
  }
}

/** A name for a stack of layers (like containerd's chain ID; not a layer digest). */
export function chainId(diffIds: readonly Digest[]): Digest {
  return sha256Digest(`tsbuild-chain:${diffIds.join(',')}`);
}
