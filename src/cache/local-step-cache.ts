import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { layerIndexOf } from '../image/index.js';
import type { Store } from '../store/index.js';
import type { CacheKey } from './cache-key.js';
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
  readonly #store: Store;

  constructor(store: Store) {
    this.#store = store;
  }

  /** A hit whose layer blob is still in the store, with its entry index; else undefined. */
  async lookup(key: CacheKey, opts: { readonly signal?: AbortSignal | undefined }): Promise<CacheHit | undefined> {
    const record = parseStepRecord(await this.#store.readMeta(stepRecordName(key), { ...(opts.signal ? { signal: opts.signal } : {}) }));
    if (record?.kind === 'empty') return { kind: 'empty' };
    if (record?.kind === 'layer' && (await this.#store.blobs.hasBlob(record.diffId))) {
      return { kind: 'layer', layer: { diffId: record.diffId, size: record.size }, index: await layerIndexOf(this.#store, record.diffId, { signal: opts.signal }) };
    }
    return undefined;
  }

  async record(key: CacheKey, record: StepRecord): Promise<void> {
    await this.#store.writeMeta(stepRecordName(key), formatStepRecord(record));
  }
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
