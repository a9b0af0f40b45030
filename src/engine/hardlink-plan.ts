import type fs from 'node:fs';
import type { PlannedEntry } from './copy-plan.js';

/**
 * Keeps hard links in a COPY/ADD layer, as BuildKit's copier does (tonistiigi/fsutil copy:
 * an inode map per copied source; the first name of an inode seen is copied, every later
 * name becomes a hard link to it). So two context files that are hard links of each other,
 * or the hard links of an archive ADD unpacks, are one file with several names in the layer,
 * not copies. Like BuildKit, the map is per copied source (docopy calls copy.Copy once per
 * source and per wildcard match): `COPY a b /d/` or `COPY a* /d/` with `a` and `b` linked
 * gives two files, `COPY . /d/` one file and a link.
 *
 * Usage: `note` every planned entry with the stat it came from and the index of the copied
 * source it belongs to; `apply` to the sorted plan rewrites all names of a group but the first (in path
 * order, the order the layer is written in) as hard links to it. Entries a later source
 * replaced are no longer in the plan and so leave their group.
 */
/** Each hard link made by `apply` -> the file entry it replaced and the entry it links to. */
const madeLinks = new WeakMap<PlannedEntry, { readonly original: PlannedEntry; readonly target: PlannedEntry }>();

/**
 * After the plans of several sources were merged by path (ADD of two archives, COPY --parents
 * with two pivots), a later plan may have replaced the file a link points to: such a link
 * becomes its own file again (what BuildKit leaves there: the replaced name is another inode,
 * the link keeps the old content). Without this the layer would link to a directory, or to
 * other content.
 */
export function keepLinksWhole(byPath: Map<string, PlannedEntry>): void {
  for (const [p, e] of byPath) {
    const made = madeLinks.get(e);
    if (made && byPath.get(made.target.path) !== made.target) byPath.set(p, made.original);
  }
}

export class HardLinkGroups {
  readonly #groupOf = new Map<PlannedEntry, string>();

  note(entry: PlannedEntry, st: fs.Stats, sourceIndex: number): void {
    if (entry.type === 'file' && st.isFile() && st.nlink > 1) this.#groupOf.set(entry, `${sourceIndex}:${st.dev}:${st.ino}`);
  }

  /** `planned` sorted by path; returns it with the later names of each group as links. */
  apply(planned: PlannedEntry[]): PlannedEntry[] {
    if (this.#groupOf.size === 0) return planned;
    const first = new Map<string, PlannedEntry>();
    return planned.map((e) => {
      const group = this.#groupOf.get(e);
      if (group === undefined) return e;
      const target = first.get(group);
      if (target === undefined) {
        first.set(group, e);
        return e;
      }
      // Metadata is the file's (one inode); the tar writer puts the content on the first name.
      const link: PlannedEntry = { path: e.path, type: 'hardlink', mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, size: 0, linkTarget: target.path };
      madeLinks.set(link, { original: e, target });
      return link;
    });
  }
}
