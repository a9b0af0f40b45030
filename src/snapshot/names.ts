import { sha256Digest, type Digest } from '../oci/index.js';

/** A name for a stack of layers (like containerd's chain ID; not a layer digest). */
export function chainId(diffIds: readonly Digest[]): Digest {
  return sha256Digest(`tsbuild-chain:${diffIds.join(',')}`);
}

/**
 * Every snapshot name a stack of layers may be kept under (one per diff ID, one per chain):
 * what a lease must hold so that gc leaves the stack's snapshots alone.
 */
export function snapshotNamesFor(diffIds: readonly Digest[]): Digest[] {
  return [...diffIds, ...diffIds.map((_, i) => chainId(diffIds.slice(0, i + 1)))];
}
