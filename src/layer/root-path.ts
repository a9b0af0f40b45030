import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { TsbuildError } from '../errors.js';

/**
 * Path handling for applying layers into a directory without ever leaving it.
 * Ported from containerd/continuity fs/path.go (RootPath / walkLinks) and the same idea as
 * cyphar/filepath-securejoin: the root is treated as "/" of a chroot.
 */

const MAX_LINKS = 255;

/**
 * Cleans a tar entry name the way containerd does before applying: a leading "/" is dropped
 * (reported through `absolute`), "." and empty components vanish, ".." pops a component.
 * A ".." that would climb above the root is refused with LAYER_UNSAFE — moby calls this a
 * "breakout" and refuses the layer; so do we. Returns "" for the root itself.
 */
export function cleanEntryName(name: string, what: string = name): { rel: string; absolute: boolean } {
  if (name.includes('\0')) throw new TsbuildError('LAYER_INVALID', `tar entry ${JSON.stringify(what)} has a NUL byte in its name`);
  const parts: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (parts.length === 0) {
        throw new TsbuildError('LAYER_UNSAFE', `tar entry ${JSON.stringify(what)} points outside the root (${JSON.stringify(name)})`, {
          hint: 'the layer is malformed or hostile; it was not applied further',
        });
      }
      parts.pop();
    } else {
      parts.push(c);
    }
  }
  return { rel: parts.join('/'), absolute: name.startsWith('/') };
}

/**
 * Resolves `rel` (components relative to `root`) following symlinks as if `root` were "/":
 * absolute link targets restart at root, ".." never climbs above root. Components that do not
 * exist are taken literally. The result is a relative path whose existing components contain
 * no symlink, so joining it to `root` names a place inside `root`.
 *
 * Every component is followed, including the last; callers that must not follow the last one
 * (creating an entry) resolve the parent only, like containerd's applyNaive.
 */
export async function resolveInRoot(root: string, rel: string, what: string): Promise<string> {
  const walk = linkWalk(rel, what);
  for (let step = walk.next(); ; ) {
    if (step.done) return step.value;
    const candidate = path.join(root, ...step.value);
    let isLink = false;
    try {
      isLink = (await fsp.lstat(candidate)).isSymbolicLink();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
    }
    step = walk.next(isLink ? await fsp.readlink(candidate) : undefined);
  }
}

/** resolveInRoot with synchronous calls, for the apply loop (apply-layer.ts "Speed"). */
export function resolveInRootSync(root: string, rel: string, what: string): string {
  const walk = linkWalk(rel, what);
  for (let step = walk.next(); ; ) {
    if (step.done) return step.value;
    const candidate = path.join(root, ...step.value);
    let isLink = false;
    try {
      isLink = fs.lstatSync(candidate, { throwIfNoEntry: false })?.isSymbolicLink() ?? false;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOTDIR') throw e;
    }
    step = walk.next(isLink ? fs.readlinkSync(candidate) : undefined);
  }
}

/**
 * The walk of every in-root resolution (containerd's walkLinks), apart from how a path is looked
 * up: it yields the components of each place to look at (already resolved, then the next name),
 * is told that place's symlink target (undefined: not a symlink, or absent), and returns the
 * resolved relative path. Absolute targets restart at the root; ".." never climbs above it.
 * Drivers: resolveInRoot, resolveInRootSync, and the sandbox's mount destinations
 * (sandbox/confine-targets.ts), which looks through overlay layers and earlier mounts.
 */
export function* linkWalk(rel: string, what: string, code: 'LAYER_INVALID' | 'SANDBOX_FAILED' = 'LAYER_INVALID'): Generator<readonly string[], string, string | undefined> {
  const todo = rel.split('/').reverse(); // a stack: last element is the next component
  const resolved: string[] = [];
  let links = 0;
  while (todo.length > 0) {
    const c = todo.pop() as string;
    if (c === '' || c === '.') continue;
    if (c === '..') {
      resolved.pop();
      continue;
    }
    resolved.push(c);
    const target = yield resolved;
    if (target === undefined) continue;
    resolved.pop();
    if (++links > MAX_LINKS) throw new TsbuildError(code, `too many levels of symbolic links resolving ${JSON.stringify(what)}`);
    if (target.startsWith('/')) resolved.length = 0;
    for (const t of target.split('/').reverse()) todo.push(t);
  }
  return resolved.join('/');
}

/** `root` + a resolved relative path; asserts containment (belt and braces). */
export function joinInRoot(root: string, rel: string): string {
  const abs = rel === '' ? root : path.join(root, rel);
  const r = path.relative(root, abs);
  if (r === '..' || r.startsWith('../') || path.isAbsolute(r)) {
    throw new TsbuildError('LAYER_UNSAFE', `internal: ${JSON.stringify(rel)} resolves outside the root`);
  }
  return abs;
}
