import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ownerState, ownerTag } from '../store/index.js';

/**
 * Per-step directories (overlay short names, the mount point, runc's bundle and state) live
 * outside the store, in the OS temp dir by default: a non-root USER's bwrap must traverse to the
 * mount point, and the store's tmp dir is not traversable by other users (moving them there broke
 * RUN with USER). A SIGKILLed tsbuild cannot remove its step dir, so the name carries its owner
 * (`tsbuild-run-<pid>-<start>-XXXXXX`, the same tag as store temp names) and the next tsbuild
 * that makes a step dir removes the ones whose owner is gone (sweepDeadStepDirs).
 *
 * Removal is safe: a step's overlay mount lives only in the step's private mount namespace,
 * which is gone with its processes, so what is left is empty dirs, symlinks and runc's files;
 * rm does not follow symlinks.
 */
/** run/runc: a RUN step's dir; agent: the dir of an ssh-agent proxy socket (build/run-mounts.ts). */
export type StepDirKind = 'run' | 'runc' | 'agent';

const STEP_DIR_RE = /^tsbuild-(run|runc|agent)-(\d+)-(\d+|x)-[A-Za-z0-9]{6}$/;

/** Make a fresh step dir `<tmp>/tsbuild-<kind>-<pid>-<start>-XXXXXX`; first sweeps dead owners' dirs once per process and dir. */
export async function makeStepDir(kind: StepDirKind, base: string = tmpdir()): Promise<string> {
  await sweepOnce(base);
  return mkdtemp(join(base, `tsbuild-${kind}-${ownerTag()}-`));
}

const swept = new Map<string, Promise<number>>();
function sweepOnce(base: string): Promise<number> {
  let p = swept.get(base);
  if (!p) {
    p = sweepDeadStepDirs(base).catch(() => 0);
    swept.set(base, p);
  }
  return p;
}

/**
 * Remove step dirs in `base` whose owning process is gone (pid dead, or reused by a process
 * with another start time). Dirs of live processes, of other hosts' naming, and ones we may not
 * remove (another user's) are left alone. Returns how many were removed.
 */
export async function sweepDeadStepDirs(base: string = tmpdir()): Promise<number> {
  let names: string[];
  try {
    names = await readdir(base);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const m = STEP_DIR_RE.exec(name);
    if (!m) continue;
    const owner = { pid: Number(m[2]), start: m[3] === 'x' ? undefined : Number(m[3]) };
    if (ownerState(owner) !== 'dead') continue;
    try {
      await rm(join(base, name), { recursive: true, force: true });
      removed++;
    } catch {
      // Another user's dir (EACCES/EPERM) or a race with another sweeper: leave it.
    }
  }
  return removed;
}
