import path from 'node:path/posix';
import { readlinkSync } from 'node:fs';
import type fs from 'node:fs';
import type { IndexedEntry, RootfsView } from '../image/index.js';
import { normalize } from '../image/index.js';
import { fsPath, nameFromBytes } from '../oci/index.js';
import type { IdPair } from '../image/index.js';
import { forEachWalked, walkSourceDir, type SourceMatch, type SourceRoot } from './copy-sources.js';
import { statKey } from './file-digests.js';
import { HardLinkGroups } from './hardlink-plan.js';
import type { ChmodSpec } from './chmod-mode.js';

/** One entry of the layer a COPY/ADD writes. */
export interface PlannedEntry extends IndexedEntry {
  /** Host path of the content (files) — absent for directories and created parents. */
  readonly srcAbs?: string;
  /**
   * The stat data of the file at `srcAbs` when it was planned (file-digests.ts statKey): the
   * stat index answers its digest from it without another lstat.
   */
  readonly srcStat?: string;
  /** For an 'other' entry (socket, fifo, device): what it is and its source path, for the warning that it is not copied. */
  readonly skipped?: { readonly what: string; readonly rel: string };
}

export interface CopyPlanOptions {
  readonly dest: string;
  readonly workdir: string;
  /** More than one source argument (the destination is then a directory). */
  readonly view: RootfsView;
  /** --chown; undefined = 0:0 from the context, the source's owner from a stage. */
  readonly chown?: IdPair | undefined;
  /** --chmod, already parsed: a mode, or a symbolic change of each entry's own mode. */
  readonly chmod?: ChmodSpec | undefined;
  /** mtime for directories the copy creates (seconds). */
  readonly createdMtime: number;
  /** Sources of the same instruction planned in other groups (ADD of URLs and archives). */
  readonly otherSources?: number;
  /** `--exclude` patterns, matched against paths relative to each source (BuildKit). */
  readonly exclude?: { matches(relPath: string): boolean; mustDescend?(relDir: string): boolean } | undefined;
}

/** Context files are copied owned by 0:0 (without --chown). */
const ROOT_OWNER = Object.freeze({ uid: 0, gid: 0 });

/** `COPY x .`, `COPY x dir/`, `COPY x dir/.` name a directory. */
function namesDirectory(dest: string): boolean {
  return dest.endsWith('/') || dest === '.' || dest.endsWith('/.') || dest === '..' || dest.endsWith('/..');
}

/**
 * Where each source lands and with which metadata, following the Dockerfile reference
 * (https://docs.docker.com/reference/dockerfile/#copy): a directory's contents rather than
 * the directory; a file into `dest/` when dest names or is a directory, else to dest itself;
 * several sources need a directory. Parents missing in the image are created (0755, owned
 * by the --chown user as BuildKit does); existing parents appear with their own metadata,
 * as an overlay diff would show them.
 */
export async function planCopy(root: SourceRoot, sources: readonly SourceMatch[], opts: CopyPlanOptions): Promise<PlannedEntry[]> {
  const destAbs = path.isAbsolute(opts.dest) ? opts.dest : path.join('/', opts.workdir, opts.dest);
  const multiple = sources.length + (opts.otherSources ?? 0) > 1 || sources.some((s) => s.wildcard && s.matches.length > 1);
  const destRel = normalize(destAbs);
  const resolvedDest = opts.view.resolve(destRel);
  const destIsDir = namesDirectory(opts.dest) || multiple || resolvedDest.entry?.type === 'dir';
  const planned = new Map<string, PlannedEntry>();

  const owner = (st: fs.Stats): { uid: number; gid: number } =>
    opts.chown ?? (root.kind === 'context' ? ROOT_OWNER : root.mapOwner ? root.mapOwner(st.uid, st.gid) : { uid: st.uid, gid: st.gid });
  const chmod = (mode: number, isDir: boolean): number => (opts.chmod === undefined ? mode : typeof opts.chmod === 'number' ? opts.chmod : opts.chmod.apply(mode, isDir));
  const modeOf = (st: fs.Stats): number => chmod(st.mode & 0o7777, st.isDirectory());
  const put = (e: PlannedEntry) => {
    planned.set(e.path, e);
  };
  const links = new HardLinkGroups();
  // BuildKit copies each match of a source (each wildcard match) with a copier of its own.
  let copyIndex = 0;

  for (const src of sources) {
    for (const m of src.matches) {
      const sourceIndex = copyIndex++;
      if (m.stat.isDirectory()) {
        const target = resolvedDest.path;
        if (target !== '' && !planned.has(target) && resolvedDest.entry?.type !== 'dir') {
          put({ path: target, type: 'dir', mode: chmod(0o755, true), ...(opts.chown ?? { uid: 0, gid: 0 }), mtime: opts.createdMtime, size: 0 });
        }
        const skipped: string[] = [];
        await forEachWalked(walkSourceDir(root, m), (e) => {
          if (opts.exclude) {
            if (skipped.some((d) => e.inner.startsWith(`${d}/`))) return;
            if (opts.exclude.matches(e.inner)) {
              if (e.stat.isDirectory() && !opts.exclude.mustDescend?.(e.inner)) skipped.push(e.inner);
              return;
            }
          }
          const p = target === '' ? e.inner : `${target}/${e.inner}`;
          const entry = entryFor(p, e.abs, e.rel, e.stat, owner(e.stat), modeOf(e.stat), e.stat.isSymbolicLink() ? readLink(e.abs) : undefined);
          links.note(entry, e.stat, sourceIndex);
          put(entry);
        });
        continue;
      }
      if (opts.exclude?.matches(m.name)) continue;
      const target = destIsDir ? (resolvedDest.path === '' ? m.name : `${resolvedDest.path}/${m.name}`) : resolvedDest.path;
      const entry = entryFor(target, m.abs, m.rel, m.stat, owner(m.stat), modeOf(m.stat), undefined);
      links.note(entry, m.stat, sourceIndex);
      put(entry);
    }
  }

  // Parents of everything written: from the image when they exist there, else created. A
  // directory whose parents were seen to already is not climbed from again (one dirname per
  // entry, not one per level of each of 20,000 entries).
  const ensured = new Set<string>();
  for (const p of [...planned.keys()]) {
    for (let dir = path.dirname(p); dir !== '.' && dir !== '/' && dir !== ''; dir = path.dirname(dir)) {
      if (ensured.has(dir)) break;
      ensured.add(dir);
      if (planned.has(dir)) continue;
      const existing = opts.view.lstat(dir);
      if (existing?.type === 'dir') {
        const { layer: _layer, ...meta } = existing;
        planned.set(dir, meta);
      } else {
        planned.set(dir, { path: dir, type: 'dir', mode: 0o755, ...(opts.chown ?? { uid: 0, gid: 0 }), mtime: opts.createdMtime, size: 0 });
      }
    }
  }
  return links.apply(sortedByPath([...planned.values()]));
}

const byPathOrder = (a: PlannedEntry, b: PlannedEntry): number => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

/** `entries` sorted by path, in place; a plan that comes sorted (a walk's order, mostly) is only checked. */
export function sortedByPath(entries: PlannedEntry[]): PlannedEntry[] {
  for (let i = 1; i < entries.length; i++) {
    if (byPathOrder(entries[i - 1]!, entries[i]!) > 0) return entries.sort(byPathOrder);
  }
  return entries;
}

/** A link's target as bytes: one that is not valid UTF-8 is kept escaped (oci/byte-names.ts). */
function readLink(abs: string): string {
  return nameFromBytes(readlinkSync(fsPath(abs), { encoding: 'buffer' }));
}

function entryFor(p: string, abs: string, rel: string, st: fs.Stats, ids: { uid: number; gid: number }, mode: number, linkTarget: string | undefined): PlannedEntry {
  const mtime = Math.floor(st.mtimeMs) / 1000;
  if (st.isSymbolicLink()) {
    return { path: p, type: 'symlink', mode: 0o777, ...ids, mtime, size: 0, linkTarget: linkTarget ?? '' };
  }
  if (st.isDirectory()) return { path: p, type: 'dir', mode, ...ids, mtime, size: 0 };
  if (st.isFile()) return { path: p, type: 'file', mode, ...ids, mtime, size: st.size, srcAbs: abs, srcStat: statKey(st) };
  // Sockets, fifos and devices in a build context are not copied content; keep them visible
  // as 'other' so the step can warn about each and the writer skip it.
  const what = st.isFIFO() ? 'named pipe' : st.isSocket() ? 'socket' : st.isCharacterDevice() ? 'character device' : st.isBlockDevice() ? 'block device' : 'special file';
  return { path: p, type: 'other', mode, ...ids, mtime, size: 0, skipped: { what, rel } };
}
