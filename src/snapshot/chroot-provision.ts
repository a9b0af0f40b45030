import { lstat, mkdir, readFile, rm, writeFile, chmod, chown, utimes, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { TsbuildError } from '../errors.js';
import { runChild } from '../sandbox/index.js';
import type { StatIndex } from './copy-diff.js';

/**
 * What a RUN step under `--isolation=chroot` (or `none` as root) finds where the sandboxes
 * mount things: chroot(2) comes with no mounts, and mounting needs CAP_SYS_ADMIN, which is what
 * such a host lacks. Without this a step's `> /dev/null` made a regular file /dev/null in its
 * layer, and name resolution had no resolv.conf.
 *
 * Before the step, in the copy tree the step writes in place:
 *  - /dev/null, zero, full, random, urandom and tty are made with mknod (CAP_MKNOD, which
 *    Docker's default capabilities include; where it is missing they are left out, and the
 *    paths are still cleaned up after the step) and an empty /dev/shm (a plain directory);
 *  - /etc/resolv.conf and /etc/hosts get the host's content: written where the image has none,
 *    or written over the image's file, whose content, mode, owner and mtime are put back after.
 * After the step all of it is removed or restored, whatever the step did to it (the sandboxes'
 * mounts discard such writes too), and the mtimes of /dev and /etc are put back where only
 * this changed them, so the copy-and-walk diff finds exactly the step's own changes. A /dev or
 * /etc that is a symlink (or a file) is left alone: nothing is written through a link.
 */

const DEVICES: ReadonlyArray<readonly [name: string, major: number, minor: number]> = [
  ['null', 1, 3],
  ['zero', 1, 5],
  ['full', 1, 7],
  ['random', 1, 8],
  ['urandom', 1, 9],
  ['tty', 5, 0],
];
const RESOLVER_FILES = ['resolv.conf', 'hosts'] as const;

export interface ChrootProvision {
  /** Paths (relative to the tree) made for the step, deepest last; removed after it. */
  readonly created: readonly string[];
  /** Image files whose content was replaced, with what to put back. */
  readonly replaced: ReadonlyArray<{ readonly rel: string; readonly data: Buffer; readonly mode: number; readonly uid: number; readonly gid: number; readonly mtime: number }>;
  /** Existing directories written in (relative) -> their mtime (ns) right after provisioning. */
  readonly parents: ReadonlyMap<string, bigint>;
}

async function kind(path: string): Promise<'dir' | 'file' | 'other' | undefined> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return undefined;
  return st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
}

/** Makes /dev's devices and the resolver files in `root` (a copy tree, as root). */
export async function provisionChroot(root: string, opts: { readonly hostEtc?: string; readonly signal?: AbortSignal | undefined } = {}): Promise<ChrootProvision> {
  const created: string[] = [];
  const replaced: Array<ChrootProvision['replaced'][number]> = [];
  const parentsTouched = new Set<string>();

  // /dev: made if missing; left alone if it is anything but a directory.
  const devKind = await kind(join(root, 'dev'));
  if (devKind === undefined) {
    await mkdir(join(root, 'dev'), { mode: 0o755 });
    created.push('dev');
  }
  if (devKind === undefined || devKind === 'dir') {
    if (devKind === 'dir') parentsTouched.add('dev');
    const nodes: string[] = [];
    for (const [name, major, minor] of DEVICES) {
      const rel = `dev/${name}`;
      if ((await kind(join(root, rel))) !== undefined) continue;
      created.push(rel);
      nodes.push('mknod', '-m', '666', join(root, rel), 'c', String(major), String(minor));
    }
    if (nodes.length > 0) {
      // One shell for all nodes (node has no mknod); a failure (no CAP_MKNOD) leaves them out.
      const script = 'while [ $# -gt 0 ]; do "$1" "$2" "$3" "$4" "$5" "$6" "$7" 2>/dev/null || true; shift 7; done';
      await runChild('/bin/sh', ['-c', script, 'sh', ...nodes], { signal: opts.signal });
    }
    if ((await kind(join(root, 'dev/shm'))) === undefined) {
      await mkdir(join(root, 'dev/shm'));
      await chmod(join(root, 'dev/shm'), 0o1777);
      created.push('dev/shm');
    }
  }

  // /etc/resolv.conf and /etc/hosts, from the host.
  const hostEtc = opts.hostEtc ?? '/etc';
  const etcKind = await kind(join(root, 'etc'));
  if (etcKind === undefined || etcKind === 'dir') {
    for (const name of RESOLVER_FILES) {
      const host = await readFile(join(hostEtc, name)).catch(() => undefined);
      if (host === undefined) continue;
      const rel = `etc/${name}`;
      const path = join(root, rel);
      const have = await lstat(path, { bigint: true }).catch(() => undefined);
      if (have && !have.isFile()) continue; // a symlink (systemd-resolved images) or stranger: not written through
      if (!(await kind(join(root, 'etc')))) {
        await mkdir(join(root, 'etc'), { mode: 0o755 });
        created.push('etc');
      } else if (!created.includes('etc')) parentsTouched.add('etc');
      if (have) {
        replaced.push({ rel, data: await readFile(path), mode: Number(have.mode) & 0o7777, uid: Number(have.uid), gid: Number(have.gid), mtime: nsToSeconds(have.mtimeNs) });
        await writeFile(path, host); // in place: same inode
      } else {
        await writeFile(path, host, { mode: 0o644 });
        created.push(rel);
      }
    }
  }

  const parents = new Map<string, bigint>();
  for (const rel of parentsTouched) {
    const st = await lstat(join(root, rel), { bigint: true }).catch(() => undefined);
    if (st?.isDirectory()) parents.set(rel, st.mtimeNs);
  }
  return { created, replaced, parents };
}

/**
 * Undoes provisionChroot after the step. Returns the entries whose mtime was put back (their
 * ctime changed: the diff compares them without it), as removeMountPoints does.
 */
export async function unprovisionChroot(root: string, prov: ChrootProvision, before: StatIndex): Promise<Set<string>> {
  const touched = new Set<string>();
  // Decided before anything is removed (removing changes the mtimes again): a parent still at
  // its post-provisioning mtime was written by nobody else, and gets the image's mtime back;
  // otherwise the step wrote there too, and its time stays.
  const restore = new Map<string, number | undefined>();
  for (const [rel, mtime] of prov.parents) {
    const b = before.get(rel);
    const st = await lstat(join(root, rel), { bigint: true }).catch(() => undefined);
    if (!b || !st?.isDirectory()) continue;
    restore.set(rel, st.mtimeNs === mtime ? b.mtimeMs / 1000 : nsToSeconds(st.mtimeNs));
  }
  // Deepest first. A /dev made for the step goes with whatever the step wrote there (the
  // sandboxes' /dev is a tmpfs); an /etc made for it only if nothing but ours is left in it.
  for (const rel of [...prov.created].reverse()) {
    if (!(await parentIsRealDir(root, rel))) continue;
    const path = join(root, rel);
    const st = await lstat(path).catch(() => undefined);
    if (!st) continue;
    if (rel === 'etc' && st.isDirectory() && (await readdir(path)).length > 0) continue;
    await rm(path, { recursive: true, force: true });
  }
  for (const r of prov.replaced) {
    const path = join(root, r.rel);
    const parentOk = await parentIsRealDir(root, r.rel);
    const st = parentOk ? await lstat(path).catch(() => undefined) : undefined;
    if (!parentOk || (st && !st.isFile())) {
      throw new TsbuildError('SANDBOX_FAILED', `the step replaced /${r.rel} (or its directory) with something else; under --isolation=chroot it stands for the host's, as a mount would`, {
        hint: 'leave /etc/resolv.conf and /etc/hosts to the build (BuildKit mounts them too), or use --isolation=sandbox',
      });
    }
    // Removed by the step: made again (a new inode, so the diff lists it, with the image's content).
    await writeFile(path, r.data, { mode: r.mode });
    await chown(path, r.uid, r.gid);
    await chmod(path, r.mode);
    await utimes(path, r.mtime, r.mtime);
    const b = before.get(r.rel);
    if (b && st && b.ino === st.ino) touched.add(r.rel);
  }
  for (const [rel, seconds] of restore) {
    if (seconds === undefined) continue;
    await utimes(join(root, rel), seconds, seconds);
    touched.add(rel);
  }
  return touched;
}

/**
 * After the step, host-side writes go only below directories that are still directories: a
 * step that swapped /etc or /dev for a symlink must not steer them onto the host's files.
 */
async function parentIsRealDir(root: string, rel: string): Promise<boolean> {
  const slash = rel.lastIndexOf('/');
  if (slash < 0) return true;
  const st = await lstat(join(root, rel.slice(0, slash))).catch(() => undefined);
  return st?.isDirectory() === true;
}

/** Seconds as a number, to the microsecond (the diff compares mtimes to a thousandth of a ms). */
function nsToSeconds(ns: bigint): number {
  return Number(ns / 1000n) / 1e6;
}
