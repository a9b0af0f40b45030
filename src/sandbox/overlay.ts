import { mkdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { TsbuildError } from '../errors.js';
import type { OverlayRootfs } from './types.js';

/**
 * Overlay mounts (the runners mount them in the step's mount namespace); what the upper dir
 * holds afterwards is read by snapshot/capture.ts.
 * Reference: https://docs.kernel.org/filesystems/overlayfs.html
 */

/** The kernel copies mount data into one page; leave room for the fixed options. */
const MAX_MOUNT_DATA = 4000;
/** Kernel limit on stacked lower layers (OVL_MAX_STACK). */
const MAX_LOWER_LAYERS = 500;

export interface PreparedOverlay {
  /** Run `mount -t overlay overlay -o <options> <merged>` with this cwd: the paths are relative. */
  readonly cwd: string;
  readonly options: string;
  /** Relative to cwd. */
  readonly merged: string;
}

/**
 * Lays out short names for an overlay mount in `stepDir` (a fresh private temp dir):
 * `l/0..N` symlinks to the lower dirs, `u`, `w` to upper and work, `m` the mount point. The
 * mount data is then `lowerdir=l/N:...:l/0,upperdir=u,workdir=w`: a few bytes per layer
 * whatever the store path (the option string is limited to one page; containerd and Docker's
 * overlay2 use short names for the same reason), and no user path can inject a `,` or `:`.
 *
 * Options: `redirect_dir=nofollow` and `metacopy=off` so a renamed directory or a chmod-ed
 * file is fully copied into the upper dir (redirects/metacopy would make the upper dir depend
 * on the lower ones, so it would not be a self-contained change); `userxattr` in a user
 * namespace, where trusted.* xattrs cannot be written.
 */
export async function prepareOverlay(rootfs: OverlayRootfs, stepDir: string, opts: { userxattr: boolean }): Promise<PreparedOverlay> {
  const lowers = rootfs.lowerDirs.length > 0 ? rootfs.lowerDirs : [join(stepDir, 'empty')];
  if (lowers.length > MAX_LOWER_LAYERS) {
    throw new TsbuildError('UNSUPPORTED', `overlay supports at most ${MAX_LOWER_LAYERS} layers, the step has ${lowers.length}`, {
      hint: 'squash the base image or use fewer RUN/COPY steps',
    });
  }
  if (rootfs.lowerDirs.length === 0) await mkdir(join(stepDir, 'empty'));
  await mkdir(join(stepDir, 'l'));
  for (const [i, dir] of lowers.entries()) {
    if (!dir.startsWith('/')) throw new TsbuildError('SANDBOX_FAILED', `lower dir must be absolute: ${dir}`);
    await symlink(dir, join(stepDir, 'l', String(i)));
  }
  await symlink(rootfs.upperDir, join(stepDir, 'u'));
  await symlink(rootfs.workDir, join(stepDir, 'w'));
  await mkdir(join(stepDir, 'm'));
  // overlay's lowerdir lists the top layer first.
  const lowerdir = lowers.map((_, i) => `l/${lowers.length - 1 - i}`).join(':');
  const options = `lowerdir=${lowerdir},upperdir=u,workdir=w,redirect_dir=nofollow,metacopy=off${opts.userxattr ? ',userxattr' : ''}`;
  if (options.length > MAX_MOUNT_DATA) {
    throw new TsbuildError('UNSUPPORTED', `overlay mount options too long (${options.length} bytes)`, { hint: 'use fewer layers' });
  }
  return { cwd: stepDir, options, merged: 'm' };
}

/** Mount points every runner creates. */
export const DEFAULT_MOUNT_POINTS = ['/dev', '/proc', '/sys', '/etc/resolv.conf', '/etc/hosts', '/etc/hostname'] as const;
