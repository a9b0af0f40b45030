import { randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { TsbuildError } from '../errors.js';

/**
 * Writes a small result file the user named (`--iidfile`, `--metadata-file`) the way the
 * archive outputs are written: a new file beside it, renamed over the path. rename(2) replaces
 * whatever entry is at the path, a symlink included, without following it; the temp file is
 * created with O_EXCL under an unpredictable name, so it cannot be opened through a symlink
 * planted in advance either. In a shared directory (/tmp) a link planted at the path therefore
 * never redirects the write to another file. Readers see the old content or the new, never half.
 */
export async function writeResultFile(dest: string, data: string, what: string): Promise<void> {
  const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.tsbuild-${process.pid}-${randomBytes(6).toString('hex')}`);
  try {
    await fsp.writeFile(tmp, data, { flag: 'wx', mode: 0o644 });
    await fsp.rename(tmp, dest);
  } catch (e) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    const err = e as NodeJS.ErrnoException;
    throw new TsbuildError('OUTPUT_INVALID', `cannot write ${what} ${dest}: ${err.code ?? err.message}`, {
      cause: e,
      hint: err.code === 'EISDIR' ? 'name a file, not a directory' : 'check that the directory exists and that you can write to it',
    });
  }
}
