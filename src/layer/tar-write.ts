import { createReadStream } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pack as tarPack, type Header } from 'tar-stream';
import { DigestStream, type Digest } from '../oci/digest.js';

/** One entry of a layer to write. Paths are relative, slash-separated, no leading "/". */
export interface LayerEntry {
  readonly path: string;
  readonly type: 'file' | 'dir' | 'symlink' | 'hardlink' | 'whiteout' | 'opaque';
  /** Permission bits including setuid/setgid/sticky. */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Seconds since the epoch (fractions allowed). */
  readonly mtime: number;
  readonly size?: number;
  readonly linkTarget?: string;
  /** File content, opened only when the entry is written. */
  readonly source?: () => Readable | Promise<Readable>;
}

export interface WriteLayerOptions {
  /** Clamp every mtime to this (SOURCE_DATE_EPOCH). */
  readonly sourceDateEpoch?: number;
  readonly signal?: AbortSignal;
}

type TarHeader = Partial<Header> & Pick<Header, 'name'>;

/** Component-wise byte order, so a directory always comes right before its children. */
export function compareLayerPaths(a: string, b: string): number {
  const pa = a.split('/');
  const pb = b.split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const c = Buffer.compare(Buffer.from(pa[i]!), Buffer.from(pb[i]!));
    if (c !== 0) return c;
  }
  return pa.length - pb.length;
}

/**
 * Writes an uncompressed, deterministic layer tar to `out` and returns its diff ID:
 * entries sorted by path, owners as given with empty user/group names, no atime/ctime,
 * mtimes clamped to SOURCE_DATE_EPOCH, directories with a trailing slash, whiteouts as
 * `.wh.NAME` and opaque directories as `DIR/.wh..wh..opq` (OCI image-spec layer.md).
 * Long and non-ASCII names get PAX headers (tar-stream writes them). Content is streamed
 * with backpressure: memory stays flat whatever the file sizes.
 * DEBT: files over 8 GiB need a PAX size record, which tar-stream 3 does not write.
 */
export async function writeLayer(entries: Iterable<LayerEntry> | AsyncIterable<LayerEntry>, out: Writable, opts: WriteLayerOptions = {}): Promise<{ diffId: Digest; size: number }> {
  const list: LayerEntry[] = [];
  for await (const e of entries) list.push(e);
  list.sort((a, b) => compareLayerPaths(markerPath(a), markerPath(b)));

  const pack = tarPack();
  const hasher = new DigestStream();
  const done = pipeline(pack, hasher, out, opts.signal ? { signal: opts.signal } : {});
  const epoch = opts.sourceDateEpoch;
  try {
    for (const e of list) {
      opts.signal?.throwIfAborted();
      const mtime = new Date(Math.floor((epoch !== undefined ? Math.min(e.mtime, epoch) : e.mtime) * 1000));
      const base: TarHeader = { name: markerPath(e), mode: e.mode & 0o7777, uid: e.uid, gid: e.gid, uname: '', gname: '', mtime };
      switch (e.type) {
        case 'dir':
          await addEntry(pack, { ...base, name: `${e.path}/`, type: 'directory' });
          break;
        case 'symlink':
          await addEntry(pack, { ...base, type: 'symlink', linkname: e.linkTarget ?? '' });
          break;
        case 'hardlink':
          await addEntry(pack, { ...base, type: 'link', linkname: e.linkTarget ?? '' });
          break;
        case 'whiteout':
        case 'opaque':
          await addEntry(pack, { ...base, type: 'file', size: 0 });
          break;
        case 'file': {
          const size = e.size ?? 0;
          if (!e.source || size === 0) {
            await addEntry(pack, { ...base, type: 'file', size: 0 });
            break;
          }
          const src = await e.source();
          await new Promise<void>((resolve, reject) => {
            const sink = pack.entry({ ...base, type: 'file', size }, (err) => (err ? reject(err) : resolve()));
            pipeline(src, sink).catch(reject);
          });
          break;
        }
      }
    }
    pack.finalize();
    await done;
  } catch (err) {
    pack.destroy(err as Error);
    await done.catch(() => undefined);
    throw err;
  }
  const r = hasher.result();
  return { diffId: r.digest, size: r.size };
}

function markerPath(e: LayerEntry): string {
  if (e.type === 'whiteout') {
    const dir = path.posix.dirname(e.path);
    return dir === '.' ? `.wh.${path.posix.basename(e.path)}` : `${dir}/.wh.${path.posix.basename(e.path)}`;
  }
  if (e.type === 'opaque') return `${e.path}/.wh..wh..opq`;
  return e.path;
}

function addEntry(pack: ReturnType<typeof tarPack>, header: TarHeader): Promise<void> {
  return new Promise((resolve, reject) => {
    pack.entry(header, (err) => (err ? reject(err) : resolve()));
  });
}

/**
 * The entries of a directory tree, for writing it as a layer (`--output type=tar`, import):
 * sorted, symlinks never followed, hard links within the tree kept as links (the first
 * path of an inode is the file, later ones link to it).
 * DEBT: extended attributes (security.capability, ...) are not captured: Node has no xattr API.
 */
export async function* layerFromDirectory(root: string, opts: { sourceDateEpoch?: number; signal?: AbortSignal } = {}): AsyncGenerator<LayerEntry> {
  const seen = new Map<string, string>();
  async function* walk(dir: string, rel: string): AsyncGenerator<LayerEntry> {
    const names = (await fsp.readdir(dir)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const name of names) {
      opts.signal?.throwIfAborted();
      const abs = path.join(dir, name);
      const p = rel === '' ? name : `${rel}/${name}`;
      const st = await fsp.lstat(abs);
      const meta = { path: p, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: Math.floor(st.mtimeMs) / 1000 };
      if (st.isDirectory()) {
        yield { ...meta, type: 'dir' };
        yield* walk(abs, p);
      } else if (st.isSymbolicLink()) {
        yield { ...meta, type: 'symlink', linkTarget: await fsp.readlink(abs) };
      } else if (st.isFile()) {
        const inode = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1 ? seen.get(inode) : undefined;
        if (first !== undefined) {
          yield { ...meta, type: 'hardlink', linkTarget: first };
        } else {
          if (st.nlink > 1) seen.set(inode, p);
          yield { ...meta, type: 'file', size: st.size, source: () => createReadStream(abs) };
        }
      }
      // sockets, fifos and devices are not written (DEBT: fifos and devices as root).
    }
  }
  yield* walk(root, '');
}
