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
import { lstatSync, readdirSync, type Stats } from 'node:fs';
import path from 'node:path';
import { TsbuildError } from '../errors.js';
import type { IgnoreMatcher, MatchInfo } from './dockerignore.js';
import { displayName, fsPath, nameBytes, nameFromBytes } from '../oci/index.js';

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

/**
 * The walk as an async iterable (see walkContextSync, which does the work).
 */
export async function* walkContext(contextDir: string, matcher: IgnoreMatcher, opts: WalkContextOptions = {}): AsyncIterable<ContextEntry> {
  yield* walkContextSync(contextDir, matcher, opts);
}

/**
 * The walk with synchronous system calls, one directory at a time. A context's entries are
 * lstat'ed every build (a cached COPY of it needs each file's stat data), and for 20,000 files
 * an lstat through libuv's thread pool cost about 15 us of the main thread's time apiece (a
 * promise, a request object, a callback) against about 5 us for lstatSync, which does the
 * system call itself; the walk of the big-context benchmark went from ~300 ms of CPU to ~100.
 * A directory listing or an lstat of a file in the page cache does not block for long.
 */
export function* walkContextSync(contextDir: string, matcher: IgnoreMatcher, opts: WalkContextOptions = {}): Generator<ContextEntry> {
  const root = path.resolve(contextDir);
  let rootStat: Stats;
  try {
    rootStat = lstatSync(root);
  } catch (e) {
    throw new TsbuildError('CONTEXT_NOT_FOUND', `build context ${root} not found`, { cause: e });
  }
  if (!rootStat.isDirectory()) {
    throw new TsbuildError('CONTEXT_NOT_FOUND', `build context ${root} is not a directory`);
  }
  yield* walkDir(root, '', undefined, false, matcher, opts.signal);
}

/**
 * An entry of a directory as the walk orders it: the entry itself (`subtree` false), or, for a
 * directory, a second one for its contents. `key`: the name (its bytes when not all names of
 * the directory are ASCII), with a '/' after it for the contents.
 */
interface Event {
  readonly entry: ContextEntry;
  readonly excluded: boolean;
  readonly info: MatchInfo;
  key: string | Buffer;
  readonly subtree: boolean;
}

/**
 * A directory's names. Read as strings first (a Buffer per name costs more than the lstat of
 * the file); a name that is not valid UTF-8 decodes with U+FFFD in it, and then the names are
 * read again as bytes, and such a name held escaped (oci/byte-names.ts).
 */
function readNames(absDir: string): string[] {
  const dir = fsPath(absDir);
  const names = readdirSync(dir);
  if (!names.some((n) => n.includes('\uFFFD'))) return names;
  return readdirSync(dir, { encoding: 'buffer' }).map((r) => nameFromBytes(r));
}

// eslint-disable-next-line no-control-regex
const ASCII = /^[\x00-\x7f]*$/;

/**
 * Yields what lies under `relDir`. `excludedDir` says the directory itself is excluded (it is
 * only being searched for entries put back), in which case an unreadable directory is skipped
 * as fsutil does, rather than failing the build.
 */
function* walkDir(
  absDir: string,
  relDir: string,
  info: MatchInfo | undefined,
  excludedDir: boolean,
  matcher: IgnoreMatcher,
  signal: AbortSignal | undefined,
): Generator<ContextEntry> {
  signal?.throwIfAborted();
  // Names are read as bytes: one that is not valid UTF-8 is held escaped and copied as its
  // bytes (oci/byte-names.ts), as BuildKit copies it.
  let names: string[];
  try {
    names = readNames(absDir);
  } catch (e) {
    if (isGone(e) || (excludedDir && isPermission(e))) return;
    throw unreadable(absDir, e);
  }

  const events: Event[] = [];
  const prefix = absDir.endsWith('/') ? absDir : `${absDir}/`;
  for (const name of names) {
    const abs = prefix + name;
    let stat: Stats | undefined;
    try {
      stat = lstatSync(fsPath(abs));
    } catch (e) {
      if (isGone(e) || (excludedDir && isPermission(e))) continue;
      throw unreadable(abs, e);
    }
    const relPath = relDir === '' ? name : `${relDir}/${name}`;
    // Top-level entries have no parent results: the matcher falls back to parent-path checks.
    const m = matcher.matchesUsingParent(relPath, relDir === '' ? undefined : info);
    const entry: ContextEntry = { relPath, absPath: abs, type: typeOf(stat), stat };
    events.push({ entry, excluded: m.excluded, info: m.info, key: name, subtree: false });
    if (entry.type === 'dir') events.push({ entry, excluded: m.excluded, info: m.info, key: `${name}/`, subtree: true });
  }

  // A directory's own entry sorts at "name", its contents at "name/": siblings such as
  // "name.txt" fall between them, so order both kinds of event together, in the byte order of
  // the names. For ASCII names that is the order of the strings; other names are compared as
  // their bytes, made once per event (not once per comparison).
  const ascii = names.every((n) => ASCII.test(n));
  if (!ascii) for (const ev of events) ev.key = nameBytes(ev.key as string);
  if (ascii) events.sort((a, b) => ((a.key as string) < (b.key as string) ? -1 : (a.key as string) > (b.key as string) ? 1 : 0));
  else events.sort((a, b) => Buffer.compare(a.key as Buffer, b.key as Buffer));

  // Contents of excluded directories, gathered when the directory's own entry comes up, to
  // know whether it shows at all. Only what exceptions put back is held in memory, which is
  // normally little; everything else streams.
  const gathered = new Map<string, ContextEntry[]>();
  for (const ev of events) {
    const { entry, excluded, info: childInfo } = ev;
    if (!ev.subtree) {
      if (!excluded) {
        yield entry;
        continue;
      }
      if (entry.type !== 'dir' || !matcher.mustDescend(entry.relPath)) continue;
      const below = [...walkDir(entry.absPath, entry.relPath, childInfo, true, matcher, signal)];
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
