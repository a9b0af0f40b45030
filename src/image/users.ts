import { TsbuildError } from '../errors.js';

export interface IdPair {
  readonly uid: number;
  readonly gid: number;
}

/** /etc/passwd or /etc/group as name -> numeric id (first match wins, as getpwnam does). */
export function parseIdFile(text: string): Map<string, number> {
  const ids = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const fields = line.split(':');
    const name = fields[0];
    const id = Number(fields[2]);
    if (name && Number.isInteger(id) && id >= 0 && !ids.has(name)) ids.set(name, id);
  }
  return ids;
}

const NUMERIC = /^\d+$/;

/**
 * Resolves `--chown=USER[:GROUP]` the way the Dockerfile reference says: names through the
 * image's /etc/passwd and /etc/group; a user without a group (or a UID without GID) uses
 * the same number for the GID. https://docs.docker.com/reference/dockerfile/#copy---chown---chmod
 * `readFile` returns the file's text from the image, or undefined when it does not exist.
 */
export async function resolveChown(spec: string, readFile: (path: string) => Promise<string | undefined>): Promise<IdPair> {
  const [user = '', group, ...rest] = spec.split(':');
  if (user === '' || rest.length > 0 || group === '') {
    throw new TsbuildError('DOCKERFILE_INSTRUCTION', `invalid --chown value ${JSON.stringify(spec)}`, {
      hint: 'use --chown=USER[:GROUP] with names or numeric ids',
    });
  }
  const uid = NUMERIC.test(user) ? Number(user) : await lookup(user, '/etc/passwd', 'user', readFile);
  let gid = uid;
  if (group !== undefined) gid = NUMERIC.test(group) ? Number(group) : await lookup(group, '/etc/group', 'group', readFile);
  return { uid, gid };
}

async function lookup(name: string, file: string, what: string, readFile: (path: string) => Promise<string | undefined>): Promise<number> {
  const text = await readFile(file);
  if (text === undefined) {
    throw new TsbuildError('DOCKERFILE_INSTRUCTION', `unable to find ${what} ${name}: the image has no ${file}`, {
      hint: `use a numeric ${what === 'user' ? 'uid' : 'gid'}, or add ${file} to the image first`,
    });
  }
  const id = parseIdFile(text).get(name);
  if (id === undefined) {
    throw new TsbuildError('DOCKERFILE_INSTRUCTION', `unable to find ${what} ${name}: no matching entries in ${file}`);
  }
  return id;
}
