import { createHash } from 'node:crypto';
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { lazyLayerIndex } from '../image/index.js';
import type { Store } from '../store/index.js';
import type { CacheKey } from './cache-key.js';
import { isDigest } from '../oci/index.js';
import type { KeyInputsSummary } from './key-explain.js';
import type { CacheHit, CacheSource } from './cache-source.js';
import { formatStepRecord, isStepRecordFile, parseStepRecord, stepRecordName, type StepRecord } from './step-record.js';

/** Step cache entries are tiny JSON documents; anything larger is not one. */
const MAX_RECORD_BYTES = 64 * 1024;

/**
 * The step cache in the store: `meta/step.<key>.json` -> the layer a step made. The first
 * CacheSource of every build, and the one place step results are recorded.
 */
export class LocalStepCache implements CacheSource {
  readonly name = 'local step cache';
  readonly label = 'local';
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  /** A hit whose layer blob is still in the store, with its entry index (read when asked for); else undefined. */
  async lookup(key: CacheKey, opts: { readonly signal?: AbortSignal | undefined }): Promise<CacheHit | undefined> {
    const record = parseStepRecord(await this.#store.readMeta(stepRecordName(key), { ...(opts.signal ? { signal: opts.signal } : {}) }));
    if (record?.kind === 'empty') return { kind: 'empty' };
    if (record?.kind === 'layer' && (await this.#store.blobs.hasBlob(record.diffId))) {
      return { kind: 'layer', layer: { diffId: record.diffId, size: record.size }, index: lazyLayerIndex(this.#store, record.diffId, { signal: opts.signal }) };
    }
    return undefined;
  }

  async record(key: CacheKey, record: StepRecord): Promise<void> {
    await this.#store.writeMeta(stepRecordName(key), formatStepRecord(record));
  }

  /** The inputs summary recorded with a key; undefined when there is no entry or it has none. */
  async inputsOf(key: CacheKey, opts: { readonly signal?: AbortSignal | undefined } = {}): Promise<KeyInputsSummary | undefined> {
    const doc = await this.#store.readMeta(stepRecordName(key), { ...(opts.signal ? { signal: opts.signal } : {}), maxBytes: MAX_RECORD_BYTES });
    return parseStepRecord(doc)?.inputs;
  }

  /**
   * The last key made (executed and recorded, not hit) for a step: `meta/last-key.<hex>.json`,
   * hex = sha256 of `scope` (the build context's directory and the step's identity text, see
   * key-explain.ts StepIdentity). Written on a miss only, so a cached build writes none.
   */
  async lastKey(scope: string, opts: { readonly signal?: AbortSignal | undefined } = {}): Promise<CacheKey | undefined> {
    const doc = (await this.#store.readMeta(lastKeyRecordName(scope), { ...(opts.signal ? { signal: opts.signal } : {}), maxBytes: 4096 })) as { key?: unknown } | undefined;
    return typeof doc?.key === 'string' && isDigest(doc.key) ? (doc.key as CacheKey) : undefined;
  }

  async rememberLastKey(scope: string, key: CacheKey): Promise<void> {
    await this.#store.writeMeta(lastKeyRecordName(scope), { key });
  }
}

/** The meta name of a step's last-key record. */
function lastKeyRecordName(scope: string): string {
  return `last-key.${createHash('sha256').update(scope).digest('hex')}`;
}

/** True for the meta file names of last-key records (`last-key.<hex>.json`). */
export function isLastKeyRecordFile(file: string): boolean {
  return /^last-key\.[a-f0-9]{64}\.json$/.test(file);
}

/**
 * Removes last-key records whose key has no step cache entry any more (prune removed it): a
 * miss of that step then says "no cache entry", which is now true. Returns how many it removed.
 */
export async function pruneLastKeyRecords(store: Store, signal?: AbortSignal): Promise<number> {
  let removed = 0;
  for (const file of await readdir(store.paths.meta).catch(() => [] as string[])) {
    if (!isLastKeyRecordFile(file)) continue;
    const name = file.slice(0, -'.json'.length);
    const doc = (await store.readMeta(name, { ...(signal ? { signal } : {}), maxBytes: 4096 }).catch(() => undefined)) as { key?: unknown } | undefined;
    const key = typeof doc?.key === 'string' && isDigest(doc.key) ? (doc.key as CacheKey) : undefined;
    if (key && (await store.readMeta(stepRecordName(key), { ...(signal ? { signal } : {}), maxBytes: MAX_RECORD_BYTES }).catch(() => null)) !== undefined) continue;
    await store.withLock(() => rm(join(store.paths.meta, file), { force: true }), { ...(signal ? { signal } : {}) });
    removed++;
  }
  return removed;
}

/** One entry of the step cache as `prune` and `df` list it. */
export interface StepCacheEntry {
  /** meta name without .json: `step.<hex>`. */
  readonly name: string;
  /** undefined for an empty step's entry or an unreadable one. */
  readonly record: StepRecord | undefined;
  readonly mtimeMs: number;
}

/** Every entry of the step cache, by name. */
export async function listStepCache(store: Store, signal?: AbortSignal): Promise<StepCacheEntry[]> {
  const names = await readdir(store.paths.meta).catch(() => [] as string[]);
  const out: StepCacheEntry[] = [];
  for (const file of names.sort()) {
    if (!isStepRecordFile(file)) continue;
    const name = file.slice(0, -'.json'.length);
    const st = await lstat(join(store.paths.meta, file)).catch(() => undefined);
    if (!st) continue;
    const record = parseStepRecord(await store.readMeta(name, { ...(signal ? { signal } : {}), maxBytes: MAX_RECORD_BYTES }).catch(() => undefined));
    out.push({ name, record, mtimeMs: st.mtimeMs });
  }
  return out;
}
