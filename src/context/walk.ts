/**
 * Walks a build context the way BuildKit's file sender sees it through tonistiigi/fsutil's
 * filterFS.Walk (https://github.com/tonistiigi/fsutil/blob/master/filter.go):
 *
 * - an excluded entry is left out; an excluded directory is still entered when an exception
 *   pattern could put back something below it (IgnoreMatcher.mustDescend);
 * - a directory that is excluded but holds an entry that is put back is emitted too, right
 *   before that entry would need it (fsutil emits such parents lazily), so every yielded path's
 *   parents are yielded; an excluded directory with nothing put back is not yielded at all;
 * - symlinks are never followed (a link to a directory is yielded as a symlink);
 * - entries come in byte order of their relative path, the order tar layers use; names are
 *   bytes, and one that is not valid UTF-8 is walked like any other (file-names.ts);
 * - sockets, fifos and devices are yielded as 'other' (COPY skips them with a warning).
 *
 * The context root itself is not yielded.
 */
import type { Stats } from 'node:fs';
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { TsbuildError } from '../errors.js';
import type { IgnoreMatcher, MatchInfo } from './dockerignore.js';
import { displayName, fsPath, nameBytes } from '../oci/index.js';
import { readDirectoryNames } from './file-names.js';

export interface ContextEntry {
  /** Slash-separated path relative to the context root, no leading `./`. */
  readonly relPath: string;
  /** Host path; a name that is not valid UTF-8 is held escaped: open it through oci's fsPath. */
  readonly absPath: string;
  readonly type: 'file' | 'dir' | 'symlink' | 'other';
  readonly stat: Stats;
}

export interface WalkContextOptions {
  readonly signal?: AbortSignal;
}

const SLASH = Buffer.from('/');

function typeOf(stat: Stats): ContextEntry['type'] {
  if (stat.isFile()) return 'file';
  if (stat.isDirectory()) return 'dir';
  if (stat.isSymbolicLink()) return 'symlink';
  return 'other';
}

const errnoOf = (e: unknown): string | undefined => (e as NodeJS.ErrnoException | undefined)?.code;

/** An entry vanished between readdir and lstat: fsutil skips those (isNotExist -> SkipDir). */
const isGone = (e: unknown): boolean => errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENOTDIR';

const isPermission = (e: unknown): boolean => errnoOf(e) === 'EACCES' || errnoOf(e) === 'EPERM';

function unreadable(absPath: string, e: unknown): TsbuildError {
  return new TsbuildError('CONTEXT_NOT_FOUND', `cannot read ${displayName(absPath)} in the build context: ${(e as Error).message}`, {
    cause: e,
    hint: 'Make it readable, or exclude it in .dockerignore',
  });
}

export async function* walkContext(
  contextDir: string,
  matcher: IgnoreMatcher,
  opts: WalkContextOptions = {},
): AsyncIterable<ContextEntry> {
  const root = path.resolve(contextDir);
  let rootStat: Stats;
  try {
    rootStat = await lstat(root);
  } catch (e) {
    throw new TsbuildError('CONTEXT_NOT_FOUND', `build context ${root} not found`, { cause: e });
  }
  if (!rootStat.isDirectory()) {
    throw new TsbuildError('CONTEXT_NOT_FOUND', `build context ${root} is not a directory`);
  }
  yield* walkDir(root, '', undefined, false, matcher, opts.signal);
}

interface Child {
  readonly entry: ContextEntry;
  readonly excluded: boolean;
  readonly info: MatchInfo;
}

/**
 * Yields what lies under `relDir`. `excludedDir` says the directory itself is excluded (it is
 * only being searched for entries put back), in which case an unreadable directory is skipped
 * as fsutil does, rather than failing the build.
 */
async function* walkDir(
  absDir: string,
  relDir: string,
  info: MatchInfo | undefined,
  excludedDir: boolean,
  matcher: IgnoreMatcher,
  signal: AbortSignal | undefined,
): AsyncGenerator<ContextEntry> {
  signal?.throwIfAborted();
  // Names are read as bytes: one that is not valid UTF-8 is held escaped and copied as its
  // bytes (oci/byte-names.ts), as BuildKit copies it.
  let names: string[];
  try {
    names = await readDirectoryNames(absDir);
  } catch (e) {
    if (isGone(e) || (excludedDir && isPermission(e))) return;
    throw unreadable(absDir, e);
  }

  // lstat the whole directory at once; libuv's thread pool bounds the real concurrency.
  const stats = await Promise.all(
    names.map(async (name): Promise<Stats | undefined> => {
      const abs = path.join(absDir, name);
      try {
        return await lstat(fsPath(abs));
      } catch (e) {
        if (isGone(e) || (excludedDir && isPermission(e))) return undefined;
        throw unreadable(abs, e);
      }
    }),
  );
  signal?.throwIfAborted();

  const children: Child[] = [];
  names.forEach((name, i) => {
    const stat = stats[i];
    if (stat === undefined) return;
    const relPath = relDir === '' ? name : `${relDir}/${name}`;
    // Top-level entries have no parent results: the matcher falls back to parent-path checks.
    const m = matcher.matchesUsingParent(relPath, relDir === '' ? undefined : info);
    const entry: ContextEntry = { relPath, absPath: path.join(absDir, name), type: typeOf(stat), stat };
    children.push({ entry, excluded: m.excluded, info: m.info });
  });

  // A directory's own entry sorts at "name", its contents at "name/": siblings such as
  // "name.txt" fall between them, so order both kinds of event together.
  // Keys are the names' bytes, made once per event (not once per comparison).
  type Event = { key: Buffer; child: Child; subtree: boolean };
  const events: Event[] = [];
  for (const child of children) {
    const name = nameBytes(child.entry.relPath.slice(relDir === '' ? 0 : relDir.length + 1));
    events.push({ key: name, child, subtree: false });
    if (child.entry.type === 'dir') events.push({ key: Buffer.concat([name, SLASH]), child, subtree: true });
  }
  events.sort((a, b) => Buffer.compare(a.key, b.key));

  // Contents of excluded directories, gathered when the directory's own entry comes up, to
  // know whether it shows at all. Only what exceptions put back is held in memory, which is
  // normally little; everything else streams.
  const gathered = new Map<string, ContextEntry[]>();
  for (const ev of events) {
    const { entry, excluded, info: childInfo } = ev.child;
    if (!ev.subtree) {
      if (!excluded) {
        yield entry;
        continue;
      }
      if (entry.type !== 'dir' || !matcher.mustDescend(entry.relPath)) continue;
      const below: ContextEntry[] = [];
      for await (const e of walkDir(entry.absPath, entry.relPath, childInfo, true, matcher, signal)) below.push(e);
      if (below.length === 0) continue;
      gathered.set(entry.relPath, below);
      yield entry;
      continue;
    }
    if (!excluded) {
      yield* walkDir(entry.absPath, entry.relPath, childInfo, false, matcher, signal);
    } else {
      const below = gathered.get(entry.relPath);
      if (below !== undefined) yield* below;
    }
  }
}
