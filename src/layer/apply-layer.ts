import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { extract as tarExtract, type Extract, type Header } from 'tar-stream';
import { CAPABILITY_XATTR, PaxCapabilityTap, type EntryCapability } from './pax-xattrs.js';
import { TsbuildError, isAbortError } from '../errors.js';
import { DigestStream, type Digest } from '../oci/index.js';
import { sniffLayerCompression, type LayerCompression } from './compress.js';
import { cleanEntryName, joinInRoot, resolveInRootSync } from './root-path.js';
import { OPAQUE_WHITEOUT, WHITEOUT_PREFIX } from './write-layer.js';

// node:child_process loads when a device node or capability needs a program (mknod, setfattr),
// not with every command that imports layer/ (an export of a small image).
const execFileAsync = (file: string, args: readonly string[], opts: { signal?: AbortSignal }): Promise<unknown> =>
  promisify((createRequire(import.meta.url)('node:child_process') as typeof import('node:child_process')).execFile)(file, args, opts);

export interface ApplyLayerOptions {
  readonly signal?: AbortSignal | undefined;
  /** chown every entry to the tar's uid/gid (default: true when running as root). */
  readonly sameOwner?: boolean | undefined;
  /**
   * Create character and block devices (default: true when running as root). Node has no
   * mknod, so devices and FIFOs are made by the `mknod`/`mkfifo` programs; when not allowed, or
   * when that fails (no CAP_MKNOD in a user namespace), the device is skipped with a warning.
   */
  readonly allowDevices?: boolean | undefined;
  /** Called for each thing that could not be applied exactly (skipped devices, xattrs, ...). */
  readonly onWarning?: ((message: string) => void) | undefined;
  /**
   * The tree is a plain host directory, not a rootfs for a sandbox (`--output type=local`):
   * an image's device nodes there would open the host's disks to whoever may write them, and
   * its setuid/setgid files and file capabilities would grant privilege on the host. So
   * character and block devices are skipped, setuid/setgid bits of non-directories cleared and
   * file capabilities not set; each kind is summed up in one warning per layer.
   */
  readonly dropSpecial?: boolean | undefined;
  /**
   * `root` is a directory of the caller's that nothing else reads or writes until the caller
   * keeps it whole or removes it whole (a snapshot being made in a temporary directory): files
   * are then created under their final names (still O_EXCL, never through a symlink) instead of
   * a temporary name renamed into place, as a failed apply leaves nothing anyone sees.
   */
  readonly privateRoot?: boolean | undefined;
}

export interface AppliedLayer {
  /** sha256 of the uncompressed tar, computed while applying. */
  readonly diffId: Digest;
  /** Bytes of the uncompressed tar. */
  readonly size: number;
  /** Tar entries read (whiteouts and skipped entries included). */
  readonly entries: number;
  readonly compression: LayerCompression;
  /** How many warnings were reported through onWarning. */
  readonly warnings: number;
}

/** Tar headers as tar-stream gives them, with the PAX records it keeps but does not type. */
type TarHeader = Omit<Header, 'type' | 'pax'> & { type: Header['type'] | null; pax?: Record<string, string> | null };
/** One entry from tar-stream's extract (a streamx Readable, consumed as an async iterable). */
type Entry = AsyncIterable<unknown> & { readonly header: Header };

const KNOWN_TYPES: ReadonlySet<string> = new Set(['file', 'contiguous-file', 'directory', 'symlink', 'link', 'character-device', 'block-device', 'fifo']);

interface DeferredDir {
  readonly mode: number;
  readonly mtime: number;
}

/**
 * Applies a layer (gzip, zstd where node has it, or plain tar — sniffed by magic bytes) on top
 * of the tree at `root`, the way containerd's applyNaive does (archive/tar.go), and never
 * writes outside `root`:
 *
 * - Entry names are cleaned (leading "/" dropped with a warning, "." dropped, ".." popped); a name
 *   that climbs above the root is LAYER_UNSAFE and stops the apply.
 * - The parent of every entry is resolved chroot-style (resolveInRoot, a port of continuity's
 *   RootPath): symlinks in parents are followed but can never lead out of root. The last
 *   component is never followed: whatever is there (file, symlink, directory) is removed
 *   first, unless both old and new are directories.
 * - `.wh.NAME` removes NAME; `.wh..wh..opq` empties its directory of everything this layer has
 *   not itself put there (so the marker works wherever it sorts, as in containerd).
 * - Hard links must name something inside the root that exists already (from this layer or
 *   one below) and is not a directory; otherwise LAYER_INVALID (or LAYER_UNSAFE when the
 *   target name climbs out).
 * - Regular files are written to a temporary name in their directory and renamed into place
 *   once complete, so a failed apply never leaves a truncated file under the final name.
 * - Ownership (lchown) first, then mode (chown clears setuid/setgid), then times; symlinks get
 *   lchown and lutimes. Directory modes and times are set after the whole layer is written
 *   (children change a directory's mtime; a read-only directory would block its children).
 *
 * - File capabilities (PAX `SCHILY.xattr.security.capability`, read raw by pax-xattrs.ts, as
 *   tar-stream decodes PAX values as UTF-8) are set with setfattr on the finished file, before
 *   it is renamed into place.
 * DEBT(#14, xattrs): other extended attributes (user.*, ACLs) are not applied: node has no
 * setxattr without a native addon. Each entry carrying them is reported through onWarning.
 *
 * Speed: the file system calls of one entry are synchronous. Awaited one by one, each call was a
 * round trip through libuv's thread pool (about a dozen per file: 6 s for Debian's 6,661 entries,
 * GNU tar 0.4 s); made in a row they cost what the system calls cost. The event loop still turns
 * between entries and between the chunks of a file, where the tar stream is awaited. Resolved
 * parents and the directories known to exist are cached until the layer removes something or
 * creates a link.
 */
export async function applyLayer(tarStream: Readable, root: string, opts: ApplyLayerOptions = {}): Promise<AppliedLayer> {
  const signal = opts.signal;
  const rootAbs = path.resolve(root);
  await fsp.mkdir(rootAbs, { recursive: true });
  const { raw, decompressor, compression } = await sniffLayerCompression(tarStream, { signal });
  const digest = new DigestStream();
  const caps = new PaxCapabilityTap();
  const extract = tarExtract();
  const sink = extractSink(extract);
  const piped = decompressor
    ? pipeline(raw, decompressor, digest, caps, sink, signal ? { signal } : {})
    : pipeline(raw, digest, caps, sink, signal ? { signal } : {});
  piped.catch(() => undefined); // awaited below; this only keeps an early rejection handled
  const applier = new Applier(rootAbs, opts);
  let entries = 0;
  try {
    for await (const entry of extract) {
      signal?.throwIfAborted();
      // The tap is upstream of the extract: it has seen this entry's header already.
      await applier.apply(entry, caps.byEntry.get(entries));
      caps.byEntry.delete(entries);
      entries++;
    }
    await piped;
    await applier.finish();
    applier.reportDropped();
  } catch (e) {
    extract.destroy();
    sink.destroy(); // the pipeline settles once every stream of it is done with
    raw.destroy();
    tarStream.destroy();
    const pipeErr = await piped.then(
      () => undefined,
      (err: unknown) => err,
    );
    // A tar/gzip error surfaces in both; prefer ours (it names the entry) unless it is secondary.
    // A failed write of ours (a full disk) is the cause: the pipeline then only reports the
    // premature close our teardown made.
    throw mapApplyError(e instanceof TsbuildError || isErrnoError(e) ? e : (pipeErr ?? e), applier.current);
  }
  const r = digest.result();
  return { diffId: r.digest, size: r.size, entries, compression, warnings: applier.warnings };
}

/** An error of a system call (ENOSPC from write, EACCES from open), as node reports it. */
function isErrnoError(e: unknown): boolean {
  const err = e as NodeJS.ErrnoException | undefined;
  return typeof err?.code === 'string' && /^E[A-Z]+$/.test(err.code) && typeof err.syscall === 'string';
}

function mapApplyError(e: unknown, entry: string | undefined): unknown {
  if (e instanceof TsbuildError || isAbortError(e)) return e;
  const err = e as NodeJS.ErrnoException;
  const where = entry === undefined ? '' : ` (at or after entry ${JSON.stringify(entry)})`;
  if (isErrnoError(e)) {
    return new TsbuildError('LAYER_IO', `applying the layer failed${where}: ${err.message}`, { cause: e });
  }
  return new TsbuildError('LAYER_INVALID', `the layer is not a valid tar${where}: ${err.message ?? String(e)}`, {
    cause: e,
    hint: 'the blob may be truncated or corrupt; pull it again',
  });
}

/**
 * A node Writable feeding tar-stream's (streamx) extract with backpressure, so node's pipeline
 * can end in it. Ending it ends the extract; the extract's own end-of-data check then surfaces
 * through its async iterator.
 */
function extractSink(extract: Extract): Writable {
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (extract.write(chunk)) return cb();
      // A write waiting for 'drain' must also end when the extract is destroyed (the applier
      // failed, say ENAMETOOLONG): streamx then never drains, and a callback never called
      // would leave the pipeline, and the whole apply, pending forever.
      const onDrain = (): void => {
        extract.off('close', onClose);
        cb();
      };
      const onClose = (): void => {
        extract.off('drain', onDrain);
        cb(new Error('the tar reader was closed before the layer was fully read'));
      };
      extract.once('drain', onDrain);
      extract.once('close', onClose);
    },
    final(cb) {
      (extract as unknown as { end(): unknown }).end(); // streamx types demand an argument it does not need
      cb();
    },
    destroy(err, cb) {
      if (err) extract.destroy(err);
      cb(err);
    },
  });
  extract.on('error', (e: Error) => sink.destroy(e));
  return sink;
}

async function drain(entry: Entry): Promise<void> {
  for await (const chunk of entry) void chunk;
}

class Applier {
  readonly #root: string;
  readonly #opts: ApplyLayerOptions;
  readonly #sameOwner: boolean;
  readonly #allowDevices: boolean;
  /** Paths this layer created, plus their ancestors (what an opaque marker must keep). */
  readonly #unpacked = new Set<string>();
  readonly #deferred = new Map<string, DeferredDir>();
  readonly #parentCache = new Map<string, string>();
  /** Resolved paths known to be directories (no symlink on the way) since the last invalidation. */
  readonly #dirs = new Set<string>();
  #tmpCounter = 0;
  #warnedAbsolute = false;
  /** What dropSpecial left out, by kind: how many, and the first path. */
  readonly #dropped = new Map<'devices' | 'setuid' | 'capabilities', { count: number; first: string }>();
  warnings = 0;
  /** The entry being applied, for error messages. */
  current: string | undefined;

  constructor(root: string, opts: ApplyLayerOptions) {
    this.#root = root;
    this.#opts = opts;
    const isRoot = process.getuid?.() === 0;
    this.#sameOwner = opts.sameOwner ?? isRoot;
    this.#allowDevices = opts.allowDevices ?? isRoot;
  }

  #warn(msg: string): void {
    this.warnings++;
    this.#opts.onWarning?.(msg);
  }

  #drop(kind: 'devices' | 'setuid' | 'capabilities', rel: string): void {
    const d = this.#dropped.get(kind);
    if (d) d.count++;
    else this.#dropped.set(kind, { count: 1, first: rel });
  }

  /** One warning per kind of entry dropSpecial left out of this layer. */
  reportDropped(): void {
    const what = { devices: 'device nodes skipped', setuid: 'files had their setuid/setgid bits cleared', capabilities: 'files had their file capabilities left out' } as const;
    for (const [kind, d] of this.#dropped) this.#warn(`${d.count} ${what[kind]} (first: ${JSON.stringify(d.first)})`);
  }

  #resolveParent(parentRel: string, what: string): string {
    if (parentRel === '') return '';
    const cached = this.#parentCache.get(parentRel);
    if (cached !== undefined) return cached;
    const r = resolveInRootSync(this.#root, parentRel, what);
    this.#parentCache.set(parentRel, r);
    return r;
  }

  /** Something was removed or linked: cached resolutions may be stale. */
  #invalidate(): void {
    this.#parentCache.clear();
    this.#dirs.clear();
  }

  #markUnpacked(rel: string): void {
    let p = rel;
    while (p !== '' && !this.#unpacked.has(p)) {
      this.#unpacked.add(p);
      const i = p.lastIndexOf('/');
      p = i < 0 ? '' : p.slice(0, i);
    }
  }

  /** `rel` is resolved: its existing components are no symlinks, so mkdir -p stays inside. */
  #ensureDir(rel: string, what: string): void {
    if (rel === '' || this.#dirs.has(rel)) return;
    try {
      fs.mkdirSync(joinInRoot(this.#root, rel), { recursive: true, mode: 0o755 });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOTDIR' || code === 'EEXIST') {
        throw new TsbuildError('LAYER_INVALID', `tar entry ${JSON.stringify(what)}: a parent directory is not a directory`, { cause: e });
      }
      throw e;
    }
    this.#dirs.add(rel);
  }

  async apply(entry: Entry, capability?: EntryCapability): Promise<void> {
    const h = entry.header as TarHeader;
    const name = h.name;
    this.current = name;
    const { rel, absolute } = cleanEntryName(name);
    if (absolute && !this.#warnedAbsolute) {
      this.#warnedAbsolute = true;
      this.#warn(`layer has absolute names (first: ${JSON.stringify(name)}); applied relative to the root`);
    }
    if (rel === '') {
      // The root itself ("./"): its owner and mode belong to whoever made `root`.
      await drain(entry);
      if (h.type !== 'directory') throw new TsbuildError('LAYER_INVALID', `tar entry ${JSON.stringify(name)} names the root but is not a directory`);
      return;
    }
    const slash = rel.lastIndexOf('/');
    const parentRel = slash < 0 ? '' : rel.slice(0, slash);
    const base = slash < 0 ? rel : rel.slice(slash + 1);
    const parent = this.#resolveParent(parentRel, name);

    if (base.startsWith(WHITEOUT_PREFIX)) {
      await drain(entry);
      if (base === OPAQUE_WHITEOUT) return this.#opaque(parent);
      const victim = base.slice(WHITEOUT_PREFIX.length);
      if (victim === '' || victim === '.' || victim === '..') {
        throw new TsbuildError('LAYER_INVALID', `tar entry ${JSON.stringify(name)} is a whiteout without a valid name`);
      }
      fs.rmSync(joinInRoot(this.#root, join(parent, victim)), { recursive: true, force: true });
      this.#invalidate();
      return;
    }

    const targetRel = join(parent, base);
    const abs = joinInRoot(this.#root, targetRel);
    const pax = h.pax ?? {};
    const uid = pax['uid'] !== undefined ? Number(pax['uid']) : (h.uid ?? 0);
    const gid = pax['gid'] !== undefined ? Number(pax['gid']) : (h.gid ?? 0);
    const mtime = pax['mtime'] !== undefined ? Number(pax['mtime']) : (h.mtime?.getTime() ?? 0) / 1000;
    const mode = (h.mode ?? 0) & 0o7777;
    if (!Number.isFinite(uid) || !Number.isFinite(gid) || !Number.isFinite(mtime) || uid < 0 || gid < 0) {
      throw new TsbuildError('LAYER_INVALID', `tar entry ${JSON.stringify(name)} has invalid owner or time`);
    }
    const others = h.pax ? Object.keys(pax).filter((k) => /^(SCHILY|LIBARCHIVE)\.xattr\./.test(k) && !k.endsWith(`.xattr.${CAPABILITY_XATTR}`)) : [];
    if (others.length > 0) {
      this.#warn(`extended attributes of ${JSON.stringify(rel)} other than ${CAPABILITY_XATTR} were not applied (${others.map((k) => k.replace(/^\w+\.xattr\./, '')).join(', ')})`);
    }
    // The tap's raw value, if it is for this very entry (and tar-stream saw the record too).
    const recorded = `SCHILY.xattr.${CAPABILITY_XATTR}` in pax || `LIBARCHIVE.xattr.${CAPABILITY_XATTR}` in pax;
    const fileCap = capability !== undefined && capability.name === name && recorded ? capability.value : undefined;

    if (!KNOWN_TYPES.has(h.type ?? '')) {
      // tar-stream reports typeflags it does not know (GNU sparse 'S', volume labels, ...) as null.
      await drain(entry);
      this.#warn(`tar entry ${JSON.stringify(name)} of an unsupported type skipped`);
      return;
    }

    // Hard link target: checked before anything at the link's own path is removed.
    let linkAbs: string | undefined;
    if (h.type === 'link') {
      const target = cleanEntryName(h.linkname ?? '', name).rel;
      if (target === '') throw new TsbuildError('LAYER_INVALID', `hard link ${JSON.stringify(name)} has no target`);
      const ts = target.lastIndexOf('/');
      const tParent = this.#resolveParent(ts < 0 ? '' : target.slice(0, ts), name);
      const tRel = join(tParent, ts < 0 ? target : target.slice(ts + 1));
      linkAbs = joinInRoot(this.#root, tRel);
      const st = lstatOrUndefined(linkAbs);
      if (!st || st.isDirectory()) {
        throw new TsbuildError('LAYER_INVALID', `hard link ${JSON.stringify(name)} points at ${JSON.stringify(h.linkname)}, which is ${st ? 'a directory' : 'not in the layer or below it'}`);
      }
      if (tRel === targetRel) {
        await drain(entry);
        return;
      }
    }

    this.#ensureDir(parent, name);
    const existing = lstatOrUndefined(abs);
    if (existing && !(existing.isDirectory() && h.type === 'directory')) {
      fs.rmSync(abs, { recursive: true, force: true });
      this.#invalidate();
    }
    this.#markUnpacked(targetRel);

    switch (h.type) {
      case 'directory':
        await drain(entry);
        if (!existing?.isDirectory()) fs.mkdirSync(abs, { mode: 0o700 });
        if (this.#sameOwner) fs.lchownSync(abs, uid, gid);
        this.#deferred.set(targetRel, { mode, mtime });
        this.#dirs.add(targetRel);
        return;
      case 'file':
      case 'contiguous-file': {
        // A private root is thrown away whole on failure; elsewhere a file is written under a
        // temporary name and renamed into place once complete.
        const direct = this.#opts.privateRoot === true;
        const tmp = direct ? abs : joinInRoot(this.#root, join(parent, `.tsbuild-apply-${process.pid}-${this.#tmpCounter++}`));
        try {
          // 'wx' = O_CREAT|O_EXCL: never opens through a symlink. Not node's pipeline: the
          // entry is a streamx stream, which node's end-of-stream detection does not understand.
          const fd = fs.openSync(tmp, 'wx', 0o600);
          try {
            for await (const chunk of entry) {
              this.#opts.signal?.throwIfAborted();
              const buf = chunk as Buffer;
              let off = 0;
              while (off < buf.length) off += fs.writeSync(fd, buf, off, buf.length - off);
            }
            if (this.#sameOwner) fs.fchownSync(fd, uid, gid);
            let fileMode = mode;
            if (this.#opts.dropSpecial && mode & 0o6000) {
              fileMode &= ~0o6000;
              this.#drop('setuid', rel);
            }
            fs.fchmodSync(fd, fileMode); // after chown: chown clears setuid/setgid
            fs.futimesSync(fd, mtime, mtime);
          } finally {
            fs.closeSync(fd);
          }
          // After chown, which clears file capabilities; on the temp name, which this layer
          // just created in a parent resolved inside the root.
          if (fileCap && this.#opts.dropSpecial) this.#drop('capabilities', rel);
          else if (fileCap) await this.#setCapability(tmp, fileCap, rel);
          if (!direct) fs.renameSync(tmp, abs);
        } catch (e) {
          if (!direct) fs.rmSync(tmp, { force: true });
          throw e;
        }
        return;
      }
      case 'symlink':
        await drain(entry);
        fs.symlinkSync(h.linkname ?? '', abs);
        this.#invalidate();
        if (this.#sameOwner) fs.lchownSync(abs, uid, gid);
        fs.lutimesSync(abs, mtime, mtime);
        return;
      case 'link':
        await drain(entry);
        fs.linkSync(linkAbs as string, abs);
        this.#invalidate();
        return;
      case 'character-device':
      case 'block-device':
      case 'fifo': {
        await drain(entry);
        const kind = h.type === 'fifo' ? 'fifo' : h.type === 'character-device' ? 'c' : 'b';
        if (kind !== 'fifo' && this.#opts.dropSpecial) {
          this.#drop('devices', rel);
          return;
        }
        if (kind !== 'fifo' && !this.#allowDevices) {
          this.#warn(`device ${JSON.stringify(rel)} skipped (devices are created only as root)`);
          return;
        }
        const args = kind === 'fifo' ? ['mkfifo', ['-m', '600', '--', abs]] : ['mknod', ['-m', '600', '--', abs, kind, String(h.devmajor ?? 0), String(h.devminor ?? 0)]];
        try {
          await execFileAsync(args[0] as string, args[1] as string[], this.#opts.signal ? { signal: this.#opts.signal } : {});
        } catch (e) {
          if (isAbortError(e)) throw e;
          this.#warn(`${kind === 'fifo' ? 'fifo' : 'device'} ${JSON.stringify(rel)} skipped: ${(e as Error).message.split('\n')[0] ?? ''}`);
          return;
        }
        this.#setMeta(abs, uid, gid, kind === 'fifo' && this.#opts.dropSpecial ? mode & ~0o6000 : mode, mtime);
        return;
      }
      default:
        await drain(entry); // unreachable: filtered by KNOWN_TYPES above
        return;
    }
  }

  /**
   * security.capability with setfattr (attr; node has no setxattr): one child per file that
   * has one, a handful per image. Needs CAP_SETFCAP (root, or root of a user namespace, where
   * the kernel writes a namespaced v3 capability); without it the file is kept, with a warning.
   */
  async #setCapability(abs: string, value: Buffer, rel: string): Promise<void> {
    try {
      await execFileAsync('setfattr', ['-h', '-n', CAPABILITY_XATTR, '-v', `0s${value.toString('base64')}`, '--', abs], this.#opts.signal ? { signal: this.#opts.signal } : {});
    } catch (e) {
      if (isAbortError(e)) throw e;
      const err = e as NodeJS.ErrnoException & { stderr?: string };
      const why = err.code === 'ENOENT' ? 'setfattr is not installed (apt-get install attr)' : (err.stderr ?? err.message).trim().split('\n')[0] ?? '';
      this.#warn(`file capabilities of ${JSON.stringify(rel)} were not applied: ${why}`);
    }
  }

  #setMeta(abs: string, uid: number, gid: number, mode: number, mtime: number): void {
    if (this.#sameOwner) fs.lchownSync(abs, uid, gid);
    fs.chmodSync(abs, mode); // after chown: chown clears setuid/setgid
    fs.utimesSync(abs, mtime, mtime);
  }

  /** `.wh..wh..opq` in `dirRel`: remove what lower layers put there, keep this layer's own. */
  #opaque(dirRel: string): void {
    const abs = joinInRoot(this.#root, dirRel);
    if (!lstatOrUndefined(abs)?.isDirectory()) return;
    this.#markUnpacked(dirRel);
    const walk = (rel: string): void => {
      for (const name of fs.readdirSync(joinInRoot(this.#root, rel))) {
        const child = join(rel, name);
        const childAbs = joinInRoot(this.#root, child);
        if (!this.#unpacked.has(child)) {
          fs.rmSync(childAbs, { recursive: true, force: true });
          continue;
        }
        if (fs.lstatSync(childAbs).isDirectory()) walk(child);
      }
    };
    walk(dirRel);
    this.#invalidate();
  }

  /** Directory modes and times, deepest first, only where the path is still that directory. */
  async finish(): Promise<void> {
    this.current = undefined;
    const dirs = [...this.#deferred].sort((a, b) => b[0].split('/').length - a[0].split('/').length);
    let n = 0;
    for (const [rel, d] of dirs) {
      this.#opts.signal?.throwIfAborted();
      if (++n % 1024 === 0) await new Promise((r) => setImmediate(r)); // let the event loop turn
      // A later entry may have replaced a parent with a symlink: never follow it.
      if (resolveInRootSync(this.#root, rel, rel) !== rel) continue;
      const abs = joinInRoot(this.#root, rel);
      if (!lstatOrUndefined(abs)?.isDirectory()) continue;
      fs.chmodSync(abs, d.mode);
      fs.utimesSync(abs, d.mtime, d.mtime);
    }
  }
}

/** lstat, or undefined when there is nothing to stat (or it cannot be: the caller decides). */
function lstatOrUndefined(p: string): fs.Stats | undefined {
  try {
    return fs.lstatSync(p, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

function join(parent: string, name: string): string {
  return parent === '' ? name : `${parent}/${name}`;
}
