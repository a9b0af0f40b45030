import path from 'node:path/posix';

import type { IndexedEntry, LayerIndex } from '../layer/layer-index.js';

export type { IndexedEntry, LayerIndex };

export interface ViewEntry extends IndexedEntry {
  /** Which layer (0 = bottom) holds this entry's content. */
  readonly layer: number;
}

/**
 * The merged filesystem of a stack of layers, from their indexes alone: whiteouts and opaque
 * directories applied as the OCI layer spec says (image-spec layer.md "Whiteouts").
 * Used to answer "does /app exist", "is the destination a directory", "who owns it", and
 * "which layer holds /etc/passwd" without unpacking anything.
 */
export class RootfsView {
  readonly #entries = new Map<string, ViewEntry>();

  constructor(layers: readonly LayerIndex[]) {
    layers.forEach((layer, i) => this.#apply(layer, i));
  }

  #removeTree(p: string, keepSelf: boolean): void {
    const prefix = `${p}/`;
    for (const key of [...this.#entries.keys()]) {
      if ((!keepSelf && key === p) || key.startsWith(prefix)) this.#entries.delete(key);
    }
  }

  #apply(layer: LayerIndex, i: number): void {
    // Opaque markers and whiteouts hide lower layers only, so apply them before this
    // layer's own entries (the same order containerd uses when it applies a layer).
    for (const dir of layer.opaqueDirs) this.#removeTree(dir, true);
    for (const w of layer.whiteouts) this.#removeTree(w, false);
    for (const e of layer.entries) {
      const existing = this.#entries.get(e.path);
      // A non-directory replacing a directory removes what was below it.
      if (existing?.type === 'dir' && e.type !== 'dir') this.#removeTree(e.path, false);
      this.#entries.set(e.path, { ...e, layer: i });
    }
  }

  /** The entry at exactly this path (no symlink resolution). */
  lstat(p: string): ViewEntry | undefined {
    return this.#entries.get(normalize(p));
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
      const entry = this.#entries.get(candidate);
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
    return { path: out, entry: out === '' ? rootEntry : this.#entries.get(out) };
  }

  isDir(p: string): boolean {
    return this.resolve(p).entry?.type === 'dir';
  }

  /** Every entry, sorted by path. */
  entries(): ViewEntry[] {
    return [...this.#entries.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }
}

const rootEntry: ViewEntry = { path: '', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 0, size: 0, layer: -1 };

function splitPath(p: string): string[] {
  return p.split('/').filter((s) => s !== '' && s !== '.');
}

/** "/a/./b/" -> "a/b"; ".." cannot climb above the root. */
export function normalize(p: string): string {
  const n = path.normalize(`/${p}`);
  return n === '/' ? '' : n.replace(/^\/+/, '').replace(/\/+$/, '');
}
