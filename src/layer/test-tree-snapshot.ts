import { createReadStream } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Digester, type Digest } from '../oci/index.js';

/** What a tree walk records about one path (lstat, never following symlinks). */
export interface TreeNode {
  readonly type: 'file' | 'dir' | 'symlink' | 'fifo' | 'char' | 'block' | 'socket';
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** Whole seconds. */
  readonly mtime: number;
  readonly size?: number;
  readonly digest?: Digest;
  readonly linkTarget?: string;
  /** For files with more than one link: the first path (sorted) of the same inode. */
  readonly hardlinkOf?: string;
}

/**
 * A comparable picture of a directory tree: path -> node, sorted, root excluded. A test tool (not
 * compiled into dist/): compares an applied layer with what was captured, or with GNU tar's. Content is hashed
 * through streams, so big trees stay cheap in memory.
 */
export async function snapshotTree(root: string, opts: { signal?: AbortSignal | undefined } = {}): Promise<Map<string, TreeNode>> {
  const out = new Map<string, TreeNode>();
  const inodes = new Map<string, string>();
  const walk = async (dirAbs: string, dirRel: string): Promise<void> => {
    const names = (await fsp.readdir(dirAbs)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const name of names) {
      opts.signal?.throwIfAborted();
      const abs = path.join(dirAbs, name);
      const rel = dirRel === '' ? name : `${dirRel}/${name}`;
      const st = await fsp.lstat(abs);
      const base = { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: Math.floor(st.mtimeMs / 1000) };
      if (st.isDirectory()) {
        out.set(rel, { ...base, type: 'dir' });
        await walk(abs, rel);
      } else if (st.isSymbolicLink()) {
        out.set(rel, { ...base, type: 'symlink', linkTarget: await fsp.readlink(abs) });
      } else if (st.isFile()) {
        const d = new Digester();
        for await (const chunk of createReadStream(abs)) d.update(chunk as Buffer);
        let hardlinkOf: string | undefined;
        if (st.nlink > 1) {
          const id = `${st.dev}:${st.ino}`;
          hardlinkOf = inodes.get(id);
          if (hardlinkOf === undefined) inodes.set(id, rel);
        }
        out.set(rel, { ...base, type: 'file', size: st.size, digest: d.digest(), ...(hardlinkOf !== undefined ? { hardlinkOf } : {}) });
      } else {
        const type = st.isFIFO() ? 'fifo' : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : 'socket';
        out.set(rel, { ...base, type });
      }
    }
  };
  await walk(root, '');
  return out;
}
