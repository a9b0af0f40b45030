import { createHash } from 'node:crypto';
import type { Digest } from '../oci/index.js';
import type { Store } from '../store/index.js';
import { isIndexedEntry } from './layer-index-cache.js';
import type { RootfsView, ViewEntry } from './rootfs-view.js';

/**
 * meta/view.<hash of the diff IDs>: what lookups in the merged view of one stack of layers found
 * (`{layers, lookups: [[path, entry or null], ...]}`). A COPY or WORKDIR asks a view about a
 * handful of paths (its destination and the parents of it), and a view is a function of its
 * layers alone, so the answers stay true for as long as the layers exist. With them, a cached
 * rebuild plans its COPY steps without reading the layers' indexes (Debian's base layer's is
 * 800 KB of JSON, a third of a cached build's time on it).
 */
function recordName(diffIds: readonly Digest[]): string {
  return `view.${createHash('sha256').update(diffIds.join('\n')).digest('hex')}`;
}

/** Lookups kept per stack of layers: a record past this stops growing (its lookups still answer). */
const MAX_LOOKUPS = 4096;

export type ViewLookups = ReadonlyMap<string, ViewEntry | undefined>;

/** The recorded lookups of this stack of layers, or undefined (none, or not a whole record). */
export async function readViewRecord(store: Store, diffIds: readonly Digest[], signal?: AbortSignal): Promise<ViewLookups | undefined> {
  const doc = await store.readMeta(recordName(diffIds), { memo: true, maxBytes: 1024 * 1024, ...(signal ? { signal } : {}) }).catch(() => undefined);
  return parseViewRecord(doc, diffIds);
}

/** A record as read from meta/, checked whole: undefined unless every lookup is well formed and it names these layers. */
export function parseViewRecord(value: unknown, diffIds: readonly Digest[]): ViewLookups | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const r = value as Record<string, unknown>;
  if (!Array.isArray(r.layers) || r.layers.length !== diffIds.length || r.layers.some((d, i) => d !== diffIds[i])) return undefined;
  if (!Array.isArray(r.lookups)) return undefined;
  const out = new Map<string, ViewEntry | undefined>();
  for (const item of r.lookups as unknown[]) {
    if (!Array.isArray(item) || item.length !== 2 || typeof item[0] !== 'string' || item[0] === '') return undefined;
    const [p, e] = item as [string, unknown];
    if (e === null) {
      out.set(p, undefined);
      continue;
    }
    if (!isIndexedEntry(e)) return undefined;
    const layer = (e as { layer?: unknown }).layer;
    if (typeof layer !== 'number' || !Number.isInteger(layer) || layer < 0 || layer >= diffIds.length) return undefined;
    out.set(p, e as ViewEntry);
  }
  return out;
}

/**
 * Adds the lookups `view` made to the record of its layers (`known`: the record as read, if
 * any). Writes nothing when every lookup was recorded already; else merges them, under the
 * store's lock, into the record as it is then (stages built in parallel on the same layers each
 * add their own).
 */
export async function saveViewRecord(store: Store, diffIds: readonly Digest[], view: RootfsView, known: ViewLookups | undefined, signal?: AbortSignal): Promise<void> {
  const made = [...view.lookups()];
  if (known !== undefined && made.every(([p]) => known.has(p))) return;
  const opts = { memo: true, ...(signal ? { signal } : {}) };
  await store.withLock(async () => {
    const merged = new Map(parseViewRecord(await store.readMeta(recordName(diffIds), opts).catch(() => undefined), diffIds));
    for (const [p, e] of made) merged.set(p, e);
    if (merged.size > MAX_LOOKUPS) return;
    await store.writeMeta(recordName(diffIds), { layers: diffIds, lookups: [...merged].map(([p, e]) => [p, e ?? null]) }, opts);
  }, opts);
}
