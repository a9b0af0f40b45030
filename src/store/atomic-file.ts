import { randomBytes } from 'node:crypto';
import { closeSync, fsync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open, rename, rm, unlink, link, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { TsbuildError } from '../errors.js';
import { ownerTag } from '../host/index.js';

/**
 * Small file-system primitives the store is built from. The pattern everywhere is the one
 * containerd and pnpm use: write to a temp file in the store's own tmp/ (same file system,
 * so rename(2) is atomic), fsync it, rename it into place, fsync the directory so the rename
 * itself survives a crash. Readers therefore see either the old file or the new one.
 *
 * Small documents (the lock file, leases, index.json, meta/ entries, manifests and configs)
 * are read and written with synchronous calls: each asynchronous fs call is a round trip
 * through libuv's thread pool, ~50 µs here against ~4 µs for the same call made directly, and
 * a fully cached build makes a couple of hundred of them (docs/design.md, "Small files are
 * synchronous"). Blobs and trees stay asynchronous and streamed.
 */

/** A fresh temp path under `tmpDir` whose name records this process (see process-owner.ts). */
export function tempPath(tmpDir: string, kind: string): string {
  // The kind must keep the name parseable (parseTempOwner), or gc would treat a live
  // writer's file as foreign and remove it once it is an hour old.
  if (!/^[a-z][a-z-]{0,31}$/.test(kind)) throw new Error(`temp kind ${JSON.stringify(kind)} must be lowercase letters and dashes`);
  return join(tmpDir, `${ownerTag()}-${randomBytes(6).toString('hex')}.${kind}`);
}

/** fsync a directory so a rename or unlink in it is durable (POSIX leaves this to the caller). */
export async function fsyncDir(dir: string): Promise<void> {
  let h: FileHandle | undefined;
  try {
    h = await open(dir, 'r');
    await h.sync();
  } catch (e) {
    // Some file systems refuse fsync on a directory (EINVAL/EISDIR/EPERM); the rename is still
    // atomic there, only its durability across power loss is weaker.
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'EBADF') throw e;
  } finally {
    await h?.close();
  }
}

/** fsyncDir without the thread pool, for the synchronous small-file path. */
function fsyncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'EBADF') throw e;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * writeFileAtomic for a small document (a few KB to a few MB), with synchronous calls: the
 * same temp + (fsync) + rename + (fsync dir) sequence, without a thread-pool round trip per
 * step. The event loop is blocked for the write itself, microseconds for what it is used for.
 */
export function writeSmallFileAtomicSync(dest: string, data: Uint8Array | string, opts: { tmpDir: string; mode?: number; durable?: boolean }): void {
  const durable = opts.durable ?? true;
  const { tmp, fd } = writeSmallTemp(opts.tmpDir, data, opts.mode);
  try {
    if (durable) fsyncSync(fd);
    closeSync(fd);
  } catch (e) {
    discardTemp(tmp, fd);
    throw e;
  }
  renameTempSync(tmp, dest);
  if (durable) fsyncDirSync(join(dest, '..'));
}

/** A new temp file in `tmpDir` holding `data`, still open (the caller syncs and closes it); nothing is left on failure. */
function writeSmallTemp(tmpDir: string, data: Uint8Array | string, mode: number | undefined): { tmp: string; fd: number } {
  const tmp = tempPath(tmpDir, 'write');
  const fd = openSync(tmp, 'wx', mode ?? 0o644);
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
  } catch (e) {
    discardTemp(tmp, fd);
    throw e;
  }
  return { tmp, fd };
}

function discardTemp(tmp: string, fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
  rmSync(tmp, { force: true });
}

function renameTempSync(tmp: string, dest: string): void {
  try {
    renameSync(tmp, dest);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
}

/** fsync(2) of an open descriptor on libuv's thread pool: the one call here that waits for the disk. */
function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsync(fd, (e) => (e ? reject(e) : resolve())));
}

/** fsyncDir with a synchronous open and close: one thread-pool trip instead of three. */
async function fsyncDirFd(dir: string): Promise<void> {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    await fsyncFd(fd);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM' && code !== 'EBADF') throw e;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * writeFileAtomic for a small document (index.json, meta/ entries): the same temp + fsync +
 * rename + fsync dir, durable when it resolves (`durable: false`, for memos: temp + rename). Opening, writing, renaming and closing are
 * synchronous (page-cache work, microseconds); only the two fsyncs go to the thread pool, so
 * the event loop never waits for the disk. Two thread-pool trips instead of eight: behind a
 * push's deflate jobs on that pool, each trip waited for a 1 MiB block to compress.
 */
export async function writeSmallFileAtomic(dest: string, data: Uint8Array | string, opts: { tmpDir: string; mode?: number; signal?: AbortSignal | undefined; durable?: boolean | undefined }): Promise<void> {
  opts.signal?.throwIfAborted();
  const { tmp, fd } = writeSmallTemp(opts.tmpDir, data, opts.mode);
  const durable = opts.durable !== false;
  try {
    if (durable) await fsyncFd(fd);
    closeSync(fd);
  } catch (e) {
    discardTemp(tmp, fd);
    throw e;
  }
  renameTempSync(tmp, dest);
  // Not durable (a memo, MetaOptions): readers see the old or the new document whole; after
  // a crash of the machine perhaps neither, which a memo's reader takes as absent.
  if (durable) await fsyncDirFd(join(dest, '..'));
}

/** Write `data` (or its pieces, in order) to a new temp file and fsync it; returns the temp path. */
async function writeTemp(tmpDir: string, data: Uint8Array | string | Iterable<string>, mode: number, signal?: AbortSignal, durable = true): Promise<string> {
  signal?.throwIfAborted();
  const tmp = tempPath(tmpDir, 'write');
  const h = await open(tmp, 'wx', mode);
  try {
    if (typeof data === 'string' || data instanceof Uint8Array) {
      await h.writeFile(data, signal ? { signal } : {});
    } else {
      for (const piece of data) {
        signal?.throwIfAborted();
        const bytes = Buffer.from(piece, 'utf8');
        for (let off = 0; off < bytes.length; ) off += (await h.write(bytes, off, bytes.length - off)).bytesWritten;
      }
    }
    if (durable) await h.sync();
  } catch (e) {
    await h.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw e;
  }
  await h.close();
  return tmp;
}

/** Replace `dest` atomically with `data` (temp + fsync + rename + fsync dir). */
export async function writeFileAtomic(
  dest: string,
  data: Uint8Array | string | Iterable<string>,
  opts: {
    tmpDir: string;
    mode?: number;
    signal?: AbortSignal | undefined;
    /** false: atomic but not crash-durable (no fsync), for files that mean nothing after a crash. */
    durable?: boolean;
  },
): Promise<void> {
  const durable = opts.durable ?? true;
  const tmp = await writeTemp(opts.tmpDir, data, opts.mode ?? 0o644, opts.signal, durable);
  try {
    await rename(tmp, dest);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  if (durable) await fsyncDir(join(dest, '..'));
}

/**
 * Create `dest` with `data` only if it does not exist, atomically and with full content
 * (link(2) fails with EEXIST instead of replacing). Returns false if it already existed.
 * Used to initialise a layout that two processes may be creating at the same moment.
 */
export async function createFileIfAbsent(
  dest: string,
  data: Uint8Array | string,
  opts: { tmpDir: string; mode?: number },
): Promise<boolean> {
  const tmp = await writeTemp(opts.tmpDir, data, opts.mode ?? 0o644);
  try {
    await link(tmp, dest);
    await fsyncDir(join(dest, '..'));
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

/**
 * File-system failures a user can fix (permissions, read-only or full disk, a file where the
 * store expects a directory) become STORE_IO with the path, instead of surfacing as an
 * "internal error". Anything else is rethrown unchanged.
 */
const USER_FIXABLE = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT', 'ENOTDIR', 'EMFILE', 'ENFILE']);

export function storeIoError(e: unknown, action: string): unknown {
  const code = errnoCode(e);
  if (code === undefined || !USER_FIXABLE.has(code)) return e;
  const path = (e as NodeJS.ErrnoException).path;
  const hint =
    code === 'ENOSPC' || code === 'EDQUOT'
      ? 'free disk space (tsbuild gc removes unreferenced blobs) or move the store with --root'
      : code === 'EMFILE' || code === 'ENFILE'
        ? 'raise the open-file limit (ulimit -n)'
        : 'check that the store directory (--root) is a directory you can write to';
  const what = code === 'ENOSPC' ? ' (no space left on device)' : code === 'EDQUOT' ? ' (disk quota exceeded)' : '';
  return new TsbuildError('STORE_IO', `cannot ${action}: ${code}${what}${path ? ` on ${path}` : ''}`, { hint, cause: e });
}

export function errnoCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null ? ((e as NodeJS.ErrnoException).code ?? undefined) : undefined;
}
