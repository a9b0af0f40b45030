import { lstatSync } from 'node:fs';
import path from 'node:path';
import { TsbuildError, type SourceLocation } from '../errors.js';

/**
 * A COPY/ADD source the user cannot read (a root-owned 0600 file in the context of a rootless
 * build) is the user's to fix, not a bug: this turns the EACCES/EPERM of reading it into a
 * located error that names the file, its mode and owner, and who the build runs as. Returns
 * undefined for anything else (other errors, paths outside `root`), which stays as it was.
 */
export function unreadableSource(e: unknown, root: { readonly dir: string; readonly label: string }, location: SourceLocation): TsbuildError | undefined {
  const err = e as NodeJS.ErrnoException | undefined;
  if (e instanceof TsbuildError || (err?.code !== 'EACCES' && err?.code !== 'EPERM') || typeof err.path !== 'string') return undefined;
  const rel = path.relative(root.dir, err.path);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) return undefined;
  let what = '';
  try {
    const st = lstatSync(err.path);
    what = `, mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}, owner ${st.uid}:${st.gid}`;
  } catch {
    // the parent is unreadable too: the code says enough
  }
  const who = process.getuid ? ` (the build runs as uid ${process.getuid()})` : '';
  return new TsbuildError('CONTEXT_NOT_FOUND', `cannot read ${JSON.stringify(rel)} in the ${root.label}: permission denied (${err.code}${what})${who}`, {
    cause: e,
    location,
    hint: 'make it readable to this user, or exclude it in .dockerignore',
  });
}
