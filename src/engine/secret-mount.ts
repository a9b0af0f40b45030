import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { TsbuildError } from '../errors.js';
import type { BuildSecret } from './run-mounts.js';

export interface SecretFileOptions {
  /** `mode=` of the mount; BuildKit's default is 0400. */
  readonly mode?: number | undefined;
  /** `uid=` / `gid=` of the mount; BuildKit's default is 0 (root of the container). */
  readonly uid?: number | undefined;
  readonly gid?: number | undefined;
  /** chown to container IDs inside the build's user namespace (an ordinary user's build). */
  readonly chownInContainer?: ((file: string, uid: number, gid: number) => Promise<void>) | undefined;
}

/**
 * The file a `RUN --mount=type=secret` binds: a private copy of the secret with the mount's
 * mode and owner, as BuildKit mounts it (0400, uid 0, gid 0 unless `mode=`, `uid=`, `gid=` say
 * otherwise), so that a later non-root USER cannot read a secret that was not given to it and
 * the host file's own mode never leaks into the container. `release` removes it.
 *
 * It lives in a step dir, not the store: the sandbox resolves a bind source as the step's
 * USER, and the store usually sits in a home directory closed to other users. The dir is 0711
 * and the name unguessable, so other host users cannot find the file even when `mode=` opens it.
 */
export async function makeSecretFile(secret: BuildSecret, opts: SecretFileOptions): Promise<{ file: string; release: () => void }> {
  const value = secret.file !== undefined ? await readSecret(secret) : Buffer.from(secret.value ?? '', 'utf8');
  const dir = await (await import('../sandbox/step-dir.js')).makeStepDir('secret');
  const release = (): void => rmSync(dir, { recursive: true, force: true });
  try {
    await fsp.chmod(dir, 0o711);
    const file = path.join(dir, randomBytes(16).toString('hex'));
    await fsp.writeFile(file, value, { flag: 'wx', mode: 0o600 });
    const uid = opts.uid ?? 0;
    const gid = opts.gid ?? 0;
    let mode = opts.mode ?? 0o400;
    const asRoot = process.getuid?.() === 0;
    // As an ordinary user without a way into the namespace, the file stays the user's (container
    // root): open it to everyone in the sandbox instead, so uid=/gid= can still read it.
    if (!asRoot && (uid !== 0 || gid !== 0) && !opts.chownInContainer) mode |= 0o444;
    await fsp.chmod(file, mode); // before chown: an ordinary user cannot chmod a file it gave away
    if (asRoot) await fsp.chown(file, uid, gid);
    else if ((uid !== 0 || gid !== 0) && opts.chownInContainer) await opts.chownInContainer(file, uid, gid);
    return { file, release };
  } catch (e) {
    release();
    throw e;
  }
}

async function readSecret(secret: BuildSecret): Promise<Buffer> {
  try {
    return await fsp.readFile(secret.file as string);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new TsbuildError('USAGE', `cannot read the file of secret ${JSON.stringify(secret.id)}: ${code}`, {
      cause: e,
      hint: `check --secret id=${secret.id},src=... names a file you can read`,
    });
  }
}
