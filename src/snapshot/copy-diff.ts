import { lstat, mkdir, readdir, writeFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { TsbuildError } from '../errors.js';
import { DEFAULT_MOUNT_POINTS, runInUserNamespace, type SandboxCapabilities } from '../sandbox/index.js';
import { changeEntryOf, listOpaqueDirs, listTree, readFileCapabilities, sortByPath, type ChangeEntry, type RawEntry } from './capture.js';

/**
 * The copy-and-walk fallback (DESIGN.md: where overlay cannot be mounted): the lower layers
 * are merged into a plain directory, the step runs on it (DirRootfs), and the change is found
 * by comparing a stat index taken before the step with the tree after it.
 *
 * Change detection: an entry is changed when its type, inode, size, mode, uid, gid, mtime or
 * ctime differ (ctime catches a rewrite that restored the mtime; inode catches replace-by-
 * rename). A directory whose inode changed was removed and recreated: it becomes opaque.
 *
 * The diff returns the index of the tree after the step, so a chain of steps walks each tree
 * once; serializeStatIndex/parseStatIndex let the engine persist it next to the snapshot.
 * The copy snapshotter (copy-snapshotter.ts) keeps the tree and its index in the store between
 * steps, so a step costs one stat walk plus reading what it changed.
 * File capabilities (security.capability) of changed files go into the layer, as in the overlay
 * capture. DEBT(#14): hard links across the lower/upper boundary are copied as separate files.
 * prepareCopyRootfs (`cp -a --reflink=auto` per layer) serves the tests: the copy snapshotter
 * unpacks layers instead.
 */

export interface CopyOptions {
  readonly capabilities: SandboxCapabilities;
  readonly signal?: AbortSignal | undefined;
}

export type StatIndex = ReadonlyMap<string, RawEntry>;

async function ns(caps: SandboxCapabilities, cmd: string, args: readonly string[], signal: AbortSignal | undefined, what: string): Promise<void> {
  const err: Buffer[] = [];
  const r = await runInUserNamespace(cmd, args, { capabilities: caps, signal, stderr: (c) => err.push(c) });
  if (r.exitCode !== 0) throw new TsbuildError('SANDBOX_FAILED', `${what} failed: ${Buffer.concat(err).toString('utf8').trim()}`);
}

/**
 * Merge `lowerDirs` (bottom first; overlay-style snapshots: 0/0 char devices are whiteouts,
 * opaque xattrs mark opaque dirs) into the empty directory `dir`, inside the user namespace
 * when rootless so ownership is kept.
 */
export async function prepareCopyRootfs(lowerDirs: readonly string[], dir: string, opts: CopyOptions): Promise<void> {
  const caps = opts.capabilities;
  for (const lower of lowerDirs) {
    opts.signal?.throwIfAborted();
    const entries = await listTree(lower, caps, opts.signal);
    const opaque = caps.tools.getfattr ? await listOpaqueDirs(lower, caps, opts.signal) : new Set<string>();
    const existing = new Map((await listTree(dir, caps, opts.signal)).map((e) => [e.path, e]));
    const remove: string[] = [];
    const whiteouts: string[] = [];
    for (const e of entries) {
      const cur = existing.get(e.path);
      if (e.type === 'c' && (await isWhiteoutDevice(lower, e, caps))) {
        whiteouts.push(e.path);
        if (cur) remove.push(e.path);
      } else if (opaque.has(e.path) || (cur && (cur.type === 'd') !== (e.type === 'd'))) {
        // Opaque: the lower content goes; type change: cp -a cannot replace a dir by a file or back.
        if (cur) remove.push(e.path);
      } else if (cur && cur.type !== 'd' && e.type !== 'd') {
        remove.push(e.path);
      }
    }
    if (remove.length > 0) await ns(caps, 'rm', ['-rf', '--', ...remove.map((p) => join(dir, p))], opts.signal, 'removing replaced paths');
    await ns(caps, 'cp', ['-a', '--reflink=auto', '--', `${lower}/.`, `${dir}/`], opts.signal, `copying ${lower}`);
    if (whiteouts.length > 0) await ns(caps, 'rm', ['-rf', '--', ...whiteouts.map((p) => join(dir, p))], opts.signal, 'applying whiteouts');
  }
}

async function isWhiteoutDevice(lower: string, e: RawEntry, caps: SandboxCapabilities): Promise<boolean> {
  if (!caps.isRoot) return true;
  const st = await lstat(join(lower, e.path));
  return st.isCharacterDevice() && st.rdev === 0;
}

/** The stat index of `dir` before a step. */
export async function indexTree(dir: string, opts: CopyOptions): Promise<StatIndex> {
  return new Map((await listTree(dir, opts.capabilities, opts.signal)).map((e) => [e.path, e]));
}

function same(a: RawEntry, b: RawEntry, ignoreCtime = false): boolean {
  return (
    a.type === b.type &&
    a.ino === b.ino &&
    a.size === b.size &&
    a.mode === b.mode &&
    a.uid === b.uid &&
    a.gid === b.gid &&
    // A restored mtime went through a decimal string: equal to the microsecond.
    (ignoreCtime ? Math.abs(a.mtimeMs - b.mtimeMs) < 0.001 : a.mtimeMs === b.mtimeMs) &&
    (ignoreCtime || a.ctimeMs === b.ctimeMs) &&
    a.linkTarget === b.linkTarget
  );
}

/**
 * The change between `before` and the tree in `dir` now, in captureUpperDir's form (parents
 * first, sorted), shaped like the overlay upper dir of the same step so both snapshotters give
 * the same layer bytes for the same change:
 *  - every ancestor directory of a change is listed with its own metadata (overlay copies the
 *    parents of what it writes up into the upper dir);
 *  - a directory that was made again (new inode, or a birth time after the index) or that
 *    replaced a non-directory is opaque (overlay marks a directory made over a whiteout
 *    opaque);
 *  - a deleted tree is one whiteout at its top.
 * Mount points created by the runtime for the step (empty, new, at `mountPoints`) are left
 * out; call removeMountPoints first so the tree itself matches the layer. Entries in
 * `ignoreCtime` are compared without their ctime (parents whose mtime removeMountPoints put
 * back). Unchanged entries (same type, inode, size, mode, owner, mtime, ctime, link target)
 * are never read: the layer writer opens only the files listed here.
 */
export async function diffCopyRootfs(
  dir: string,
  before: StatIndex,
  opts: CopyOptions & { readonly mountPoints?: readonly string[]; readonly ignoreCtime?: ReadonlySet<string> },
): Promise<{ changes: ChangeEntry[]; after: StatIndex }> {
  const after = await listTree(dir, opts.capabilities, opts.signal);
  const afterMap = new Map(after.map((e) => [e.path, e]));
  const mountPoints = new Set((opts.mountPoints ?? DEFAULT_MOUNT_POINTS).map((p) => p.replace(/^\/+/, '')));
  const ignoreCtime = opts.ignoreCtime ?? new Set<string>();
  const recreated = new Set<string>();
  const changed = new Set<string>();
  const deletions: string[] = [];
  for (const [path] of before) {
    if (afterMap.has(path)) continue;
    const parent = posix.dirname(path);
    // Parent deleted or replaced by a non-directory too: its own entry covers this.
    if (parent !== '.' && afterMap.get(parent)?.type !== 'd') continue;
    deletions.push(path);
  }
  for (const e of after) {
    const b = before.get(e.path);
    if (!b && mountPoints.has(e.path) && ((e.type === 'f' && e.size === 0) || (e.type === 'd' && !after.some((x) => x.path.startsWith(`${e.path}/`))))) continue;
    if (b && same(b, e, ignoreCtime.has(e.path))) continue;
    changed.add(e.path);
    if (b && e.type === 'd' && !isUnder(e.path, recreated) && (b.type !== 'd' || b.ino !== e.ino || (await bornAfter(join(dir, e.path), b)))) recreated.add(e.path);
  }
  const whiteouts = deletions.filter((p) => !isUnder(p, recreated)); // inside an opaque dir: no whiteout needed
  // The parents of every change and whiteout, as overlay's copy-up puts them in the upper dir.
  const listed = new Set(changed);
  for (const p of [...changed, ...whiteouts]) {
    for (let d = posix.dirname(p); d !== '.' && !listed.has(d); d = posix.dirname(d)) listed.add(d);
  }
  const out: ChangeEntry[] = [];
  const fileCaps = await readFileCapabilities(dir, [...listed].filter((p) => afterMap.get(p)?.type === 'f'), opts.capabilities, opts.signal);
  for (const path of listed) {
    const e = afterMap.get(path);
    if (!e) continue;
    out.push(await changeEntryOf(e, dir, fileCaps));
    if (recreated.has(path)) out.push({ kind: 'opaque', path });
  }
  for (const p of whiteouts) out.push({ kind: 'whiteout', path: p });
  return { changes: sortByPath(out, (c) => c.path, (a, b) => order(a) - order(b)), after: afterMap };
}

/** Mount points made in a copy rootfs before a step (makeMountPoints). */
export interface MadeMountPoints {
  /** Topmost paths created (relative), removed after the step. */
  readonly created: readonly string[];
  /** Existing parent dir (relative) -> its mtime (ns) right after the mount points were made in it. */
  readonly parents: ReadonlyMap<string, bigint>;
}

/**
 * Makes the mount points a runtime needs (an empty file or directory at each missing target,
 * with missing parents) before the step, so the runtime does not make them itself, and notes
 * each parent's mtime right after: removeMountPoints can then tell whether the step wrote in
 * that parent. Only through real directories inside `dir` (a symlink on the way: skipped, the
 * runtime resolves it in the sandbox).
 */
export async function makeMountPoints(dir: string, targets: ReadonlyArray<{ readonly path: string; readonly dir: boolean }>, opts: CopyOptions): Promise<MadeMountPoints> {
  const created: string[] = [];
  const parents = new Map<string, bigint>();
  for (const t of targets) {
    const parts = posix.normalize(t.path).replace(/^\/+/, '').replace(/\/+$/, '').split('/').filter((x) => x !== '' && x !== '.');
    if (parts.length === 0 || parts.includes('..')) continue;
    let rel = '';
    let top: string | undefined;
    let ok = true;
    for (const [i, name] of parts.entries()) {
      const parent = rel;
      rel = rel === '' ? name : `${rel}/${name}`;
      const st = await lstat(join(dir, rel)).catch(() => undefined);
      const last = i === parts.length - 1;
      if (st) {
        if (!last && !st.isDirectory()) ok = false;
        if (!ok || last) break;
        continue;
      }
      if (top === undefined) top = rel;
      const made = last && !t.dir ? await writeFile(join(dir, rel), '', { flag: 'wx', mode: 0o644 }).then(() => true, () => false) : await mkdir(join(dir, rel), { mode: 0o755 }).then(() => true, () => false);
      if (!made) {
        ok = false;
        break;
      }
      if (rel === top && parent !== '') parents.set(parent, (await lstat(join(dir, parent), { bigint: true })).mtimeNs);
    }
    if (top !== undefined) created.push(top);
  }
  return { created, parents };
}

/**
 * Undoes makeMountPoints after the step: each created path goes if it is still an empty file
 * or directory tree, and each parent gets back its mtime from before the step unless the
 * step wrote in it (then the step's mtime stays: rm is about to change it). Returns the
 * parents touched, whose ctime changed (pass them to diffCopyRootfs as `ignoreCtime`).
 */
export async function removeMountPoints(dir: string, made: MadeMountPoints, before: StatIndex, opts: CopyOptions): Promise<Set<string>> {
  const remove: string[] = [];
  for (const rel of made.created) if (await emptyTree(join(dir, rel))) remove.push(rel);
  const restore = new Map<string, string>();
  for (const [rel, mtime] of made.parents) {
    const b = before.get(rel);
    const st = await lstat(join(dir, rel), { bigint: true }).catch(() => undefined);
    if (!b || !st?.isDirectory()) continue;
    restore.set(rel, st.mtimeNs === mtime ? (b.mtimeMs / 1000).toFixed(9) : nsString(st.mtimeNs));
  }
  if (remove.length > 0) await ns(opts.capabilities, 'rm', ['-rf', '--', ...remove.map((p) => join(dir, p))], opts.signal, 'removing mount points');
  const touched = new Set<string>();
  for (const [rel, mtime] of restore) {
    await ns(opts.capabilities, 'touch', ['-h', '-m', '-d', `@${mtime}`, '--', join(dir, rel)], opts.signal, 'restoring a parent mtime');
    touched.add(rel);
  }
  return touched;
}

/** An empty file, or directories holding nothing but empty files and directories. */
async function emptyTree(path: string): Promise<boolean> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return false;
  if (st.isFile()) return st.size === 0;
  if (!st.isDirectory()) return false;
  for (const name of await readdir(path).catch(() => ['?'])) if (!(await emptyTree(join(path, name)))) return false;
  return true;
}

function nsString(ns: bigint): string {
  return `${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`;
}

/**
 * A directory that was deleted and made again during the step may get its old inode number
 * back; its birth time then tells (after the before-index was taken, so after its old ctime).
 * False when the file system reports no birth time, or the dir cannot be stat'ed from here.
 */
async function bornAfter(path: string, before: RawEntry): Promise<boolean> {
  const st = await lstat(path, { bigint: true }).catch(() => undefined);
  if (!st || st.birthtimeNs <= 0n) return false;
  return Number(st.birthtimeNs) / 1e6 > before.ctimeMs + 0.001;
}

/** A stat index as JSON lines (one entry per line), for keeping it next to a snapshot. */
export function serializeStatIndex(index: StatIndex): string {
  let s = '';
  for (const e of index.values()) s += `${JSON.stringify(e)}\n`;
  return s;
}

export function parseStatIndex(text: string): StatIndex {
  const m = new Map<string, RawEntry>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const e = JSON.parse(line) as RawEntry;
    if (typeof e.path !== 'string' || typeof e.type !== 'string') throw new TsbuildError('STORE_CORRUPT', 'invalid stat index line');
    m.set(e.path, e);
  }
  return m;
}

function isUnder(p: string, dirs: ReadonlySet<string>): boolean {
  for (let d = posix.dirname(p); d !== '.'; d = posix.dirname(d)) if (dirs.has(d)) return true;
  return false;
}

/** Same entry path: the dir entry before its opaque marker. */
function order(e: ChangeEntry): number {
  return e.kind === 'opaque' ? 1 : 0;
}
