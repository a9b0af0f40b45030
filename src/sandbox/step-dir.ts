import { readFileSync } from 'node:fs';
import { chmod, mkdtemp, readdir, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ownerState, ownerTag } from '../host/index.js';

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
/**
 * run/runc: a RUN step's dir; agent: the dir of an ssh-agent proxy socket (engine/run-mounts.ts);
 * probe: the sandbox probe's scratch dir (sandbox/probe.ts); secret: a secret mount's file
 * (engine/secret-mount.ts).
 */
export type StepDirKind = 'run' | 'runc' | 'agent' | 'probe' | 'secret';

const STEP_DIR_RE = /^tsbuild-(run|runc|agent|probe|secret)-(\d+)-(\d+|x)-[A-Za-z0-9]{6}$/;

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
      if (m[1] === 'runc') await removeRuncCgroups(`tsbuild-${name.slice('tsbuild-runc-'.length)}`);
      // The probe's overlay work dir has mode 000 (overlayfs makes it so).
      if (m[1] === 'probe') await chmod(join(base, name, 'w', 'work'), 0o700).catch(() => undefined);
      await rm(join(base, name), { recursive: true, force: true });
      removed++;
    } catch {
      // Another user's dir (EACCES/EPERM) or a race with another sweeper: leave it.
    }
  }
  return removed;
}

/**
 * A runc container (root only: rootless runc makes no cgroup) whose tsbuild was SIGKILLed is
 * killed with its PID namespace (sandbox/runc-runner.ts), but `runc delete` never ran, so its
 * empty cgroups stay. runc made them as `<id>` under its own cgroup in every hierarchy (v1) or
 * in the unified one (v2): remove those. rmdir only removes empty cgroups; errors are ignored.
 */
async function removeRuncCgroups(id: string): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const root = '/sys/fs/cgroup';
  const own = new Map<string, string>();
  try {
    for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
      const m = /^\d+:([^:]*):(.*)$/.exec(line);
      if (!m) continue;
      const [, ctrls = '', path = ''] = m;
      for (const ctrl of ctrls === '' ? [''] : ctrls.split(',')) own.set(ctrl.replace(/^name=/, ''), path);
    }
  } catch {
    // No /proc/self/cgroup: only the hierarchy roots are tried.
  }
  let hierarchies: string[];
  try {
    hierarchies = ['', ...(await readdir(root))];
  } catch {
    return;
  }
  const candidates = new Set<string>();
  for (const h of hierarchies) {
    candidates.add(join(root, h, id));
    const ownPath = own.get(h);
    if (ownPath !== undefined) candidates.add(join(root, h, ownPath, id));
  }
  for (const dir of candidates) await rmdir(dir).catch(() => undefined);
}
