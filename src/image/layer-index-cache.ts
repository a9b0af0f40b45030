import { digestHex, type Digest } from '../oci/index.js';
import { indexLayer, type IndexedEntry, type LayerIndex } from '../layer/layer-index.js';
import type { Store } from '../store/index.js';

const memo = new Map<string, Promise<LayerIndex>>();

/** meta/layer-index.<diff ID hex>: the LayerIndex of a stored layer, as layer/ computes it. */
function metaName(diffId: Digest): string {
  return `layer-index.${digestHex(diffId)}`;
}

const ENTRY_TYPES: ReadonlySet<string> = new Set<IndexedEntry['type']>(['file', 'dir', 'symlink', 'hardlink', 'other']);

function isStringList(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((s) => typeof s === 'string');
}

export function isIndexedEntry(v: unknown): v is IndexedEntry {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  return (
    typeof e.path === 'string' &&
    typeof e.type === 'string' &&
    ENTRY_TYPES.has(e.type) &&
    typeof e.mode === 'number' &&
    typeof e.uid === 'number' &&
    typeof e.gid === 'number' &&
    typeof e.mtime === 'number' &&
    typeof e.size === 'number' &&
    (e.linkTarget === undefined || typeof e.linkTarget === 'string')
  );
}

/**
 * The record as read from meta/ (`unknown`: any JSON, or undefined when absent); undefined when
 * it is not a whole LayerIndex (written by another version, or damaged), which is then read
 * again from the layer's blob. A view built from a half-valid index would be wrong silently.
 */
export function parseLayerIndexRecord(value: unknown): LayerIndex | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const r = value as Record<string, unknown>;
  if (!Array.isArray(r.entries) || !r.entries.every(isIndexedEntry) || !isStringList(r.whiteouts) || !isStringList(r.opaqueDirs)) return undefined;
  return { entries: r.entries, whiteouts: r.whiteouts, opaqueDirs: r.opaqueDirs };
}

/** Index records on their way into a store (by root), each settled (never rejected) once written. */
const incoming = new Map<string, Set<Promise<void>>>();

/**
 * Index records that `done` writes into the store (an imported build cache's file lists of base
 * layers): until it settles, layerIndexOf waits for it before reading a layer it has no record
 * of, which can take seconds for a big layer.
 */
export function expectLayerIndexes(store: Store, done: Promise<unknown>): void {
  let set = incoming.get(store.root);
  if (set === undefined) incoming.set(store.root, (set = new Set()));
  const p = done.then(
    () => undefined,
    () => undefined,
  );
  set.add(p);
  void p.then(() => {
    set.delete(p);
    if (set.size === 0 && incoming.get(store.root) === set) incoming.delete(store.root);
  });
}

/** True when the store holds a whole index of the layer (a layer that was indexed, or whose index came with a cache). */
export async function hasLayerIndex(store: Store, diffId: Digest): Promise<boolean> {
  return parseLayerIndexRecord(await store.readMeta(metaName(diffId))) !== undefined;
}

/** Remembers the index of a layer this process made itself (no need to read it back). */
export async function rememberLayerIndex(store: Store, diffId: Digest, index: LayerIndex): Promise<void> {
  memo.set(`${store.root}\0${diffId}`, Promise.resolve(index));
  await store.writeMeta(metaName(diffId), index);
}

/**
 * The index of a stored (uncompressed) layer: from meta/ when known, else read once from the
 * blob and remembered. Memoised per process so parallel stages share one read.
 */
export function layerIndexOf(store: Store, diffId: Digest, opts: { signal?: AbortSignal | undefined } = {}): Promise<LayerIndex> {
  const key = `${store.root}\0${diffId}`;
  let p = memo.get(key);
  if (!p) {
    p = (async () => {
      const known = parseLayerIndexRecord(await store.readMeta(metaName(diffId)));
      if (known) return known;
      const waits = incoming.get(store.root);
      if (waits !== undefined && waits.size > 0) {
        await Promise.all([...waits]);
        const arrived = parseLayerIndexRecord(await store.readMeta(metaName(diffId)));
        if (arrived) return arrived;
      }
      const index = await indexLayer(await store.blobs.openBlob(diffId, { signal: opts.signal }), opts);
      await store.writeMeta(metaName(diffId), index);
      return index;
    })();
    p.catch(() => memo.delete(key));
    memo.set(key, p);
  }
  return p;
}

/**
 * A layer's index when something asks for it (a COPY planning against the files below it, a
 * WORKDIR, the unpack of a RUN's lower layers), not when the state that holds the layer is made:
 * a fully cached build reads no per-file data, however big its layers (a 50,000-file layer's
 * record is 5 MB of JSON). Calls share layerIndexOf's one read.
 */
export type LazyLayerIndex = () => Promise<LayerIndex>;

export function lazyLayerIndex(store: Store, diffId: Digest, opts: { signal?: AbortSignal | undefined } = {}): LazyLayerIndex {
  return () => layerIndexOf(store, diffId, opts);
}

/** An index already in hand, as a LazyLayerIndex. */
export function knownLayerIndex(index: LayerIndex): LazyLayerIndex {
  const p = Promise.resolve(index);
  return () => p;
}
