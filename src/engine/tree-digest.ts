import fsp from 'node:fs/promises';
import path from 'node:path';
import { sha256Digest } from '../oci/index.js';
import type { FileDigests } from './file-digests.js';

/**
 * A digest of a file tree's paths, types, modes, link targets and file contents (mtimes
 * left out), for cache keys of RUN bind mounts. Files are hashed through the stat index.
 */
export async function digestTree(root: string, digests: FileDigests, signal?: AbortSignal): Promise<string> {
  const lines: string[] = [];
  const st0 = await fsp.lstat(root);
  if (!st0.isDirectory()) {
    return digests.digestOf(root, await fsp.lstat(root, { bigint: true }), signal);
  }
  const walk = async (dir: string, rel: string): Promise<void> => {
    for (const name of (await fsp.readdir(dir)).sort()) {
      signal?.throwIfAborted();
      const abs = path.join(dir, name);
      const p = rel === '' ? name : `${rel}/${name}`;
      const st = await fsp.lstat(abs, { bigint: true });
      const mode = (Number(st.mode) & 0o7777).toString(8);
      if (st.isDirectory()) {
        lines.push(`d ${p} ${mode}`);
        await walk(abs, p);
      } else if (st.isSymbolicLink()) lines.push(`l ${p} ${await fsp.readlink(abs)}`);
      else if (st.isFile()) lines.push(`f ${p} ${mode} ${await digests.digestOf(abs, st, signal)}`);
    }
  };
  await walk(root, '');
  return sha256Digest(lines.join('\n'));
}
