import { lstat, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { TsbuildError } from '../errors.js';
import { linkWalk } from '../layer/index.js';
import { isOverlayRootfs, type StepRootfs } from './types.js';

/**
 * Mount destinations inside a step's root, resolved the way runc's securejoin resolves them:
 * every symlink on the way is followed as if the root were "/", so the path handed to the
 * runtime has no symlink left in the view the runtime sets up.
 *
 * Why: bwrap makes its mount points and mounts under /newroot with the kernel's own path
 * resolution, while the host's root is still reachable as /oldroot. An image's symlink
 * `/evil -> /oldroot/tmp` with `RUN --mount=type=tmpfs,target=/evil/x` made /tmp/x on the host
 * (and a file bind created an empty file there). runc does not need this (it resolves every
 * destination in the root itself).
 *
 * The view is the step's root before it runs: for an overlay, the lower layers, top first (the
 * upper dir is empty), an entry of an upper layer hiding the lower ones, a 0/0 character device
 * hiding everything below it; plus the mounts made before the destination (a bind's source
 * shows through, a tmpfs is empty, bwrap's /dev has its own symlinks). Opaque directories are
 * not read (that needs getxattr): an entry of a lower layer under an opaque directory is taken
 * as present. That can only make a symlink visible that the merged view hides, and following it
 * still stays in the root; it can never hide a symlink that is there.
 */

/** A mount made before later destinations are resolved. */
export interface PriorMount {
  /** As asked (absolute, inside the root). */
  readonly target: string;
  /** `bind`: the host source shows through; `empty`: a fresh file system (tmpfs, proc); `dev`: bwrap's /dev. */
  readonly kind: 'bind' | 'empty' | 'dev';
  readonly source?: string;
}

// The symlinks bwrap's --dev makes (bubblewrap's setup_newroot, SETUP_MOUNT_DEV).
const DEV_LINKS: Readonly<Record<string, string>> = { fd: '/proc/self/fd', stdin: '/proc/self/fd/0', stdout: '/proc/self/fd/1', stderr: '/proc/self/fd/2', ptmx: 'pts/ptmx', core: '/proc/kcore' };

type Entry = { readonly kind: 'none' } | { readonly kind: 'link'; readonly target: string } | { readonly kind: 'other' };

/**
 * Resolves `mounts` in order (each later one sees the earlier ones) and then `extra` paths (the
 * working directory), returning the resolved absolute paths, mounts first.
 */
export async function confineTargets(rootfs: StepRootfs, mounts: readonly PriorMount[], extra: readonly string[] = []): Promise<string[]> {
  const layers = isOverlayRootfs(rootfs) ? [...rootfs.lowerDirs].reverse() : [rootfs.dir];
  const made: { parts: string[]; mount: PriorMount }[] = [];
  const out: string[] = [];
  const resolve = async (target: string): Promise<string[]> => {
    const walk = linkWalk(target, `the mount point ${target}`, 'SANDBOX_FAILED');
    for (let step = walk.next(); ; ) {
      if (step.done) return step.value === '' ? [] : step.value.split('/');
      const entry = await lookup(step.value, layers, made, target);
      step = walk.next(entry.kind === 'link' ? entry.target : undefined);
    }
  };
  for (const m of mounts) {
    const parts = await resolve(m.target);
    made.push({ parts, mount: m });
    out.push(`/${parts.join('/')}`);
  }
  for (const p of extra) out.push(`/${(await resolve(p)).join('/')}`);
  return out;
}

async function lookup(parts: readonly string[], layers: readonly string[], made: readonly { parts: string[]; mount: PriorMount }[], target: string): Promise<Entry> {
  // The last mount made at or above this path decides what is there.
  for (let i = made.length - 1; i >= 0; i--) {
    const m = made[i]!;
    if (m.parts.length > parts.length || !m.parts.every((p, j) => parts[j] === p)) continue;
    if (m.parts.length === parts.length) return { kind: 'other' }; // the mount's own root
    const rest = parts.slice(m.parts.length);
    if (m.mount.kind === 'empty') return { kind: 'none' };
    if (m.mount.kind === 'dev') {
      const link = rest.length === 1 ? DEV_LINKS[rest[0]!] : undefined;
      if (rest.length > 1 && DEV_LINKS[rest[0]!] !== undefined) {
        throw new TsbuildError('SANDBOX_FAILED', `mount point ${target} lies under /dev/${rest[0]}, a symlink of the sandbox's /dev`, { hint: 'mount it somewhere else' });
      }
      return link !== undefined ? { kind: 'link', target: link } : { kind: 'none' };
    }
    return entryAt(join(m.mount.source ?? '/nonexistent', ...rest), target);
  }
  for (const layer of layers) {
    const e = await entryAt(join(layer, ...parts), target, true);
    if (e !== undefined) return e;
  }
  return { kind: 'none' };
}

async function entryAt(path: string, target: string): Promise<Entry>;
async function entryAt(path: string, target: string, layered: true): Promise<Entry | undefined>;
async function entryAt(path: string, target: string, layered = false): Promise<Entry | undefined> {
  let st;
  try {
    st = await lstat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return layered ? undefined : { kind: 'none' };
    // Unreadable (a 0700 directory of another uid, rootless): what is behind it is unknown,
    // and it could be a symlink out.
    throw new TsbuildError('SANDBOX_FAILED', `cannot resolve the mount point ${target} in the image: ${(e as Error).message}`, { hint: 'mount it at a path whose directories tsbuild can read' });
  }
  if (layered && st.isCharacterDevice() && st.rdev === 0) return { kind: 'none' }; // a whiteout
  if (st.isSymbolicLink()) return { kind: 'link', target: await readlink(path) };
  return { kind: 'other' };
}
