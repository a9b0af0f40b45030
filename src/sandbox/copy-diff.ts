import { lstat } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { TsbuildError } from '../errors.js';
import { DEFAULT_MOUNT_POINTS, listOpaqueDirs, listTree, type ChangeEntry, type RawEntry } from './overlay.js';
import type { SandboxCapabilities } from './probe.js';
import { runInUserNamespace } from './user-namespace.js';

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
 * Known gaps (marked here): the engine does not persist the index yet; xattr-only
 * changes (setcap) are not detected; hard links across the lower/upper boundary are copied
 * as separate files; copying is `cp -a --reflink=auto` per layer, so cost grows with the image.
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

function same(a: RawEntry, b: RawEntry): boolean {
  return a.type === b.type && a.ino === b.ino && a.size === b.size && a.mode === b.mode && a.uid === b.uid && a.gid === b.gid && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.linkTarget === b.linkTarget;
}

/**
 * The change between `before` and the tree in `dir` now, in captureUpperDir's form (parents
 * first, sorted). Mount points created by the runtime for the step (empty, new, at
 * `mountPoints`) are left out.
 */
export async function diffCopyRootfs(
  dir: string,
  before: StatIndex,
  opts: CopyOptions & { readonly mountPoints?: readonly string[] },
): Promise<{ changes: ChangeEntry[]; after: StatIndex }> {
  const after = await listTree(dir, opts.capabilities, opts.signal);
  const afterMap = new Map(after.map((e) => [e.path, e]));
  const mountPoints = new Set((opts.mountPoints ?? DEFAULT_MOUNT_POINTS).map((p) => p.replace(/^\/+/, '')));
  const recreated = new Set<string>();
  const out: ChangeEntry[] = [];
  const deletions: string[] = [];
  for (const [path] of before) {
    if (afterMap.has(path)) continue;
    const parent = posix.dirname(path);
    if (parent !== '.' && !afterMap.has(parent)) continue; // parent deleted too: its whiteout covers this
    deletions.push(path);
  }
  for (const e of after) {
    const b = before.get(e.path);
    if (!b && mountPoints.has(e.path) && ((e.type === 'f' && e.size === 0) || (e.type === 'd' && !after.some((x) => x.path.startsWith(`${e.path}/`))))) continue;
    if (b && same(b, e)) continue;
    const kind = e.type === 'f' ? 'file' : e.type === 'd' ? 'dir' : e.type === 'l' ? 'symlink' : 'other';
    out.push({
      kind,
      path: e.path,
      sourcePath: join(dir, e.path),
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
      size: kind === 'file' ? e.size : 0,
      mtimeMs: e.mtimeMs,
      ino: e.ino,
      nlink: e.nlink,
      ...(kind === 'symlink' ? { linkTarget: e.linkTarget } : {}),
    });
    if (b && b.type === 'd' && e.type === 'd' && b.ino !== e.ino && !isUnder(e.path, recreated)) {
      recreated.add(e.path);
      out.push({ kind: 'opaque', path: e.path });
    }
  }
  // Deletions inside a recreated (opaque) directory need no whiteout.
  for (const p of deletions) if (!isUnder(p, recreated)) out.push({ kind: 'whiteout', path: p });
  return { changes: out.sort((a, b) => comparePath(a.path, b.path) || order(a) - order(b)), after: afterMap };
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

function comparePath(a: string, b: string): number {
  const pa = a.split('/');
  const pb = b.split('/');
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const c = Buffer.compare(Buffer.from(pa[i] ?? ''), Buffer.from(pb[i] ?? ''));
    if (c !== 0) return c;
  }
  return pa.length - pb.length;
}
