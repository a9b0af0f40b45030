import { readdir } from 'node:fs/promises';
import { fsPath, nameFromBytes } from '../oci/index.js';

/**
 * readdir that keeps every name as it is. Node's string readdir decodes names lossily, so a
 * name that is not valid UTF-8 would come back as U+FFFD characters that name no file (its
 * lstat fails with ENOENT) and the file would silently vanish. Names are read as bytes and
 * such a name is held with its bad bytes escaped (oci/byte-names.ts); `fsPath` turns it back
 * into bytes for the file system.
 */
export async function readDirectoryNames(dir: string): Promise<string[]> {
  const raw = await readdir(fsPath(dir), { encoding: 'buffer' });
  return raw.map((r) => nameFromBytes(r));
}
