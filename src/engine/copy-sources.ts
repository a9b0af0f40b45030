import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { readDirectoryNames } from '../context/index.js';
import { fsPath, nameFromBytes } from '../oci/index.js';
import { TsbuildError, type SourceLocation } from '../errors.js';
import { hasWildcard, matchGlob, unescapeGlob, globToRegExp } from './glob.js';

/** What decides which context paths a build may see (.dockerignore, COPY --exclude). */
export interface PathFilter {
  /** True when the path (relative, slash-separated) is excluded. */
  matches(relPath: string): boolean;
  /** True when an excluded directory must still be walked (an exception may re-include below it). */
  mustDescend?(relDir: string): boolean;
  /** The pattern that excluded the path, for error messages. */
  matchingPattern?(relPath: string): { readonly pattern: string } | undefined;
}

/** A directory tree COPY reads from: the build context, or a stage/image unpacked on disk. */
export interface SourceRoot {
  readonly dir: string;
  readonly kind: 'context' | 'stage';
  /** Shown in errors: "build context", "stage build", ... */
  readonly label: string;
  readonly filter?: PathFilter | undefined;
  /** Name of the ignore file the filter came from, for messages. */
  readonly filterFile?: string | undefined;
  /** Host owner -> image owner, for trees unpacked in a user namespace (rootless). */
  readonly mapOwner?: ((uid: number, gid: number) => { uid: number; gid: number }) | undefined;
  /**
   * The exact walk of the whole root (BuildKit's fsutil walker for a context): when given,
   * directory sources take their entries from it, so COPY sees precisely what BuildKit
   * would send. DEBT(#18): a subdirectory source walks the whole context and keeps its part.
   */
  readonly walk?: (() => Iterable<{ readonly relPath: string; readonly absPath: string; readonly stat: fs.Stats }>) | undefined;
}

export interface SourceFile {
  /** Absolute path on the host, always inside the root (bytes that are not UTF-8 escaped: open it through fsPath). */
  readonly abs: string;
  /** Path relative to the root ('' for the root itself). */
  readonly rel: string;
  /** Metadata of the thing itself (symlinks are not followed below a matched source). */
  readonly stat: fs.Stats;
  /** The name it is copied under into a destination directory. */
  readonly name: string;
}

/** One COPY source argument and what it matched. */
export interface SourceMatch {
  readonly arg: string;
  readonly wildcard: boolean;
  readonly matches: readonly SourceFile[];
}

function within(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function toRel(root: string, abs: string): string {
  return path.relative(root, abs).split(path.sep).join('/');
}

/**
 * Resolves `rel` under `root` following symlinks (also the last component when
 * `followLast`). Returns the host path, or undefined when something along the way does not
 * exist.
 *
 * Two confinements. The build context (the default) refuses any symlink that points out of
 * it: COPY reads only what the context holds. A stage's or image's root filesystem
 * (`chroot`) is "/" to its own symlinks, as BuildKit resolves a COPY --from source inside the
 * source state (continuity's RootPath): an absolute target restarts at the root and ".."
 * stops there, so `/abs -> /store/real` names the stage's /store/real and nothing on the host.
 */
export async function resolveInRoot(root: string, rel: string, followLast: boolean, where: () => string, opts: { readonly chroot?: boolean } = {}): Promise<string | undefined> {
  if (opts.chroot) return resolveChrooted(root, rel, followLast, where);
  const parts = rel.split('/').filter((s) => s !== '' && s !== '.');
  let current = root;
  let hops = 0;
  while (parts.length > 0) {
    const head = parts.shift()!;
    if (head === '..') {
      throw escape(where(), rel);
    }
    const next = path.join(current, head);
    let st: fs.Stats;
    try {
      st = await fsp.lstat(fsPath(next));
    } catch {
      return undefined;
    }
    if (st.isSymbolicLink() && (parts.length > 0 || followLast)) {
      if (++hops > 255) return undefined;
      const target = nameFromBytes(await fsp.readlink(fsPath(next), { encoding: 'buffer' }));
      const resolved = path.resolve(path.dirname(next), target);
      if (!within(root, resolved)) throw escape(where(), rel, target);
      const restRel = toRel(root, resolved);
      parts.unshift(...restRel.split('/').filter((s) => s !== ''));
      current = root;
      continue;
    }
    current = next;
  }
  return current;
}

async function resolveChrooted(root: string, rel: string, followLast: boolean, where: () => string): Promise<string | undefined> {
  const { resolveInRoot: rootPath } = await import('../layer/index.js');
  const clean = rel.split('/').filter((s) => s !== '' && s !== '.');
  if (clean.length === 0) return root;
  // Every component chroot-style; the last one left as it is unless it is to be followed.
  let inner: string;
  if (followLast) inner = await rootPath(root, clean.join('/'), where());
  else {
    const parent = await rootPath(root, clean.slice(0, -1).join('/'), where());
    inner = parent === '' ? clean[clean.length - 1]! : `${parent}/${clean[clean.length - 1]!}`;
  }
  const abs = inner === '' ? root : path.join(root, inner);
  if (!within(root, abs)) throw escape(where(), rel);
  try {
    await fsp.lstat(fsPath(abs));
  } catch {
    return undefined;
  }
  return abs;
}

function escape(where: string, rel: string, target?: string): TsbuildError {
  return new TsbuildError(
    'CONTEXT_ESCAPE',
    target === undefined
      ? `${where}: ${JSON.stringify(rel)} is outside the build context`
      : `${where}: ${JSON.stringify(rel)} is a symlink to ${JSON.stringify(target)}, outside the build context`,
    { hint: 'COPY and ADD can only read files inside the build context; move the file into it' },
  );
}

/** Normalises a source argument relative to the root; `..` that climbs out is an error. */
export function cleanSourceArg(arg: string, where: string): string {
  const n = path.posix.normalize(arg.replace(/^\/+/, ''));
  if (n === '..' || n.startsWith('../')) throw escape(where, arg);
  return n === '.' ? '' : n.replace(/\/+$/, '');
}

export interface ResolveOptions {
  readonly instruction: string; // "COPY" / "ADD"
  readonly location?: SourceLocation | undefined;
}

/**
 * Resolves the source arguments of a COPY/ADD against a root, as BuildKit's file op does:
 * wildcards per component (an empty wildcard match is allowed, as BuildKit allows it), the
 * named source itself followed when it is a symlink, and nothing outside the root or
 * excluded by .dockerignore ever returned.
 */
export async function resolveSources(root: SourceRoot, args: readonly string[], opts: ResolveOptions): Promise<SourceMatch[]> {
  const out: SourceMatch[] = [];
  const where = () => `${opts.instruction} ${args.join(' ')}`;
  for (const arg of args) {
    const clean = cleanSourceArg(arg, where());
    if (!hasWildcard(clean)) {
      const rel = unescapeGlob(clean);
      const excluded = rel !== '' && root.filter?.matches(rel);
      const abs = excluded ? undefined : await resolveInRoot(root.dir, rel, true, where, { chroot: root.kind === 'stage' });
      if (abs === undefined) {
        throw missing(root, arg, rel, opts, Boolean(excluded));
      }
      const stat = await fsp.stat(fsPath(abs));
      const resolvedRel = toRel(root.dir, abs);
      if (resolvedRel !== rel && resolvedRel !== '' && root.filter?.matches(resolvedRel)) {
        throw missing(root, arg, resolvedRel, opts, true);
      }
      out.push({ arg, wildcard: false, matches: [{ abs, rel: resolvedRel, stat, name: path.posix.basename(rel) || path.basename(abs) }] });
      continue;
    }
    for (const part of clean.split('/')) {
      if (hasWildcard(part) && globToRegExp(part) === null) {
        throw new TsbuildError('DOCKERFILE_INSTRUCTION', `${where()}: invalid wildcard pattern ${JSON.stringify(arg)}`, { location: opts.location });
      }
    }
    const matches = await expandWildcard(root, clean.split('/'), where);
    out.push({ arg, wildcard: true, matches });
  }
  return out;
}

async function expandWildcard(root: SourceRoot, parts: readonly string[], where: () => string): Promise<SourceFile[]> {
  let current: string[] = [''];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    const last = i === parts.length - 1;
    const next: string[] = [];
    for (const base of current) {
      if (!hasWildcard(part)) {
        const rel = base === '' ? unescapeGlob(part) : `${base}/${unescapeGlob(part)}`;
        next.push(rel);
        continue;
      }
      const dirAbs = await resolveInRoot(root.dir, base, true, where, { chroot: root.kind === 'stage' });
      if (dirAbs === undefined) continue;
      // Names as bytes: one that is not valid UTF-8 matches and is copied like any other.
      let names: string[];
      try {
        names = await readDirectoryNames(dirAbs);
      } catch {
        continue;
      }
      for (const name of names.sort()) {
        if (!matchGlob(part, name)) continue;
        const rel = base === '' ? name : `${base}/${name}`;
        if (last && root.filter?.matches(rel)) continue;
        next.push(rel);
      }
    }
    current = next;
  }
  const out: SourceFile[] = [];
  for (const rel of current) {
    if (root.filter?.matches(rel)) continue;
    const abs = await resolveInRoot(root.dir, rel, true, where, { chroot: root.kind === 'stage' });
    if (abs === undefined) continue;
    out.push({ abs, rel: toRel(root.dir, abs), stat: await fsp.stat(fsPath(abs)), name: path.posix.basename(rel) });
  }
  return out;
}

function missing(root: SourceRoot, arg: string, rel: string, opts: ResolveOptions, excluded: boolean): TsbuildError {
  if (excluded && root.filter) {
    const pattern = root.filter.matchingPattern?.(rel)?.pattern;
    return new TsbuildError(
      'CONTEXT_SOURCE_EXCLUDED',
      `${opts.instruction} ${arg}: ${JSON.stringify(rel)} is excluded by ${root.filterFile ?? '.dockerignore'}${pattern ? ` (pattern ${JSON.stringify(pattern)})` : ''}`,
      { location: opts.location, hint: `remove the pattern from ${root.filterFile ?? '.dockerignore'} or add an exception line "!${rel}"` },
    );
  }
  return new TsbuildError('CONTEXT_SOURCE_MISSING', `${opts.instruction} ${arg}: ${JSON.stringify(rel || '.')} not found in ${root.label}`, {
    location: opts.location,
  });
}

/** What walkSourceDir yields: a source entry with its path relative to the walked directory. */
export type WalkedSource = SourceFile & { readonly inner: string };

/**
 * Walks a directory source (its contents, not itself), sorted, never following symlinks,
 * skipping what the filter excludes but descending where an exception could re-include.
 * Yields paths relative to the directory together with their root-relative path. From a root
 * with its own walk (a context), synchronously: the walk's system calls are synchronous, and
 * a promise per entry for 20,000 of them cost more than the walk itself.
 */
export function walkSourceDir(root: SourceRoot, dir: SourceFile): Iterable<WalkedSource> | AsyncIterable<WalkedSource> {
  if (root.walk) return fromRootWalk(root.walk(), dir);
  return walkSourceDirAsync(root, dir);
}

/**
 * Calls `fn` on each entry of `entries`, in a plain loop when they come synchronously, letting
 * the event loop turn every 4096 entries (progress, and an abort's signal, which the walk checks).
 */
export async function forEachWalked<T>(entries: Iterable<T> | AsyncIterable<T>, fn: (e: T) => void): Promise<void> {
  if (Symbol.iterator in entries) {
    let n = 0;
    for (const e of entries) {
      fn(e);
      if (++n % 4096 === 0) await new Promise((r) => setImmediate(r));
    }
    return;
  }
  for await (const e of entries) fn(e);
}

function* fromRootWalk(walk: Iterable<{ readonly relPath: string; readonly absPath: string; readonly stat: fs.Stats }>, dir: SourceFile): Generator<WalkedSource> {
  const prefix = dir.rel === '' ? '' : `${dir.rel}/`;
  for (const e of walk) {
    if (prefix !== '' && !e.relPath.startsWith(prefix)) continue;
    yield new WalkedEntry(e.absPath, e.relPath, e.stat, prefix.length);
  }
}

/** An entry of a context walk as a source: its name made only when asked (a COPY of a directory never asks). */
class WalkedEntry implements WalkedSource {
  readonly inner: string;
  constructor(
    readonly abs: string,
    readonly rel: string,
    readonly stat: fs.Stats,
    prefixLength: number,
  ) {
    this.inner = prefixLength === 0 ? rel : rel.slice(prefixLength);
  }

  get name(): string {
    return path.posix.basename(this.rel);
  }
}

async function* walkSourceDirAsync(root: SourceRoot, dir: SourceFile): AsyncGenerator<WalkedSource> {
  const stack: Array<{ abs: string; inner: string }> = [{ abs: dir.abs, inner: '' }];
  // Depth-first in sorted order: entries are yielded parents first.
  async function* visit(abs: string, inner: string): AsyncGenerator<WalkedSource> {
    const names = (await readDirectoryNames(abs)).sort();
    for (const name of names) {
      const childAbs = path.join(abs, name);
      const childInner = inner === '' ? name : `${inner}/${name}`;
      const rel = toRel(root.dir, childAbs);
      const st = await fsp.lstat(fsPath(childAbs));
      const excluded = root.filter?.matches(rel) ?? false;
      if (excluded) {
        if (st.isDirectory() && root.filter?.mustDescend?.(rel)) {
          // Walk below for re-included entries; the directory itself shows up only if one is.
          const below: WalkedSource[] = [];
          for await (const e of visit(childAbs, childInner)) below.push(e);
          if (below.length > 0) {
            yield { abs: childAbs, rel, stat: st, inner: childInner, name };
            yield* below;
          }
        }
        continue;
      }
      yield { abs: childAbs, rel, stat: st, inner: childInner, name };
      if (st.isDirectory()) yield* visit(childAbs, childInner);
    }
  }
  const first = stack[0]!;
  yield* visit(first.abs, first.inner);
}
