import { createHash } from 'node:crypto';
import type { Digest } from '../oci/index.js';
import type { Store } from '../store/index.js';
import { isIndexedEntry } from './layer-index-cache.js';
import type { ViewEntry } from './rootfs-view.js';

/**
 * meta/view.<hash of the diff IDs>: what the merged view of one stack of layers was asked and
 * found: lookups of paths (`lookups: [[path, entry or null], ...]`) and the text of small files
 * read through it (`files: [[path, text or null], ...]`). A COPY or WORKDIR asks a view about a
 * handful of paths (its destination and the parents of it), a `--chown` name is looked up in
 * /etc/passwd and /etc/group, and a view is a function of its layers alone, so the answers stay
 * true for as long as the layers exist. With them, a cached rebuild plans its COPY steps without
 * reading the layers' indexes (Debian's base layer's is 800 KB of JSON, a third of a cached
 * build's time on it), and resolves a `--chown` name without reading the layer that holds
 * /etc/passwd (a scan of Debian's 127 MB tar, 0.7 s, at every cached build).
 */
function recordName(diffIds: readonly Digest[]): string {
  return `view.${createHash('sha256').update(diffIds.join('\n')).digest('hex')}`;
}

/** Lookups kept per stack of layers: a record past this stops growing (its lookups still answer). */
const MAX_LOOKUPS = 4096;
/** A file longer than this is read from its layer every time, not kept in the record. */
export const MAX_RECORDED_FILE = 64 * 1024;
/** Files kept per stack of layers. */
const MAX_FILES = 16;

export type ViewLookups = ReadonlyMap<string, ViewEntry | undefined>;

export interface ViewRecord {
  readonly lookups: ViewLookups;
  /** Files read through the view, by the path asked: their text, undefined where there is none. */
  readonly files: ReadonlyMap<string, string | undefined>;
}

/** What a view found, to add to its record. */
export interface ViewFindings {
  readonly lookups?: Iterable<readonly [string, ViewEntry | undefined]>;
  readonly files?: Iterable<readonly [string, string | undefined]>;
}

/** The record of this stack of layers, or undefined (none, or not a whole record). */
export async function readViewRecord(store: Store, diffIds: readonly Digest[], signal?: AbortSignal): Promise<ViewRecord | undefined> {
  const doc = await store.readMeta(recordName(diffIds), { memo: true, maxBytes: 2 * 1024 * 1024, ...(signal ? { signal } : {}) }).catch(() => undefined);
  return parseViewRecord(doc, diffIds);
}

/** A record as read from meta/, checked whole: undefined unless every item is well formed and it names these layers. */
export function parseViewRecord(value: unknown, diffIds: readonly Digest[]): ViewRecord | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const r = value as Record<string, unknown>;
  if (!Array.isArray(r.layers) || r.layers.length !== diffIds.length || r.layers.some((d, i) => d !== diffIds[i])) return undefined;
  if (!Array.isArray(r.lookups) || (r.files !== undefined && !Array.isArray(r.files))) return undefined;
  const lookups = new Map<string, ViewEntry | undefined>();
  for (const item of r.lookups as unknown[]) {
    if (!Array.isArray(item) || item.length !== 2 || typeof item[0] !== 'string' || item[0] === '') return undefined;
    const [p, e] = item as [string, unknown];
    if (e === null) {
      lookups.set(p, undefined);
      continue;
    }
    if (!isIndexedEntry(e)) return undefined;
    const layer = (e as { layer?: unknown }).layer;
    if (typeof layer !== 'number' || !Number.isInteger(layer) || layer < 0 || layer >= diffIds.length) return undefined;
    lookups.set(p, e as ViewEntry);
  }
  const files = new Map<string, string | undefined>();
  for (const item of (r.files ?? []) as unknown[]) {
    if (!Array.isArray(item) || item.length !== 2 || typeof item[0] !== 'string' || item[0] === '') return undefined;
    const [p, text] = item as [string, unknown];
    if (text !== null && (typeof text !== 'string' || text.length > MAX_RECORDED_FILE)) return undefined;
    files.set(p, text ?? undefined);
  }
  return { lookups, files };
}

/**
 * Adds what a view found to the record of its layers (`known`: the record as read, if any).
 * Writes nothing when all of it was recorded already; else merges it, under the store's lock,
 * into the record as it is then (stages built in parallel on the same layers each add their own).
 */
export async function saveViewRecord(store: Store, diffIds: readonly Digest[], found: ViewFindings, known: ViewRecord | undefined, signal?: AbortSignal): Promise<void> {
  const lookups = [...(found.lookups ?? [])];
  const files = [...(found.files ?? [])].filter(([, text]) => text === undefined || text.length <= MAX_RECORDED_FILE);
  if (lookups.length === 0 && files.length === 0) return;
  if (known !== undefined && lookups.every(([p]) => known.lookups.has(p)) && files.every(([p]) => known.files.has(p))) return;
  const opts = { memo: true, ...(signal ? { signal } : {}) };
  await store.withLock(async () => {
    const now = parseViewRecord(await store.readMeta(recordName(diffIds), opts).catch(() => undefined), diffIds);
    const mergedLookups = new Map(now?.lookups);
    for (const [p, e] of lookups) mergedLookups.set(p, e);
    const mergedFiles = new Map(now?.files);
    for (const [p, text] of files) mergedFiles.set(p, text);
    if (mergedLookups.size > MAX_LOOKUPS || mergedFiles.size > MAX_FILES) return;
    await store.writeMeta(
      recordName(diffIds),
      {
        layers: diffIds,
        lookups: [...mergedLookups].map(([p, e]) => [p, e ?? null]),
        ...(mergedFiles.size > 0 ? { files: [...mergedFiles].map(([p, text]) => [p, text ?? null]) } : {}),
      },
      opts,
    );
  }, opts);
}
