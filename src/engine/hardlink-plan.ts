import type fs from 'node:fs';
import type { PlannedEntry } from './copy-plan.js';

/**
 * Keeps hard links in a COPY/ADD layer, as BuildKit's copier does (tonistiigi/fsutil copy:
 * an inode map per copied source; the first name of an inode seen is copied, every later
 * name becomes a hard link to it). So two context files that are hard links of each other,
 * or the hard links of an archive ADD unpacks, are one file with several names in the layer,
 * not copies. Like fsutil, the map is per source argument: `COPY a b /d/` with `a` and `b`
 * linked gives two files, `COPY . /d/` one file and a link.
 *
 * Usage: `note` every planned entry with the stat it came from and the index of its source
 * argument; `apply` to the sorted plan rewrites all names of a group but the first (in path
 * order, the order the layer is written in) as hard links to it. Entries a later source
 * replaced are no longer in the plan and so leave their group.
 */
export class HardLinkGroups {
  readonly #groupOf = new Map<PlannedEntry, string>();

  note(entry: PlannedEntry, st: fs.Stats, sourceIndex: number): void {
    if (entry.type === 'file' && st.isFile() && st.nlink > 1) this.#groupOf.set(entry, `${sourceIndex}:${st.dev}:${st.ino}`);
  }

  /** `planned` sorted by path; returns it with the later names of each group as links. */
  apply(planned: PlannedEntry[]): PlannedEntry[] {
    if (this.#groupOf.size === 0) return planned;
    const first = new Map<string, string>();
    return planned.map((e) => {
      const group = this.#groupOf.get(e);
      if (group === undefined) return e;
      const target = first.get(group);
      if (target === undefined) {
        first.set(group, e.path);
        return e;
      }
      // Metadata is the file's (one inode); the tar writer puts the content on the first name.
      return { path: e.path, type: 'hardlink', mode: e.mode, uid: e.uid, gid: e.gid, mtime: e.mtime, size: 0, linkTarget: target };
    });
  }
}
