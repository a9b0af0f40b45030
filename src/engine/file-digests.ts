import { createHash } from 'node:crypto';
import { createReadStream, lstatSync } from 'node:fs';
import { lstat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type fs from 'node:fs';
import { Digester, fsPath, isDigest, type Digest } from '../oci/index.js';
import type { Store } from '../store/index.js';
import { readWholeFile } from './read-ahead.js';

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

/**
 * One index per context directory (`meta/context-stat-index.<hash of the path>.json`): a
 * build reads and parses only its own context's records, not those of every project the
 * store has built (one shared index of 20,000 files made a cached small build 70 ms slower).
 */
export function statIndexMetaName(contextDir: string): string {
  const dir = contextDir.endsWith('/') ? contextDir : `${contextDir}/`;
  return `context-stat-index.${createHash('sha256').update(dir).digest('hex').slice(0, 32)}`;
}
/**
 * The stored index as records by path; records that are not `{k: string, d: digest}` (a torn
 * or foreign document) are left out, and anything but an object gives none.
 */
function parseStatIndexRecords(doc: unknown): Map<string, StatRecord> {
  const out = new Map<string, StatRecord>();
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return out;
  for (const [path, r] of Object.entries(doc as Record<string, unknown>)) {
    const rec = r as { k?: unknown; d?: unknown } | null;
    if (rec && typeof rec.k === 'string' && typeof rec.d === 'string' && isDigest(rec.d)) out.set(path, { k: rec.k, d: rec.d });
  }
  return out;
}

/** Bound on remembered files per context, so an index cannot grow without limit. */
const MAX_RECORDS = 200_000;

export class FileDigests {
  #known = new Map<string, StatRecord>();
  #dirty = false;
  #loaded: Promise<void> | undefined;
  readonly #store: Store;
  /** Files read (not answered from the index) during this build: for tests and logs. */
  hashedFiles = 0;

  readonly #persistUnder: string;
  readonly #meta: string;

  /** Only files under `persistUnder` (the build context) are remembered across builds. */
  constructor(store: Store, persistUnder: string) {
    this.#store = store;
    this.#persistUnder = persistUnder.endsWith('/') ? persistUnder : `${persistUnder}/`;
    this.#meta = statIndexMetaName(this.#persistUnder);
  }

  /** Loaded once; callers running in parallel share the one read. */
  #load(): Promise<void> {
    return (this.#loaded ??= (async () => {
      this.#known = parseStatIndexRecords(await this.#store.readMeta(this.#meta));
    })());
  }

  /** The digest the index knows for this file as it is now (same stat data), else undefined. */
  async known(abs: string, st: fs.BigIntStats | fs.Stats): Promise<Digest | undefined> {
    await this.#load();
    const hit = this.#known.get(abs);
    return hit && hit.k === statKey(st) ? hit.d : undefined;
  }

  async digestOf(abs: string, st: fs.BigIntStats | fs.Stats, signal?: AbortSignal): Promise<Digest> {
    const hit = await this.known(abs, st);
    if (hit) return hit;
    const d = st.size <= SMALL_FILE ? await digestSmallFile(abs, Number(st.size), signal) : await digestStream(abs, signal);
    this.#remember(abs, st, d);
    return d;
  }

  /**
   * The digests of many files at once, in order (a COPY's sources). Each file is lstat'ed with
   * a synchronous call and looked up in the index in one pass: for 20,000 unchanged files an
   * awaited lstat apiece, through the thread pool and a concurrency limiter, cost more than the
   * system calls themselves (issue 18: a cached `COPY .` of 20,000 files). Only the files the
   * index does not know are read, `concurrency` at a time.
   */
  async digestsOf(paths: readonly string[], opts: { readonly concurrency: number; readonly signal?: AbortSignal | undefined }): Promise<Digest[]> {
    await this.#load();
    const out: Digest[] = new Array<Digest>(paths.length);
    const misses: number[] = [];
    for (let i = 0; i < paths.length; i++) {
      if (i % 4096 === 4095) {
        opts.signal?.throwIfAborted();
        await new Promise((r) => setImmediate(r)); // let the event loop turn (progress, signals)
      }
      const abs = paths[i]!;
      const st = lstatSync(fsPath(abs), { bigint: true });
      const hit = this.#known.get(abs);
      if (hit && hit.k === statKey(st)) out[i] = hit.d;
      else misses.push(i);
    }
    // A few workers taking the next file, not a promise per file made up front (p-limit's map
    // holds one per item: 20,000 of them for a cold COPY of a big context).
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < misses.length) {
        const i = misses[next++]!;
        out[i] = await this.digestOf(paths[i]!, await lstat(fsPath(paths[i]!), { bigint: true }), opts.signal);
      }
    };
    await Promise.all(Array.from({ length: Math.min(opts.concurrency, misses.length) }, worker));
    return out;
  }

  /** Resolves once the persisted index is loaded (before calling learn()). */
  ready(): Promise<void> {
    return this.#load();
  }

  /**
   * Takes in a digest computed from the file's bytes elsewhere (a layer written in the same
   * pass), as digestOf would have; a record the index already holds is left as it is.
   */
  learn(abs: string, st: fs.BigIntStats | fs.Stats, d: Digest): void {
    const hit = this.#known.get(abs);
    if (hit && hit.d === d && hit.k === statKey(st)) return;
    this.#remember(abs, st, d);
  }

  #remember(abs: string, st: fs.BigIntStats | fs.Stats, d: Digest): void {
    this.hashedFiles++;
    if (abs.startsWith(this.#persistUnder)) {
      this.#known.delete(abs);
      this.#known.set(abs, { k: statKey(st), d });
      this.#dirty = true;
    }
  }

  /**
   * Persists what was learnt, merged into what the file holds now (another build of the same
   * context may have saved meanwhile); keeps the most recently used records. The JSON is
   * written in pieces: for 20,000 files the whole text, its bytes and the intermediate
   * arrays and objects were ~15 MB at the very end of a build, where memory peaked.
   */
  async save(): Promise<void> {
    if (!this.#dirty) return;
    const known = this.#known;
    await this.#store.updateMetaText(this.#meta, (current) => {
      // Same order as `{ ...current, ...ours }`: a record already on disk keeps its place.
      let records: Map<string, StatRecord> = known;
      let skip = Math.max(0, known.size - MAX_RECORDS);
      const stored = parseStatIndexRecords(current);
      if (stored.size > 0) {
        records = stored;
        for (const [k, v] of known) {
          if (skip > 0) skip--;
          else records.set(k, v);
        }
        skip = Math.max(0, records.size - MAX_RECORDS);
      }
      return jsonObjectPieces(records, skip);
    });
    this.#dirty = false;
  }
}

/**
 * `JSON.stringify(Object.fromEntries(records))` plus a newline, leaving out the first `skip`
 * records, in pieces of about 64 KB.
 */
function* jsonObjectPieces(records: ReadonlyMap<string, StatRecord>, skip: number): Generator<string> {
  let parts: string[] = ['{'];
  let length = 0;
  let first = true;
  for (const [k, v] of records) {
    if (skip > 0) {
      skip--;
      continue;
    }
    const part = `${first ? '' : ','}${JSON.stringify(k)}:${JSON.stringify({ k: v.k, d: v.d })}`;
    parts.push(part);
    length += part.length;
    first = false;
    if (length >= 65536) {
      yield parts.join('');
      parts = [];
      length = 0;
    }
  }
  parts.push('}\n');
  yield parts.join('');
}

/** Files up to this size are hashed from one read into one buffer (open, read, close). */
const SMALL_FILE = 1024 * 1024;

async function digestStream(abs: string, signal?: AbortSignal): Promise<Digest> {
  const digester = new Digester();
  await pipeline(createReadStream(fsPath(abs)), async (chunks: AsyncIterable<Buffer>) => {
    for await (const c of chunks) digester.update(c);
  }, signal ? { signal } : {});
  return digester.digest();
}

/** A small file's content from one open, read and close (readWholeFile with fresh buffers). */
async function readSmallFile(abs: string, size: number, signal?: AbortSignal): Promise<Buffer> {
  const { buf, len } = await readWholeFile(abs, size, signal);
  return buf.subarray(0, len);
}

async function digestSmallFile(abs: string, size: number, signal?: AbortSignal): Promise<Digest> {
  const d = new Digester();
  d.update(await readSmallFile(abs, size, signal));
  return d.digest();
}

function statKey(st: fs.BigIntStats | fs.Stats): string {
  const ns = (ms: number | bigint, nsv?: bigint) => (nsv !== undefined ? nsv.toString() : String(Math.round(Number(ms) * 1e6)));
  const big = st as fs.BigIntStats;
  // join makes one flat string (a template literal makes a rope of ~9 parts in V8: ~450 bytes
  // instead of ~70 for each of the 20,000 records a big context keeps).
  return [st.dev, st.ino, st.size, ns(st.mtimeMs, typeof big.mtimeNs === 'bigint' ? big.mtimeNs : undefined), ns(st.ctimeMs, typeof big.ctimeNs === 'bigint' ? big.ctimeNs : undefined)].join(':');
}
