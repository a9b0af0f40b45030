import { TsbuildError } from '../errors.js';
import type { StoredLayer } from '../image/seal.js';
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
 * Holds a stack of layers in `lease` (their blobs, and every snapshot lowerDirsFor may use
 * for them: one per diff ID and one per chain), then checks the blobs are still there: a
 * concurrent `rmi` or `prune` may have removed them between finding the image and the lease.
 */
export async function leaseLayers(lease: Lease, store: Store, layers: readonly StoredLayer[], what: string, signal?: AbortSignal): Promise<void> {
  const diffIds = layers.map((l) => l.diffId);
  const chains = diffIds.map((_, i) => chainId(diffIds.slice(0, i + 1)));
  await lease.hold({ roots: diffIds, snapshots: [...diffIds, ...chains] }, { signal });
  let known = found.get(lease);
  if (!known) found.set(lease, (known = new Set()));
  const unchecked = diffIds.filter((d) => !known.has(d));
  const present = await Promise.all(unchecked.map((d) => store.blobs.hasBlob(d)));
  const gone = unchecked.find((_, i) => !present[i]);
  if (gone !== undefined) {
    throw new TsbuildError('BLOB_NOT_FOUND', `layer ${gone} of ${what} was removed from the store meanwhile (by rmi or prune)`, { hint: 'add the image again (pull, load or build) and retry' });
  }
  for (const d of unchecked) known.add(d);
}

/** A name for a stack of layers (like containerd's chain ID; not a layer digest). */
export function chainId(diffIds: readonly Digest[]): Digest {
  return sha256Digest(`tsbuild-chain:${diffIds.join(',')}`);
}
