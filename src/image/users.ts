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
 * Resolves `--chown=USER[:GROUP]` as BuildKit does (solver/llbsolver/file/user_linux.go
 * readUser): names through the image's /etc/passwd and /etc/group; a user name without a
 * group takes the user's primary group from /etc/passwd, a numeric UID without GID uses the
 * same number for the GID (the reference's wording covers only the latter).
 * https://docs.docker.com/reference/dockerfile/#copy---chown---chmod
 * `readFile` returns the file's text from the image, or undefined when it does not exist.
 */
export async function resolveChown(spec: string, readFile: (path: string) => Promise<string | undefined>): Promise<IdPair> {
  const [user = '', group, ...rest] = spec.split(':');
  if (user === '' || rest.length > 0 || group === '') {
    throw new TsbuildError('DOCKERFILE_INSTRUCTION', `invalid --chown value ${JSON.stringify(spec)}`, {
      hint: 'use --chown=USER[:GROUP] with names or numeric ids',
    });
  }
  let uid: number;
  let gid: number;
  if (NUMERIC.test(user)) {
    uid = Number(user);
    gid = uid;
  } else {
    uid = await lookup(user, '/etc/passwd', 'user', readFile);
    gid = primaryGroup(user, (await readFile('/etc/passwd')) ?? '') ?? uid;
  }
  if (group !== undefined) gid = NUMERIC.test(group) ? Number(group) : await lookup(group, '/etc/group', 'group', readFile);
  return { uid, gid };
}

/** The primary GID (4th field) of user `name` in passwd text. */
function primaryGroup(name: string, passwd: string): number | undefined {
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f[0] !== name || line.startsWith('#')) continue;
    const gid = Number(f[3]);
    return Number.isInteger(gid) && gid >= 0 && f[3] !== '' ? gid : undefined;
  }
  return undefined;
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

/**
 * The owner BuildKit's file ops give what they create for a `USER` value (llb.WithUser, then
 * solver/llbsolver/file/user_linux.go readUser): `USER[:GROUP]`, each part numeric or a name.
 * A numeric user without a group is also the GID; a name takes its UID and primary GID from
 * the image's /etc/passwd; a group name its GID from /etc/group. Unlike `--chown`, a name
 * that is not found (or a missing file) is not an error: that part stays 0, as BuildKit
 * leaves it (the RUN that later runs as that user fails with its own message).
 */
export async function resolveFileOpUser(spec: string, readFile: (path: string) => Promise<string | undefined>): Promise<IdPair> {
  const cut = spec.indexOf(':');
  const user = cut < 0 ? spec : spec.slice(0, cut);
  const group = cut < 0 ? undefined : spec.slice(cut + 1);
  let uid = 0;
  let gid = 0;
  if (NUMERIC.test(user)) {
    uid = Number(user);
    gid = uid;
  } else if (user !== '') {
    const passwd = await readFile('/etc/passwd');
    const found = passwd === undefined ? undefined : passwdEntry(user, passwd);
    if (found) ({ uid, gid } = found);
  }
  if (group !== undefined && group !== '') {
    if (NUMERIC.test(group)) gid = Number(group);
    else {
      const text = await readFile('/etc/group');
      const id = text === undefined ? undefined : parseIdFile(text).get(group);
      if (id !== undefined) gid = id;
    }
  }
  return { uid, gid };
}

/** UID and primary GID of user `name` in passwd text (first match, as ParsePasswdFilter). */
function passwdEntry(name: string, passwd: string): IdPair | undefined {
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f[0] !== name || line.startsWith('#')) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (!Number.isInteger(uid) || uid < 0 || f[2] === '') continue;
    return { uid, gid: Number.isInteger(gid) && gid >= 0 && f[3] !== '' ? gid : 0 };
  }
  return undefined;
}
