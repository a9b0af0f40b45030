import { lstat } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { TsbuildError } from '../errors.js';
import { DEFAULT_MOUNT_POINTS, hostToContainer, runInUserNamespace, type SandboxCapabilities } from '../sandbox/index.js';

/**
 * What a step changed, read from its overlay upper dir (and the listing helpers the
 * copy-and-walk diff shares). Reference: https://docs.kernel.org/filesystems/overlayfs.html
 */

/**
 * One change found in an upper dir. Paths are relative, slash-separated, no leading "/"
 * (the same form as layer/ IndexedEntry). IDs are container IDs (already mapped back from
 * the user namespace). Entries come parents first, siblings sorted by name (byte order).
 */
export type ChangeEntry =
  | {
      readonly kind: 'file' | 'dir' | 'symlink' | 'other';
      readonly path: string;
      /** Host path to read the content from. */
      readonly sourcePath: string;
      readonly mode: number;
      readonly uid: number;
      readonly gid: number;
      readonly size: number;
      readonly mtimeMs: number;
      /** For hard-link detection within the layer: same ino and nlink > 1 = same file. */
      readonly ino: number;
      readonly nlink: number;
      readonly linkTarget?: string | undefined;
      /** Extended attributes the layer keeps (security.capability only, as docker and BuildKit). */
      readonly xattrs?: Readonly<Record<string, Buffer>> | undefined;
      /** For `other`: a fifo or device the layer keeps (sockets have no tar form and are left out). */
      readonly special?: SpecialFile | undefined;
    }
  /** `path` was deleted: the layer gets `.wh.<name>` in its parent. */
  | { readonly kind: 'whiteout'; readonly path: string }
  /** Directory `path` replaces the lower one wholesale: the layer gets `path/.wh..wh..opq` (after the dir entry). */
  | { readonly kind: 'opaque'; readonly path: string };

export interface CaptureOptions {
  readonly signal?: AbortSignal | undefined;
  readonly capabilities: SandboxCapabilities;
  /** The lower dirs of the step (bottom first), to tell mount points bwrap created from files that were there. */
  readonly lowerDirs: readonly string[];
  /**
   * Paths the sandbox mounted over (absolute, in the container). When a path did not exist
   * in the lower layers, the runtime created an empty file or directory in the upper dir as
   * the mount point: those (and parents created only for them) are dropped.
   */
  readonly mountPoints?: readonly string[];
}

/** A fifo or device node in a change, with its device numbers (0 for a fifo). */
export interface SpecialFile {
  readonly type: 'fifo' | 'char' | 'block';
  readonly devmajor: number;
  readonly devminor: number;
}

/**
 * The fifo or device at `abs` (listed by find with type `type`), or undefined for anything
 * else (a socket) or what cannot be stat'ed. Device numbers as Linux encodes them in st_rdev.
 */
async function specialFile(type: string, abs: string): Promise<SpecialFile | undefined> {
  if (type === 'p') return { type: 'fifo', devmajor: 0, devminor: 0 };
  if (type !== 'c' && type !== 'b') return undefined;
  const st = await lstat(abs, { bigint: true }).catch(() => undefined);
  if (!st || !(st.isCharacterDevice() || st.isBlockDevice())) return undefined;
  const rdev = st.rdev;
  const devmajor = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const devminor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  return { type: st.isCharacterDevice() ? 'char' : 'block', devmajor, devminor };
}

/** One line of the `find -printf` listing (container IDs when rootless). */
export interface RawEntry {
  type: string;
  ctimeMs: number;
  path: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  ino: number;
  nlink: number;
  linkTarget: string;
}

/**
 * The change a step made, read from its overlay upper dir (DESIGN.md "Snapshots come from
 * overlayfs"): 0/0 character devices become whiteouts, directories with the opaque xattr
 * (`trusted.overlay.opaque`, or `user.overlay.opaque` under userxattr) become opaque
 * markers, overlay's own xattrs are not reported.
 *
 * The listing is made by GNU find (and the xattrs by getfattr, package `attr`: node has no
 * xattr API) run inside the build's user namespace when rootless. There, directories owned by
 * subordinate IDs with mode 0700 are readable and find reports container IDs directly; and
 * since mknod of devices is impossible in a user namespace, every character device in a
 * rootless upper dir is a whiteout. As root, a character device is a whiteout only if it is
 * 0/0 (checked with lstat), so a RUN that mknods a real device keeps it.
 */
export async function* captureUpperDir(upperDir: string, opts: CaptureOptions & { readonly onDropped?: (dropped: ReadonlySet<string>) => void }): AsyncIterable<ChangeEntry> {
  const caps = opts.capabilities;
  const { entries, opaque, dropped, capabilities } = await analyseUpperDir(upperDir, opts);
  opts.onDropped?.(dropped);
  // Capabilities of the regular files the layer keeps (getfattr also reports a symlink's target's).
  const fileCaps = new Map<string, Buffer>();
  if (capabilities.size > 0) {
    for (const e of entries) {
      const c = e.type === 'f' && !dropped.has(e.path) ? capabilities.get(e.path) : undefined;
      if (c !== undefined) fileCaps.set(e.path, c);
    }
  }
  for (const e of entries) {
    opts.signal?.throwIfAborted();
    if (dropped.has(e.path)) continue;
    if (e.type === 'c' && (await isWhiteout(upperDir, e, caps))) {
      yield { kind: 'whiteout', path: e.path };
      continue;
    }
    const entry = await changeEntryOf(e, upperDir, fileCaps);
    yield entry;
    if (entry.kind === 'dir' && opaque.has(e.path)) yield { kind: 'opaque', path: e.path };
  }
}

/**
 * The change entry of one listed path of `root` (an upper dir, or a copy tree that changed):
 * its metadata as listed, its file capability if it has one, and what a fifo or device is.
 * One mapping for both snapshotters, so their layers agree entry for entry.
 */
export async function changeEntryOf(e: RawEntry, root: string, fileCaps: ReadonlyMap<string, Buffer>): Promise<ChangeEntry> {
  const kind = e.type === 'f' ? 'file' : e.type === 'd' ? 'dir' : e.type === 'l' ? 'symlink' : 'other';
  const special = kind === 'other' ? await specialFile(e.type, join(root, e.path)) : undefined;
  const caps = fileCaps.get(e.path);
  return {
    kind,
    path: e.path,
    // Not path.join: its normalising builds each result of ~2 pieces per component (V8 cons
    // strings), 16 objects per path held for every file of a step; e.path is clean already.
    sourcePath: `${root}/${e.path}`,
    mode: e.mode,
    uid: e.uid,
    gid: e.gid,
    size: kind === 'file' ? e.size : 0,
    mtimeMs: e.mtimeMs,
    ino: e.ino,
    nlink: e.nlink,
    // Every field always, in one order (no conditional spreads): one hidden class for all
    // entries, not one per entry (see toLayer in engine/run-step.ts).
    linkTarget: kind === 'symlink' ? e.linkTarget : undefined,
    xattrs: caps ? { 'security.capability': caps } : undefined,
    special,
  };
}

async function analyseUpperDir(upperDir: string, opts: CaptureOptions): Promise<{ entries: RawEntry[]; opaque: Set<string>; dropped: Set<string>; capabilities: Map<string, Buffer> }> {
  const caps = opts.capabilities;
  // The listing and the one xattr walk (opaque directories and file capabilities) at once: each
  // is a process of its own over the same tree, ~0.3 s apiece for a step's 50,000 new files.
  const [entries, { opaque, capabilities }] = await Promise.all([listTree(upperDir, caps, opts.signal), scanOverlayXattrs(upperDir, caps, opts.signal, true)]);
  const dropped = await syntheticMountPoints(entries, opts.lowerDirs, opts.mountPoints ?? DEFAULT_MOUNT_POINTS, opaque, caps);
  return { entries, opaque, dropped, capabilities };
}

/**
 * Deletes from the upper dir the mount points captureUpperDir leaves out, so an upper dir
 * kept as the next snapshot (a lower dir of later steps) holds exactly what its layer holds.
 * Runs inside the user namespace when rootless. Call after capturing, before committing.
 */
export async function pruneMountPoints(upperDir: string, opts: CaptureOptions, known?: ReadonlySet<string>): Promise<string[]> {
  // What captureUpperDir found (onDropped), else listed again: the step has ended, so the
  // upper dir is as it was then, and a second listing of 50,000 files costs time and memory.
  const dropped = known ?? (await analyseUpperDir(upperDir, opts)).dropped;
  // Only the topmost dropped paths: rm -rf takes their (dropped) children along.
  const top = [...dropped].filter((p) => ![...dropped].some((q) => p.startsWith(`${q}/`))).sort();
  if (top.length === 0) return [];
  const err: Buffer[] = [];
  const r = await runInUserNamespace('rm', ['-rf', '--', ...top.map((p) => join(upperDir, p))], { capabilities: opts.capabilities, signal: opts.signal, stderr: (c) => err.push(c) });
  if (r.exitCode !== 0) throw new TsbuildError('SANDBOX_FAILED', `cannot prune mount points in ${upperDir}: ${Buffer.concat(err).toString('utf8').trim()}`);
  return top;
}

async function inNamespace(caps: SandboxCapabilities, cmd: string, args: readonly string[], signal: AbortSignal | undefined): Promise<{ exitCode: number; stdout: Buffer; stderr: string }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const r = await runInUserNamespace(cmd, args, { capabilities: caps, signal, stdout: (c) => out.push(c), stderr: (c) => err.push(c) });
  return { exitCode: r.exitCode, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') };
}

const FIND_FIELDS = 11;

/** Every entry below `dir` (not `dir` itself), parents first, listed inside the user namespace. */
export async function listTree(upperDir: string, caps: SandboxCapabilities, signal: AbortSignal | undefined): Promise<RawEntry[]> {
  // %y type, %m permission bits incl. setuid/setgid/sticky, %U/%G numeric ids, %s size,
  // %T@ mtime (seconds.fraction), %i inode, %n links, %l link target, %P path below the start.
  const fmt = '%y\\0%m\\0%U\\0%G\\0%s\\0%T@\\0%i\\0%n\\0%l\\0%C@\\0%P\\0';
  const r = await inNamespace(caps, 'find', [upperDir, '-mindepth', '1', '-printf', fmt], signal);
  if (r.exitCode !== 0) throw new TsbuildError('SANDBOX_FAILED', `cannot list the upper dir ${upperDir}: ${r.stderr.trim()}`);
  // Field by field from the bytes, not the whole listing as one string split at once: for a step
  // that wrote 50,000 files that was 550,000 strings alive together, where a RUN's memory peaked.
  const out = r.stdout;
  const entries: RawEntry[] = [];
  const fields: string[] = new Array<string>(FIND_FIELDS);
  let pos = 0;
  records: while (pos < out.length) {
    for (let k = 0; k < FIND_FIELDS; k++) {
      const end = out.indexOf(0, pos);
      if (end < 0) break records; // a torn record (find failed midway: refused above)
      fields[k] = out.toString('utf8', pos, end);
      pos = end + 1;
    }
    const at = (k: number): string => fields[k] ?? '';
    entries.push({
      type: at(0),
      mode: parseInt(at(1), 8),
      uid: Number(at(2)),
      gid: Number(at(3)),
      size: Number(at(4)),
      mtimeMs: Number(at(5)) * 1000,
      ino: Number(at(6)),
      nlink: Number(at(7)),
      linkTarget: at(8),
      ctimeMs: Number(at(9)) * 1000,
      path: at(10),
    });
  }
  return sortByPath(entries, (e) => e.path);
}

/**
 * Sorts by path in the byte order of path components, parents first (the order of layer
 * entries). Component-wise order is the byte order of the UTF-8 path with `/` as NUL (no name
 * holds NUL, so a parent sorts before its children and `a/b` before `a-b`). The key is a
 * string with one char per UTF-8 byte (latin1), so plain string comparison is byte order and
 * each entry is encoded once, not once per comparison.
 */
export function sortByPath<T>(items: T[], path: (item: T) => string, tieBreak?: (a: T, b: T) => number): T[] {
  const keyed = items.map((item) => {
    const p = path(item).replaceAll('/', '\0');
    // eslint-disable-next-line no-control-regex
    return { item, key: /^[\x00-\x7f]*$/.test(p) ? p : Buffer.from(p, 'utf8').toString('latin1') };
  });
  keyed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : tieBreak ? tieBreak(a.item, b.item) : 0));
  for (let i = 0; i < keyed.length; i++) items[i] = keyed[i]!.item;
  return items;
}

export async function listOpaqueDirs(upperDir: string, caps: SandboxCapabilities, signal: AbortSignal | undefined): Promise<Set<string>> {
  return (await scanOverlayXattrs(upperDir, caps, signal, false)).opaque;
}

/**
 * One recursive getfattr over `upperDir`, inside the user namespace when rootless: the opaque
 * directories, and with `withCapabilities` the `security.capability` of every path that has
 * one (readFileCapabilities says why that xattr; the caller keeps the regular files'). Values
 * in hex, so a capability's bytes come back whole.
 */
async function scanOverlayXattrs(
  upperDir: string,
  caps: SandboxCapabilities,
  signal: AbortSignal | undefined,
  withCapabilities: boolean,
): Promise<{ opaque: Set<string>; capabilities: Map<string, Buffer> }> {
  const getfattr = caps.tools.getfattr;
  if (!getfattr) {
    throw new TsbuildError('SANDBOX_UNAVAILABLE', 'getfattr is not installed: opaque directories in the overlay upper dir cannot be read', {
      hint: 'apt-get install attr',
    });
  }
  // As root overlay writes trusted.overlay.opaque; under userxattr user.overlay.opaque.
  // getfattr exits 1 when some file has no matching attribute; output is still complete.
  const names = withCapabilities ? '^((trusted|user)\\.overlay\\.opaque|security\\.capability)$' : '^(trusted|user)\\.overlay\\.opaque$';
  const r = await inNamespace(caps, getfattr, ['-R', '-P', '--absolute-names', '-d', '-e', 'hex', '-m', names, '--', upperDir], signal);
  if (r.exitCode > 1) throw new TsbuildError('SANDBOX_FAILED', `getfattr failed on ${upperDir}: ${r.stderr.trim()}`);
  const opaque = new Set<string>();
  const capabilities = new Map<string, Buffer>();
  let rel: string | undefined;
  for (const line of r.stdout.toString('utf8').split('\n')) {
    if (line.startsWith('# file: ')) {
      const p = posix.relative(upperDir, unescapeGetfattr(line.slice('# file: '.length)));
      rel = p !== '' && !p.startsWith('..') ? p : undefined;
      continue;
    }
    if (rel === undefined) continue;
    // The opaque marker is "y" (0x79 in hex).
    if (/^(trusted|user)\.overlay\.opaque=0x79$/.test(line)) opaque.add(rel);
    else if (withCapabilities && line.startsWith('security.capability=0x')) capabilities.set(rel, Buffer.from(line.slice('security.capability=0x'.length), 'hex'));
  }
  return { opaque, capabilities };
}

/**
 * The file capabilities (`security.capability`, set by setcap, e.g. by the postinst of Debian's
 * iputils-ping) of the regular files `paths` (relative to `dir`), read inside the user namespace
 * when rootless, where the kernel reports namespaced (v3) capabilities of the namespace's root
 * as plain v2 ones, so the layer carries the portable form. docker and BuildKit (containerd's
 * archive) put exactly this xattr in layers and no other; so do we. One `xargs getfattr` for
 * all the files; none without files.
 */
export async function readFileCapabilities(dir: string, paths: readonly string[], caps: SandboxCapabilities, signal: AbortSignal | undefined): Promise<Map<string, Buffer>> {
  const found = new Map<string, Buffer>();
  const getfattr = caps.tools.getfattr;
  if (paths.length === 0 || !getfattr) return found;
  const list = Readable.from([Buffer.from(paths.map((p) => `${dir}/${p}\0`).join(''), 'utf8')]);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  // getfattr exits 1 when a file has no such attribute (xargs then 123); the output is complete.
  const r = await runInUserNamespace('xargs', ['-0', '-r', getfattr, '-P', '--absolute-names', '-d', '-e', 'hex', '-m', '^security\\.capability$', '--'], {
    capabilities: caps,
    signal,
    stdin: list,
    stdout: (c) => out.push(c),
    stderr: (c) => err.push(c),
  });
  if (r.exitCode !== 0 && r.exitCode !== 123) throw new TsbuildError('SANDBOX_FAILED', `getfattr failed in ${dir}: ${Buffer.concat(err).toString('utf8').trim()}`);
  let current: string | undefined;
  for (const line of Buffer.concat(out).toString('utf8').split('\n')) {
    if (line.startsWith('# file: ')) current = unescapeGetfattr(line.slice('# file: '.length));
    else if (current !== undefined && line.startsWith('security.capability=0x')) {
      const rel = posix.relative(dir, current);
      if (rel !== '' && !rel.startsWith('..')) found.set(rel, Buffer.from(line.slice('security.capability=0x'.length), 'hex'));
    }
  }
  return found;
}

/** getfattr escapes control characters, `\` and non-ASCII bytes as `\ooo` octal (attr's quote()). */
function unescapeGetfattr(s: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && /^[0-7]{3}$/.test(s.slice(i + 1, i + 4))) {
      bytes.push(parseInt(s.slice(i + 1, i + 4), 8));
      i += 3;
    } else {
      for (const b of Buffer.from(s[i] ?? '', 'utf8')) bytes.push(b);
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

async function isWhiteout(upperDir: string, e: RawEntry, caps: SandboxCapabilities): Promise<boolean> {
  if (!caps.isRoot) return true;
  const st = await lstat(join(upperDir, e.path));
  return st.isCharacterDevice() && st.rdev === 0;
}

/** lstat of `rel` in the merged view of `lowerDirs`, undefined when absent or whited out. */
async function lowerStat(rel: string, lowerDirs: readonly string[]): Promise<Stats | undefined> {
  for (let i = lowerDirs.length - 1; i >= 0; i--) {
    const st = await lstat(join(lowerDirs[i] ?? '', rel)).catch(() => undefined);
    if (!st) continue;
    return st.isCharacterDevice() && st.rdev === 0 ? undefined : st;
  }
  return undefined;
}

/** True when `rel` exists in the merged view of `lowerDirs` (top layer first; a 0/0 char device hides it). */
async function existsInLowers(rel: string, lowerDirs: readonly string[]): Promise<boolean> {
  for (let i = lowerDirs.length - 1; i >= 0; i--) {
    const st = await lstat(join(lowerDirs[i] ?? '', rel)).catch(() => undefined);
    if (!st) continue;
    return !(st.isCharacterDevice() && st.rdev === 0);
  }
  return false;
}

/**
 * Upper-dir entries that are only mount points the runtime created: an empty dir or an empty
 * regular file at a mount target that no lower layer has, plus parent dirs that exist only to
 * hold such mount points. A step that really created /proc/x keeps /proc.
 */
async function syntheticMountPoints(
  entries: readonly RawEntry[],
  lowerDirs: readonly string[],
  mountPoints: readonly string[],
  opaque: ReadonlySet<string>,
  caps: SandboxCapabilities,
): Promise<Set<string>> {
  const byPath = new Map(entries.map((e) => [e.path, e]));
  const children = new Map<string, string[]>();
  for (const e of entries) {
    const parent = posix.dirname(e.path);
    const key = parent === '.' ? '' : parent;
    let list = children.get(key);
    if (!list) children.set(key, (list = []));
    list.push(e.path);
  }
  const dropped = new Set<string>();
  const emptyAfterDrop = (p: string): boolean => (children.get(p) ?? []).every((c) => dropped.has(c));
  for (const target of mountPoints) {
    let rel = posix.normalize(target).replace(/^\/+/, '').replace(/\/+$/, '');
    const e = byPath.get(rel);
    if (!e || rel === '') continue;
    const isEmptyMountPoint = (e.type === 'd' && emptyAfterDrop(rel)) || (e.type === 'f' && e.size === 0);
    if (!isEmptyMountPoint || (await existsInLowers(rel, lowerDirs))) continue;
    dropped.add(rel);
    // Parents created only to hold the mount point (e.g. /etc in an image without /etc).
    for (let parent = posix.dirname(rel); parent !== '.'; parent = posix.dirname(parent)) {
      rel = parent;
      const pe = byPath.get(rel);
      if (!pe || pe.type !== 'd' || !emptyAfterDrop(rel)) break;
      // A lower dir copied up only because a mount point was created in it: drop it when
      // the copy-up changed nothing but its mtime (and it is not opaque: then it is a change).
      const lower = await lowerStat(rel, lowerDirs);
      if (lower && !(lower.isDirectory() && (lower.mode & 0o7777) === pe.mode && hostToContainer(caps.idMapping.uids, lower.uid) === pe.uid && hostToContainer(caps.idMapping.gids, lower.gid) === pe.gid && !opaque.has(rel))) break;
      dropped.add(rel);
    }
  }
  return dropped;
}

/** Collect a capture into an array (tests, small steps). */
export async function collectChanges(changes: AsyncIterable<ChangeEntry>): Promise<ChangeEntry[]> {
  const out: ChangeEntry[] = [];
  for await (const c of changes) out.push(c);
  return out;
}
