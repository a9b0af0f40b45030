import type { Stats } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { TsbuildError } from '../errors.js';
import { fileContent, type LayerEntry } from './write-layer.js';

export interface LayerFromDirectoryOptions {
  /** Clamp every mtime to this epoch (writeLayer clamps again; harmless). */
  readonly sourceDateEpoch?: number | undefined;
  readonly signal?: AbortSignal | undefined;
  /** Owner recorded for each file; default: the file's own uid/gid. Use it to map host IDs back. */
  readonly ownership?: ((stat: Stats) => { uid: number; gid: number }) | undefined;
  /**
   * Place the tree under this layer path (e.g. "app"); the root directory itself is then
   * emitted as that directory. Without a prefix the root itself is not emitted.
   */
  readonly prefix?: string | undefined;
}

/**
 * Walks `root` and yields one LayerEntry per file system object, in sorted order (byte order
 * of names, parents before children — the order writeLayer writes).
 *
 * - lstat only: symlinks are recorded as symlinks, never followed.
 * - Hard links inside the tree: the first path of an inode (dev+ino) in walk order is the file;
 *   later paths become `hardlink` entries pointing at it. Since the walk order is the tar order,
 *   the target always precedes the link.
 * - Sockets are skipped (docker does the same: they cannot be meaningfully archived).
 * - Content is streamed: each file's `source` opens it only when the writer reaches it.
 *
 * DEBT(#14, xattrs): node has no xattr API, so extended attributes (security.capability for
 * setcap'd binaries, user.* attributes, ACLs) are not captured. Capturing them needs a native
 * addon or a `getfattr` child process per file; until then a file like /bin/ping loses its
 * capabilities in captured layers.
 */
export async function* layerFromDirectory(root: string, opts: LayerFromDirectoryOptions = {}): AsyncIterable<LayerEntry> {
  const signal = opts.signal;
  const seen = new Map<string, string>(); // "dev:ino" -> first layer path
  const prefix = opts.prefix === undefined ? '' : opts.prefix.replace(/^\/+|\/+$/g, '').replace(/^\.\/?/, '');
  const rootStat = await fsp.lstat(root);
  if (!rootStat.isDirectory()) {
    throw new TsbuildError('LAYER_INVALID', `cannot make a layer from ${root}: not a directory`);
  }
  if (prefix !== '') yield toEntry(prefix, root, rootStat, opts, seen);
  yield* walk(root, prefix);

  async function* walk(dirAbs: string, dirRel: string): AsyncGenerator<LayerEntry> {
    signal?.throwIfAborted();
    const names = (await fsp.readdir(dirAbs)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const name of names) {
      signal?.throwIfAborted();
      const abs = path.join(dirAbs, name);
      const rel = dirRel === '' ? name : `${dirRel}/${name}`;
      const st = await fsp.lstat(abs);
      if (st.isSocket()) continue;
      yield toEntry(rel, abs, st, opts, seen);
      if (st.isDirectory()) yield* walk(abs, rel);
    }
  }
}

function toEntry(rel: string, abs: string, st: Stats, opts: LayerFromDirectoryOptions, seen: Map<string, string>): LayerEntry | Promise<LayerEntry> {
  const owner = opts.ownership ? opts.ownership(st) : { uid: st.uid, gid: st.gid };
  let mtime = Math.floor(st.mtimeMs / 1000);
  if (opts.sourceDateEpoch !== undefined) mtime = Math.min(mtime, opts.sourceDateEpoch);
  const base = { path: rel, mode: st.mode & 0o7777, uid: owner.uid, gid: owner.gid, mtime };
  if (st.isDirectory()) return { ...base, type: 'dir' };
  if (st.isSymbolicLink()) return fsp.readlink(abs).then((target) => ({ ...base, type: 'symlink' as const, linkTarget: target }));
  if (st.isFIFO()) return { ...base, type: 'fifo' };
  if (st.isCharacterDevice() || st.isBlockDevice()) {
    return { ...base, type: st.isCharacterDevice() ? 'char' : 'block', devmajor: major(st.rdev), devminor: minor(st.rdev) };
  }
  if (st.nlink > 1) {
    const id = `${st.dev}:${st.ino}`;
    const first = seen.get(id);
    if (first !== undefined) return { ...base, type: 'hardlink', linkTarget: first };
    seen.set(id, rel);
  }
  // 1 MiB reads: measured ~1.27 GB/s through writeLayer against ~0.74 GB/s with the 64 KiB default.
  return { ...base, type: 'file', size: st.size, source: () => fileContent(abs, st.size, 1024 * 1024) };
}

// Linux dev_t encoding (glibc gnu_dev_major/minor), for values that fit a JS number.
function major(dev: number): number {
  return Number(((BigInt(dev) >> 8n) & 0xfffn) | ((BigInt(dev) >> 32n) & ~0xfffn));
}
function minor(dev: number): number {
  return Number((BigInt(dev) & 0xffn) | ((BigInt(dev) >> 12n) & ~0xffn));
}
