import { createReadStream } from 'node:fs';
import type fs from 'node:fs';
import { lstat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { Digester, type Digest } from '../oci/index.js';
import { SMALL_FILE, readSmallFile } from './file-digests.js';

/** Files read ahead of the tar writer at most (each at most SMALL_FILE bytes in memory). */
const WINDOW = 16;

interface Loaded {
  readonly buf?: Buffer; // small files: the whole content; large ones are streamed when opened
  readonly stat?: fs.BigIntStats;
}

/**
 * The content of a layer's files for writeLayer, read ahead and hashed on the way.
 *
 * writeLayer opens one file after the other; with thousands of small files that is a chain
 * of open/read/close round trips through libuv's thread pool, one file at a time. Here the
 * next WINDOW files (in the order given, which is the layer's path order) are read at once,
 * small ones whole into memory, so the writer mostly finds its content ready. Memory stays
 * bounded by WINDOW small files. Every file's sha256 is computed from the bytes that went
 * into the layer, so a step whose cache key needs the content digests (COPY --no-cache, where
 * no lookup comes first) reads each file once for both. A file opened out of the expected order
 * is simply read then.
 */
export class ReadAhead {
  readonly #ids: readonly string[];
  readonly #files: ReadonlyMap<string, { readonly abs: string; readonly size: number; readonly index: number }>;
  readonly #slots = new Map<number, Promise<Loaded>>();
  readonly #digests = new Map<string, Digest>();
  readonly #onStat: ((id: string, abs: string, stat: fs.BigIntStats, digest: Digest) => void) | undefined;
  readonly #signal: AbortSignal | undefined;
  #next = 0;

  /**
   * `files`: id (the layer path) -> host file and its stat size, in the order writeLayer will
   * open them. `onStat`: lstat each file (bigint) just before reading it and report it with the
   * digest of what was read (for the stat index), once the file has gone into the layer.
   */
  constructor(
    files: ReadonlyArray<{ readonly id: string; readonly abs: string; readonly size: number }>,
    opts: { onStat?: ((id: string, abs: string, stat: fs.BigIntStats, digest: Digest) => void) | undefined; signal?: AbortSignal | undefined } = {},
  ) {
    this.#ids = files.map((f) => f.id);
    this.#files = new Map(files.map((f, index) => [f.id, { abs: f.abs, size: f.size, index }]));
    this.#onStat = opts.onStat;
    this.#signal = opts.signal;
  }

  /** The content source for writeLayer of the file `id`. */
  source(id: string): () => Promise<Readable> {
    return () => this.#open(id);
  }

  /** sha256 of the content `id` gave the layer (known once writeLayer has read it). */
  digest(id: string): Digest | undefined {
    return this.#digests.get(id);
  }

  #load(index: number): Promise<Loaded> {
    const id = this.#ids[index]!;
    const f = this.#files.get(id)!;
    return (async (): Promise<Loaded> => {
      const stat = this.#onStat ? await lstat(f.abs, { bigint: true }) : undefined;
      const size = stat ? Number(stat.size) : f.size;
      if (size > SMALL_FILE) return stat ? { stat } : {};
      return { buf: await readSmallFile(f.abs, size, this.#signal), ...(stat ? { stat } : {}) };
    })();
  }

  /** Starts reading files `from`..`upTo`; files skipped over (opened out of order) are read when opened. */
  #pump(from: number, upTo: number): void {
    this.#next = Math.max(this.#next, from);
    while (this.#next < this.#ids.length && this.#next <= upTo) {
      const i = this.#next++;
      const p = this.#load(i);
      p.catch(() => undefined); // reported when the writer opens it; never an unhandled rejection
      this.#slots.set(i, p);
    }
  }

  async #open(id: string): Promise<Readable> {
    const f = this.#files.get(id);
    if (!f) throw new Error(`read-ahead: no file ${id}`);
    this.#pump(f.index, f.index + WINDOW);
    const slot = this.#slots.get(f.index) ?? this.#load(f.index);
    this.#slots.delete(f.index);
    const loaded = await slot;
    const done = (digest: Digest): void => {
      this.#digests.set(id, digest);
      if (loaded.stat) this.#onStat?.(id, f.abs, loaded.stat, digest);
    };
    if (loaded.buf) {
      const d = new Digester();
      d.update(loaded.buf);
      done(d.digest());
      return Readable.from(loaded.buf.length > 0 ? [loaded.buf] : []);
    }
    const abs = f.abs;
    return Readable.from(
      (async function* () {
        const d = new Digester();
        for await (const chunk of createReadStream(abs) as AsyncIterable<Buffer>) {
          d.update(chunk);
          yield chunk;
        }
        done(d.digest());
      })(),
    );
  }
}

/** Runs `fn` over `items` with at most `limit` at once; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
