import { createHash } from 'node:crypto';
import { createReadStream, lstatSync } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type fs from 'node:fs';
import { Digester, fsPath, isDigest, type Digest } from '../oci/index.js';
import type { Store } from '../store/index.js';
import { readWholeFile } from '../layer/read-ahead.js';

/**
 * Content digests of context files, with a persisted index of stat data -> digest so an
 * unchanged file is never read twice across builds (issue 3: "checks unchanged context
 * files by their stat data without reading them again"). A file counts as unchanged when
 * its device, inode, size, mtime and ctime are all the same (statKey); ctime changes on any
 * write or chmod, so a same-size rewrite with the mtime put back is still caught.
 *
 * A file changed within RACY_MS before the build started is read as usual but not remembered
 * (git's "racily clean" entries): file times come from a clock that ticks in steps (a kernel
 * tick, or a whole second on file systems with coarse times), and a same-size rewrite within
 * the tick of the read would leave every stat field as it was. A record is kept only for a
 * file whose ctime lies well before the build's start, hence before its content was read; any
 * later change gives a later ctime.
 */

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
 * The stored document: `{"v": 2, "records": [path, key, digest, path, key, digest, ...]}`,
 * paths relative to the context directory, in the order the last build that saved it used
 * them (a COPY asks for its files in the same order every build, so lookups mostly go down the
 * list without a map), the least recently used last. One flat array of strings: for 20,000
 * files, JSON.parse makes 60,000 short strings and no object per record.
 */
const FORMAT = 2;

/** The records of a stored document as a flat list of triples; anything else (a torn or older document) gives none. */
function parseStatIndex(doc: unknown): string[] {
  if (typeof doc !== 'object' || doc === null) return [];
  const { v, records } = doc as { v?: unknown; records?: unknown };
  if (v !== FORMAT || !Array.isArray(records) || records.length % 3 !== 0) return [];
  // Digests are checked (isDigest) when a lookup uses one; here only their length and prefix.
  for (let i = 0; i < records.length; i += 3) {
    const d = records[i + 2] as unknown;
    if (typeof records[i] !== 'string' || typeof records[i + 1] !== 'string' || typeof d !== 'string' || d.length !== 71 || !d.startsWith('sha256:')) return [];
  }
  return records as string[];
}

/** Bound on remembered files per context, so an index cannot grow without limit. */
const MAX_RECORDS = 200_000;

/**
 * How long before the build's start a file must have last changed for its record to be kept:
 * more than the coarsest time step of common file systems (one second on ext3 and HFS+, two on
 * FAT) and a kernel tick.
 */
export const RACY_MS = 2500;

interface Learnt {
  readonly k: string;
  readonly d: Digest;
}

export class FileDigests {
  /** The stored records (flat triples) and, built on the first lookup out of order, their positions by path. */
  #stored: string[] = [];
  #where: Map<string, number> | undefined;
  #cursor = 0;
  /** Records of files read in this build, by absolute path. */
  readonly #fresh = new Map<string, Learnt>();
  /** What this build used, in order (the next document's order): a stored record's position, or a read file's path. */
  readonly #order: Array<number | string> = [];
  #dirty = false;
  #loaded: Promise<void> | undefined;
  readonly #store: Store;
  /** Files read (not answered from the index) during this build: for tests and logs. */
  hashedFiles = 0;

  readonly #persistUnder: string;
  readonly #meta: string;
  /** Records of files whose ctime (ms) is after this are not kept. */
  readonly #racyAfter: number;

  /**
   * Only files under `persistUnder` (the build context) are remembered across builds. `now`:
   * the build's start (ms since the epoch), for the racy check; tests pass a later one.
   */
  constructor(store: Store, persistUnder: string, opts: { readonly now?: number } = {}) {
    this.#store = store;
    this.#persistUnder = persistUnder.endsWith('/') ? persistUnder : `${persistUnder}/`;
    this.#meta = statIndexMetaName(this.#persistUnder);
    this.#racyAfter = (opts.now ?? Date.now()) - RACY_MS;
  }

  /** Loaded once; callers running in parallel share the one read. */
  #load(): Promise<void> {
    return (this.#loaded ??= (async () => {
      this.#stored = parseStatIndex(await this.#store.readMeta(this.#meta));
    })());
  }

  /** The digest known for the file at `abs` with stat data `key` (this build's, else the stored index's). */
  #lookup(abs: string, key: string): Digest | undefined {
    const mine = this.#fresh.get(abs);
    if (mine !== undefined) return mine.k === key ? mine.d : undefined;
    if (!abs.startsWith(this.#persistUnder)) return undefined;
    const rel = abs.slice(this.#persistUnder.length);
    const stored = this.#stored;
    let at = this.#cursor;
    if (stored[at] !== rel) {
      this.#where ??= positions(stored);
      const found = this.#where.get(rel);
      if (found === undefined) return undefined;
      at = found;
    }
    this.#cursor = at + 3;
    if (stored[at + 1] !== key) return undefined;
    const d = stored[at + 2]!;
    if (!isDigest(d)) return undefined;
    this.#order.push(at);
    return d;
  }

  /** The digest the index knows for this file as it is now (same stat data), else undefined. */
  async known(abs: string, st: fs.BigIntStats | fs.Stats): Promise<Digest | undefined> {
    await this.#load();
    return this.#lookup(abs, statKey(st));
  }

  async digestOf(abs: string, st: fs.BigIntStats | fs.Stats, signal?: AbortSignal): Promise<Digest> {
    return this.#digestByKey(abs, statKey(st), Number(st.size), signal);
  }

  async #digestByKey(abs: string, key: string, size: number, signal?: AbortSignal, ordered = true): Promise<Digest> {
    await this.#load();
    const hit = this.#lookup(abs, key);
    if (hit) return hit;
    const d = size <= SMALL_FILE ? await digestSmallFile(abs, size, signal) : await digestStream(abs, signal);
    this.#remember(abs, key, d, ordered);
    return d;
  }

  /**
   * The digests of many files at once, in order (a COPY's sources). A file's stat data comes
   * with it when it was planned from a walk of the context (`srcStat`), else from an lstat;
   * each is looked up in the index in one pass: for 20,000 unchanged files an awaited lstat
   * apiece, through the thread pool and a concurrency limiter, cost more than the system
   * calls themselves (issue 18: a cached `COPY .` of 20,000 files). Only the files the index
   * does not know are read, `concurrency` at a time.
   */
  async digestsOf(files: ReadonlyArray<{ readonly srcAbs: string; readonly srcStat?: string | undefined }>, opts: { readonly concurrency: number; readonly signal?: AbortSignal | undefined }): Promise<Digest[]> {
    await this.#load();
    const out: Digest[] = new Array<Digest>(files.length);
    const misses: Array<{ i: number; key: string; size: number }> = [];
    for (let i = 0; i < files.length; i++) {
      if (i % 4096 === 4095) {
        opts.signal?.throwIfAborted();
        await new Promise((r) => setImmediate(r)); // let the event loop turn (progress, signals)
      }
      const f = files[i]!;
      let key = f.srcStat;
      let size: number | undefined;
      if (key === undefined) {
        const st = lstatSync(fsPath(f.srcAbs));
        key = statKey(st);
        size = st.size;
      }
      const hit = this.#lookup(f.srcAbs, key);
      if (hit) out[i] = hit;
      else {
        misses.push({ i, key, size: size ?? sizeOfKey(key) });
        this.#order.push(f.srcAbs); // its place in the next document: the order of the files, not of the reads
      }
    }
    // A few workers taking the next file, not a promise per file made up front (p-limit's map
    // holds one per item: 20,000 of them for a cold COPY of a big context).
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < misses.length) {
        const { i, key, size } = misses[next++]!;
        out[i] = await this.#digestByKey(files[i]!.srcAbs, key, size, opts.signal, false);
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
    const key = statKey(st);
    if (this.#lookup(abs, key) === d) return;
    this.#remember(abs, key, d);
  }

  #remember(abs: string, key: string, d: Digest, ordered = true): void {
    this.hashedFiles++;
    this.#fresh.set(abs, { k: key, d });
    if (ordered) this.#order.push(abs);
    if (abs.startsWith(this.#persistUnder) && ctimeOfKey(key) <= this.#racyAfter) this.#dirty = true;
  }

  /**
   * Persists what was learnt, merged into what the file holds now (another build of the same
   * context may have saved meanwhile): this build's records first, in the order it used them,
   * then the stored records it did not use, up to MAX_RECORDS. A record of a file changed too
   * recently (RACY_MS) is left out. The JSON is written in pieces: for 20,000 files the whole
   * text, its bytes and the intermediate arrays were ~15 MB at the very end of a build, where
   * memory peaked.
   */
  async save(): Promise<void> {
    if (!this.#dirty) return;
    const fresh = this.#fresh;
    const order = this.#order;
    const mine = this.#stored;
    const under = this.#persistUnder;
    const racyAfter = this.#racyAfter;
    await this.#store.updateMetaText(this.#meta, function* (current) {
      const stored = parseStatIndex(current);
      const kept = new Set<string>();
      let count = 0;
      let first = true;
      let parts: string[] = [`{"v":${FORMAT},"records":[`];
      let length = 0;
      const put = (rel: string, k: string, d: string): void => {
        parts.push(`${first ? '' : ','}${JSON.stringify(rel)},${JSON.stringify(k)},"${d}"`);
        length += rel.length + k.length + 80;
        first = false;
        count++;
      };
      // This build's records: a file read wins over a stored record of the same path.
      for (const abs of fresh.keys()) if (abs.startsWith(under)) kept.add(abs.slice(under.length));
      const done = new Set<string>();
      for (const o of order) {
        if (count >= MAX_RECORDS) break;
        let rel: string;
        let k: string;
        let d: string;
        if (typeof o === 'number') {
          rel = mine[o]!;
          if (kept.has(rel) || done.has(rel)) continue;
          k = mine[o + 1]!;
          d = mine[o + 2]!;
        } else {
          if (!o.startsWith(under)) continue;
          const r = fresh.get(o);
          if (r === undefined) continue; // its read failed
          rel = o.slice(under.length);
          if (done.has(rel) || ctimeOfKey(r.k) > racyAfter) continue;
          k = r.k;
          d = r.d;
        }
        done.add(rel);
        put(rel, k, d);
        if (length >= 65536) {
          yield parts.join('');
          parts = [];
          length = 0;
        }
      }
      for (let i = 0; i < stored.length && count < MAX_RECORDS; i += 3) {
        if (kept.has(stored[i]!) || done.has(stored[i]!)) continue;
        put(stored[i]!, stored[i + 1]!, stored[i + 2]!);
        if (length >= 65536) {
          yield parts.join('');
          parts = [];
          length = 0;
        }
      }
      parts.push(']}\n');
      yield parts.join('');
    });
    this.#dirty = false;
  }
}

/** Path -> position of its triple in a stored record list. */
function positions(stored: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (let i = 0; i < stored.length; i += 3) m.set(stored[i]!, i);
  return m;
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

/**
 * A file's stat data as the index compares it: `dev:ino:size:mtimeMs:ctimeMs`, the times as
 * Node's number Stats give them (seconds * 1e3 + nanoseconds / 1e6, a double that tells apart
 * times less than a microsecond apart). From BigIntStats the same double is made from the
 * nanoseconds, so the walk's plain lstat and ReadAhead's bigint one agree.
 */
export function statKey(st: fs.BigIntStats | fs.Stats): string {
  if (typeof st.size === 'bigint') {
    const b = st as fs.BigIntStats;
    return [Number(b.dev), Number(b.ino), Number(b.size), msOfNs(b.mtimeNs), msOfNs(b.ctimeNs)].join(':');
  }
  const n = st as fs.Stats;
  // join makes one flat string (a template literal makes a rope of ~9 parts in V8: ~450 bytes
  // instead of ~70 for each of the 20,000 records a big context keeps).
  return [n.dev, n.ino, n.size, n.mtimeMs, n.ctimeMs].join(':');
}

/** Node's msFromTimeSpec(sec, nsec) from a time in nanoseconds. */
function msOfNs(ns: bigint): number {
  let sec = ns / 1_000_000_000n;
  let nsec = ns % 1_000_000_000n;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += 1_000_000_000n;
  }
  return Number(sec) * 1e3 + Number(nsec) / 1e6;
}

function sizeOfKey(key: string): number {
  return Number(key.split(':')[2]);
}

function ctimeOfKey(key: string): number {
  return Number(key.slice(key.lastIndexOf(':') + 1));
}
