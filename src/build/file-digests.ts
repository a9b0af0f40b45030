import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type fs from 'node:fs';
import { Digester, type Digest } from '../oci/index.js';
import type { Store } from '../store/index.js';

/**
 * Content digests of context files, with a persisted index of stat data -> digest so an
 * unchanged file is never read twice across builds (issue 3: "checks unchanged context
 * files by their stat data without reading them again"). A file counts as unchanged when
 * its device, inode, size, mtime and ctime are all the same; ctime changes on any write or
 * chmod, so a same-size rewrite within one mtime tick is still caught.
 */
interface StatRecord {
  readonly k: string; // dev:ino:size:mtimeNs:ctimeNs
  readonly d: Digest;
}

const META = 'context-stat-index';
/** Bound on remembered files, so the index cannot grow without limit across many contexts. */
const MAX_RECORDS = 200_000;

export class FileDigests {
  #known = new Map<string, StatRecord>();
  #dirty = false;
  #loaded = false;
  readonly #store: Store;
  /** Files read (not answered from the index) during this build: for tests and logs. */
  hashedFiles = 0;

  readonly #persistUnder: string;

  /** Only files under `persistUnder` (the build context) are remembered across builds. */
  constructor(store: Store, persistUnder: string) {
    this.#store = store;
    this.#persistUnder = persistUnder.endsWith('/') ? persistUnder : `${persistUnder}/`;
  }

  async #load(): Promise<void> {
    if (this.#loaded) return;
    this.#loaded = true;
    const doc = (await this.#store.readMeta(META)) as Record<string, StatRecord> | undefined;
    if (doc && typeof doc === 'object') this.#known = new Map(Object.entries(doc));
  }

  async digestOf(abs: string, st: fs.BigIntStats | fs.Stats, signal?: AbortSignal): Promise<Digest> {
    await this.#load();
    const key = statKey(st);
    const hit = this.#known.get(abs);
    if (hit && hit.k === key) return hit.d;
    const digester = new Digester();
    await pipeline(createReadStream(abs), async (chunks: AsyncIterable<Buffer>) => {
      for await (const c of chunks) digester.update(c);
    }, signal ? { signal } : {});
    this.hashedFiles++;
    const d = digester.digest();
    if (abs.startsWith(this.#persistUnder)) {
      this.#known.delete(abs);
      this.#known.set(abs, { k: key, d });
      this.#dirty = true;
    }
    return d;
  }

  /** Persists what was learnt; keeps the most recently used records. */
  async save(): Promise<void> {
    if (!this.#dirty) return;
    const entries = [...this.#known.entries()];
    const kept = entries.slice(Math.max(0, entries.length - MAX_RECORDS));
    await this.#store.updateMeta(META, (current) => {
      const merged = { ...((current as Record<string, StatRecord> | undefined) ?? {}) };
      for (const [k, v] of kept) merged[k] = v;
      const all = Object.entries(merged);
      return Object.fromEntries(all.slice(Math.max(0, all.length - MAX_RECORDS)));
    });
    this.#dirty = false;
  }
}

function statKey(st: fs.BigIntStats | fs.Stats): string {
  const ns = (ms: number | bigint, nsv?: bigint) => (nsv !== undefined ? nsv.toString() : String(Math.round(Number(ms) * 1e6)));
  const big = st as fs.BigIntStats;
  return `${st.dev}:${st.ino}:${st.size}:${ns(st.mtimeMs, typeof big.mtimeNs === 'bigint' ? big.mtimeNs : undefined)}:${ns(st.ctimeMs, typeof big.ctimeNs === 'bigint' ? big.ctimeNs : undefined)}`;
}
