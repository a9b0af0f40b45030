import { createWriteStream } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { extract as tarExtract } from 'tar-stream';
import { TsbuildError } from '../errors.js';
import { Digester, type Digest } from '../oci/digest.js';

export interface ApplyOptions {
  readonly signal?: AbortSignal;
  /** chown entries to the tar's uid/gid (needs root or a user namespace). */
  readonly sameOwner?: boolean;
  readonly onWarning?: (message: string) => void;
}

const WH = '.wh.';
const OPAQUE = '.wh..wh..opq';

function unsafe(name: string, why: string): TsbuildError {
  return new TsbuildError('LAYER_UNSAFE', `layer entry ${JSON.stringify(name)} ${why}; refusing to apply it`, {
    hint: 'the layer was crafted to write outside its root or is corrupt; do not use this image',
  });
}

/** Cleans a tar entry name; absolute names and `..` components are refused outright. */
function cleanEntryName(name: string): string[] {
  if (name.startsWith('/')) throw unsafe(name, 'is an absolute path');
  const parts: string[] = [];
  for (const p of name.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') throw unsafe(name, 'contains ".."');
    parts.push(p);
  }
  return parts;
}

async function lstatOrUndefined(p: string) {
  try {
    return await fsp.lstat(p);
  } catch {
    return undefined;
  }
}

/**
 * The host path of directory `parts` under `root`, resolving symlinks as if `root` were
 * `/` (chroot semantics, like containerd's continuity fs.RootPath): a link can never lead
 * out of the root. Missing directories are created (0755); a non-directory standing where
 * a directory must be is replaced, as applying a layer over it would do.
 */
async function secureDir(root: string, parts: readonly string[], create: boolean): Promise<string | undefined> {
  let cur = root;
  const queue = [...parts];
  let hops = 0;
  while (queue.length > 0) {
    const p = queue.shift()!;
    if (p === '..') {
      cur = cur === root ? root : path.dirname(cur);
      continue;
    }
    const next = path.join(cur, p);
    const st = await lstatOrUndefined(next);
    if (!st) {
      if (!create) return undefined;
      await fsp.mkdir(next, { mode: 0o755 });
      cur = next;
      continue;
    }
    if (st.isSymbolicLink()) {
      if (++hops > 255) throw unsafe(parts.join('/'), 'has too many levels of symbolic links');
      const target = await fsp.readlink(next);
      if (target.startsWith('/')) cur = root;
      queue.unshift(...target.split('/').filter((s) => s !== '' && s !== '.'));
      continue;
    }
    if (!st.isDirectory()) {
      if (!create) return undefined;
      await fsp.rm(next, { force: true });
      await fsp.mkdir(next, { mode: 0o755 });
    }
    cur = next;
  }
  // Belt and braces: the walk above cannot leave the root, check it anyway.
  const rel = path.relative(root, cur);
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw unsafe(parts.join('/'), 'resolves outside the root');
  return cur;
}

class Hashing extends Transform {
  readonly digester = new Digester();
  override _transform(chunk: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.digester.update(chunk);
    cb(null, chunk);
  }
}

/**
 * Applies a layer tar (plain or gzip) onto `root` safely: whiteouts and opaque directories
 * remove lower content (OCI image-spec layer.md), nothing is ever written outside `root`
 * (no absolute names, no `..`, symlinks resolved inside the root, hard links only to
 * entries inside it), modes incl. setuid/setgid/sticky set after chown, mtimes kept
 * (directories last). Returns the diff ID of the uncompressed stream.
 * DEBT: xattrs in PAX headers are not set (no xattr API in Node); device nodes are skipped
 * with a warning; fifos are skipped too.
 */
export async function applyLayer(input: Readable, root: string, opts: ApplyOptions = {}): Promise<{ diffId: Digest; entries: number }> {
  const rootAbs = path.resolve(root);
  await fsp.mkdir(rootAbs, { recursive: true });
  const head = await peekStream(input);
  const gz = head.bytes[0] === 0x1f && head.bytes[1] === 0x8b;
  const hashing = new Hashing();
  const ex = tarExtract();
  const feed = gz ? pipeline(head.stream, createGunzip(), hashing, ex, opts.signal ? { signal: opts.signal } : {}) : pipeline(head.stream, hashing, ex, opts.signal ? { signal: opts.signal } : {});
  const dirTimes: Array<{ p: string; mtime: Date }> = [];
  const writtenThisLayer = new Set<string>();
  let count = 0;
  const consume = async () => {
    for await (const entry of ex) {
      opts.signal?.throwIfAborted();
      const h = entry.header;
      const parts = cleanEntryName(h.name);
      count++;
      if (parts.length === 0) {
        entry.resume();
        continue;
      }
      const base = parts[parts.length - 1]!;
      const parentParts = parts.slice(0, -1);
      const rel = parts.join('/');
      if (base === OPAQUE) {
        entry.resume();
        const dir = await secureDir(rootAbs, parentParts, true);
        if (dir) {
          for (const name of await fsp.readdir(dir)) {
            const childRel = [...parentParts, name].join('/');
            if (!writtenThisLayer.has(childRel)) await fsp.rm(path.join(dir, name), { recursive: true, force: true });
          }
        }
        continue;
      }
      if (base.startsWith(WH)) {
        entry.resume();
        const dir = await secureDir(rootAbs, parentParts, false);
        if (dir) await fsp.rm(path.join(dir, base.slice(WH.length)), { recursive: true, force: true });
        continue;
      }
      const dir = (await secureDir(rootAbs, parentParts, true))!;
      const target = path.join(dir, base);
      const existing = await lstatOrUndefined(target);
      const mode = (h.mode ?? 0o644) & 0o7777;
      const mtime = h.mtime ?? new Date(0);
      writtenThisLayer.add(rel);
      switch (h.type) {
        case 'directory': {
          entry.resume();
          if (existing && !existing.isDirectory()) await fsp.rm(target, { force: true });
          if (!existing || !existing.isDirectory()) await fsp.mkdir(target, { mode: 0o755 });
          await setOwnerAndMode(target, h.uid ?? 0, h.gid ?? 0, mode, opts.sameOwner ?? false, false);
          dirTimes.push({ p: target, mtime });
          break;
        }
        case 'file':
        case 'contiguous-file': {
          if (existing) await fsp.rm(target, { recursive: true, force: true });
          await pipeline(entry as unknown as Readable, createWriteStream(target, { flags: 'wx', mode: 0o600 }));
          await setOwnerAndMode(target, h.uid ?? 0, h.gid ?? 0, mode, opts.sameOwner ?? false, false);
          await fsp.utimes(target, mtime, mtime);
          break;
        }
        case 'symlink': {
          entry.resume();
          if (existing) await fsp.rm(target, { recursive: true, force: true });
          await fsp.symlink(h.linkname ?? '', target);
          if (opts.sameOwner) await fsp.lchown(target, h.uid ?? 0, h.gid ?? 0);
          await fsp.lutimes(target, mtime, mtime).catch(() => undefined);
          break;
        }
        case 'link': {
          entry.resume();
          const linkParts = cleanEntryName(h.linkname ?? '');
          const linkDir = await secureDir(rootAbs, linkParts.slice(0, -1), false);
          const linkTarget = linkDir && linkParts.length > 0 ? path.join(linkDir, linkParts[linkParts.length - 1]!) : undefined;
          const tst = linkTarget ? await lstatOrUndefined(linkTarget) : undefined;
          if (!linkTarget || !tst || tst.isDirectory()) throw unsafe(h.name, `is a hard link to ${JSON.stringify(h.linkname)}, which is not a file of this layer's tree`);
          if (existing) await fsp.rm(target, { recursive: true, force: true });
          await fsp.link(linkTarget, target);
          break;
        }
        default: {
          entry.resume();
          opts.onWarning?.(`skipped ${h.type ?? 'unknown'} entry ${h.name}: device nodes and fifos are not created`);
        }
      }
    }
  };
  try {
    await Promise.all([feed, consume()]);
  } catch (e) {
    if (e instanceof TsbuildError || (e as { name?: string }).name === 'AbortError') throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code && /^E[A-Z]+$/.test(code) && code !== 'Z_DATA_ERROR') throw e;
    throw new TsbuildError('LAYER_INVALID', `cannot apply layer: ${(e as Error).message}`, { cause: e });
  }
  // Directory times last: writing children changed them.
  for (const { p, mtime } of dirTimes.reverse()) await fsp.utimes(p, mtime, mtime).catch(() => undefined);
  return { diffId: hashing.digester.digest(), entries: count };
}

async function setOwnerAndMode(p: string, uid: number, gid: number, mode: number, sameOwner: boolean, isLink: boolean): Promise<void> {
  if (sameOwner) await (isLink ? fsp.lchown(p, uid, gid) : fsp.chown(p, uid, gid));
  // chmod after chown: chown clears setuid/setgid.
  if (!isLink) await fsp.chmod(p, mode);
}

/** Reads the first bytes of a stream and gives back a stream that still starts with them. */
async function peekStream(input: Readable): Promise<{ bytes: Buffer; stream: Readable }> {
  const it = input[Symbol.asyncIterator]();
  const first = await it.next();
  const bytes: Buffer = first.done ? Buffer.alloc(0) : Buffer.from(first.value as Buffer);
  async function* rest() {
    if (bytes.length > 0) yield bytes;
    for (;;) {
      const n = await it.next();
      if (n.done) return;
      yield n.value as Buffer;
    }
  }
  return { bytes, stream: Readable.from(rest(), { objectMode: false }) };
}
