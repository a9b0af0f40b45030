import { digestHex, isDigest, type Digest } from '../oci/index.js';
import type { Store } from './store.js';

/**
 * The compressed forms of a stored (uncompressed) layer: meta/compressed.<diff ID hex>, a map
 * from `gzip-<level>` to the blob made from it. Made once, remembered, never recomputed (the
 * bytes depend on the zlib that made them; DESIGN.md "Compress late"). One place for push,
 * save and exports.
 */
export type CompressedLayersRecord = Readonly<Record<string, CompressedLayer>>;

export interface CompressedLayer {
  readonly digest: Digest;
  readonly size: number;
}

function metaName(diffId: Digest): string {
  return `compressed.${digestHex(diffId)}`;
}

/**
 * The record as read from meta/ (`unknown`: any JSON, or undefined when absent). Entries of
 * another shape are dropped rather than refused: the record is a memo, and a form it forgets
 * is only compressed again.
 */
export function parseCompressedLayersRecord(value: unknown): CompressedLayersRecord {
  const out: Record<string, CompressedLayer> = {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return out;
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    if (typeof v !== 'object' || v === null) continue;
    const { digest, size } = v as { digest?: unknown; size?: unknown };
    if (typeof digest === 'string' && isDigest(digest) && typeof size === 'number' && Number.isSafeInteger(size) && size >= 0) out[key] = { digest, size };
  }
  return out;
}

/** The remembered form `key` of layer `diffId`, if its blob is still in the store with that size. */
export async function knownCompressedLayer(store: Store, diffId: Digest, key: string, opts: { signal?: AbortSignal | undefined } = {}): Promise<CompressedLayer | undefined> {
  const hit = parseCompressedLayersRecord(await store.readMeta(metaName(diffId), { signal: opts.signal }))[key];
  if (hit === undefined) return undefined;
  return (await store.blobs.statBlob(hit.digest))?.size === hit.size ? hit : undefined;
}

/** Remembers `info` as the form `key` of layer `diffId`. */
export async function rememberCompressedLayer(store: Store, diffId: Digest, key: string, info: CompressedLayer, opts: { signal?: AbortSignal | undefined } = {}): Promise<void> {
  await store.updateMeta(metaName(diffId), (cur): CompressedLayersRecord => ({ ...parseCompressedLayersRecord(cur), [key]: { digest: info.digest, size: info.size } }), { signal: opts.signal });
}
