import path from 'node:path/posix';

import type { IndexedEntry, LayerIndex } from '../layer/layer-index.js';

export type { IndexedEntry, LayerIndex };

export interface ViewEntry extends IndexedEntry {
  /** Which layer (0 = bottom) holds this entry's content. */
  readonly layer: number;
}

/** One layer's index, keyed for lookups (made on the first lookup that reaches the layer). */
interface LayerLookup {
  readonly byPath: Map<string, IndexedEntry>;
  readonly whiteouts: ReadonlySet<string>;
  readonly opaqueDirs: ReadonlySet<string>;
}

/**
 * The merged filesystem of a stack of layers, from their indexes alone: whiteouts and opaque
 * directories applied as the OCI layer spec says (image-spec layer.md "Whiteouts").
 * Used to answer "does /app exist", "is the destination a directory", "who owns it", and
 * "which layer holds /etc/passwd" without unpacking anything.
 *
 * Lazy: a step asks about a handful of paths (a destination and its parents), so each is looked
 * up from the top layer down, and nothing is merged ahead (merging Debian's 6,661 entries, with a
 * scan of every path per whiteout, was most of a cached build's time on a Debian base).
 * A layer hides what lies below it at a path when it whites out the path or one of its parents,
 * makes a parent opaque, or has a parent that is not a directory; its own entry at the path wins
 * over its own whiteouts, which apply to lower layers only (as containerd applies a layer).
 */
export class RootfsView {
  readonly #layers: readonly LayerIndex[];
  readonly #lookups: Array<LayerLookup | undefined> = [];
  readonly #memo = new Map<string, ViewEntry | undefined>();
  /** Made by `replay`: answers from #memo alone (it has no layers to read). */
  #replayed = false;

  constructor(layers: readonly LayerIndex[]) {
    this.#layers = layers;
  }

  /**
   * A view that answers from the lookups an earlier view of the same layers made (`lookups()`),
   * and throws UnrecordedLookup for any other path: the caller then asks a view of the layers.
   */
  static replay(lookups: Iterable<readonly [string, ViewEntry | undefined]>): RootfsView {
    const view = new RootfsView([]);
    for (const [p, e] of lookups) view.#memo.set(p, e);
    view.#replayed = true;
    return view;
  }

  /** Every path this view looked up (normalized, never ""), with what it found there. */
  lookups(): IterableIterator<[string, ViewEntry | undefined]> {
    return this.#memo.entries();
  }

  #layer(i: number): LayerLookup {
    let l = this.#lookups[i];
    if (!l) {
      const index = this.#layers[i]!;
      const byPath = new Map<string, IndexedEntry>();
      for (const e of index.entries) {
        const prev = byPath.get(e.path);
        // A non-directory replacing a directory in one layer removes what the layer put below it.
        if (prev?.type === 'dir' && e.type !== 'dir') {
          for (const k of [...byPath.keys()]) if (k.startsWith(`${e.path}/`)) byPath.delete(k);
        }
        byPath.set(e.path, e);
      }
      l = { byPath, whiteouts: new Set(index.whiteouts), opaqueDirs: new Set(index.opaqueDirs) };
      this.#lookups[i] = l;
    }
    return l;
  }

  /** The entry at a normalized path, "" excluded. */
  #lookup(p: string): ViewEntry | undefined {
    if (this.#memo.has(p)) return this.#memo.get(p);
    if (this.#replayed) throw new UnrecordedLookup(p);
    const parents: string[] = [];
    for (let i = p.indexOf('/'); i >= 0; i = p.indexOf('/', i + 1)) parents.push(p.slice(0, i));
    let found: ViewEntry | undefined;
    for (let i = this.#layers.length - 1; i >= 0; i--) {
      const l = this.#layer(i);
      const e = l.byPath.get(p);
      if (e) {
        found = { ...e, layer: i };
        break;
      }
      if (l.whiteouts.has(p) || parents.some((a) => l.whiteouts.has(a) || l.opaqueDirs.has(a) || (l.byPath.get(a) ?? DIR).type !== 'dir')) break;
    }
    this.#memo.set(p, found);
    return found;
  }

  /** The entry at exactly this path (no symlink resolution). */
  lstat(p: string): ViewEntry | undefined {
    const n = normalize(p);
    return n === '' ? undefined : this.#lookup(n);
  }

  /**
   * Resolves symlinks in every component as if `/` were the root (a chroot walk, the way
   * containerd's RootPath does), so a link can never point out of the image.
   * Returns the resolved path (relative, "" for the root) and its entry, if any.
   */
  resolve(p: string, followLast = true): { path: string; entry: ViewEntry | undefined } {
    let parts = splitPath(p);
    let resolved: string[] = [];
    let hops = 0;
    while (parts.length > 0) {
      const [head, ...rest] = parts as [string, ...string[]];
      parts = rest;
      if (head === '..') {
        resolved.pop();
        continue;
      }
      const candidate = [...resolved, head].join('/');
      const entry = this.#lookup(candidate);
      const isLast = parts.length === 0;
      if (entry?.type === 'symlink' && entry.linkTarget !== undefined && (!isLast || followLast)) {
        if (++hops > 255) return { path: candidate, entry: undefined }; // ELOOP: treat as missing
        const target = entry.linkTarget;
        parts = [...splitPath(target), ...parts];
        if (target.startsWith('/')) resolved = [];
        continue;
      }
      resolved.push(head);
    }
    const out = resolved.join('/');
    return { path: out, entry: out === '' ? rootEntry : this.#lookup(out) };
  }

  isDir(p: string): boolean {
    return this.resolve(p).entry?.type === 'dir';
  }
}

/** A replayed view (RootfsView.replay) was asked about a path no recorded lookup covers. */
export class UnrecordedLookup extends Error {
  constructor(readonly path: string) {
    super(`no recorded lookup of ${JSON.stringify(path)}`);
    this.name = 'UnrecordedLookup';
  }
}

/** What a parent that no layer lists is taken for: a directory (it hides nothing). */
const DIR: Pick<IndexedEntry, 'type'> = { type: 'dir' };

const rootEntry: ViewEntry = { path: '', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0, size: 0, layer: -1 };

function splitPath(p: string): string[] {
  return p.split('/').filter((s) => s !== '' && s !== '.');
}

/** "/a/./b/" -> "a/b"; ".." cannot climb above the root. */
export function normalize(p: string): string {
  const n = path.normalize(`/${p}`);
  return n === '/' ? '' : n.replace(/^\/+/, '').replace(/\/+$/, '');
}
