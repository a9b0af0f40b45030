import { digestHex, isDigest, type Digest } from '../oci/index.js';
import type { Store } from './store.js';

/**
 * The compressed forms of a stored (uncompressed) layer: meta/compressed.<diff ID hex>, a map
 * from `gzip-<level>` to the blob made from it. Made once, remembered, never recomputed (the
 * bytes depend on the zlib that made them; DESIGN.md "Compress late"). One place for push,
 * save and exports.
 */
function metaName(diffId: Digest): string {
  return `compressed.${digestHex(diffId)}`;
}

/** The remembered form `key` of layer `diffId`, if its blob is still in the store with that size. */
export async function knownCompressedLayer(store: Store, diffId: Digest, key: string, opts: { signal?: AbortSignal | undefined } = {}): Promise<{ digest: Digest; size: number } | undefined> {
  const known = (await store.readMeta(metaName(diffId), { signal: opts.signal })) as Record<string, { digest?: unknown; size?: unknown }> | undefined;
  const hit = known?.[key];
  if (hit === undefined || typeof hit.digest !== 'string' || !isDigest(hit.digest) || typeof hit.size !== 'number') return undefined;
  return (await store.blobs.statBlob(hit.digest))?.size === hit.size ? { digest: hit.digest, size: hit.size } : undefined;
}

/** Remembers `info` as the form `key` of layer `diffId`. */
export async function rememberCompressedLayer(store: Store, diffId: Digest, key: string, info: { digest: Digest; size: number }, opts: { signal?: AbortSignal | undefined } = {}): Promise<void> {
  await store.updateMeta(metaName(diffId), (cur) => ({ ...((cur as object | undefined) ?? {}), [key]: { digest: info.digest, size: info.size } }), { signal: opts.signal });
}
