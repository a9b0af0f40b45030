import { join } from 'node:path';
import { TsbuildError } from '../errors.js';
import { runChild } from './child.js';
import { containerToHost } from './user-namespace.js';
import { DEFAULT_CAPABILITIES } from './bwrap-runner.js';
import type { SandboxCapabilities } from './probe.js';
import { isOverlayRootfs, type RunOptions, type RunResult, type Runner, type RunSpec } from './types.js';
import { assertUlimitsAllowed, withUlimits } from './rlimits.js';

export interface ChrootRunnerOptions {
  readonly capabilities: SandboxCapabilities;
}

function dirRootfs(step: RunSpec, kind: string): string {
  if (isOverlayRootfs(step.rootfs)) {
    throw new TsbuildError('UNSUPPORTED', `--isolation=${kind} runs on a plain directory: use the copy-and-walk snapshots (prepareCopyRootfs)`, {
      hint: 'overlay needs a mount namespace, which this isolation mode does not have',
    });
  }
  return step.rootfs.dir;
}

function noMounts(step: RunSpec, kind: string): void {
  if (step.shmSize !== undefined) {
    throw new TsbuildError('UNSUPPORTED', `--shm-size mounts a /dev/shm, which needs a mount namespace: --isolation=${kind} does not use one`, {
      hint: 'use --isolation=sandbox, or drop --shm-size',
    });
  }
  const m = step.mounts ?? [];
  if (m.length > 0) {
    throw new TsbuildError('UNSUPPORTED', `RUN --mount (${m.map((x) => x.target).join(', ')}) needs a mount namespace, which --isolation=${kind} does not use`, {
      hint: 'use --isolation=sandbox, or drop the --mount option',
    });
  }
}

/**
 * `--isolation=chroot`: for root where namespaces are not allowed (an unprivileged container
 * with CAP_SYS_CHROOT but no CAP_SYS_ADMIN, where kaniko runs). No namespaces at all: the step
 * shares the host's PID, network and mount namespaces; no /proc is mounted (mounting needs
 * CAP_SYS_ADMIN); /dev's basic devices and the host's resolver files are put in the tree for
 * the step by the engine and taken out after it (chroot-provision.ts). The root is changed with
 * `unshare --root --wd` (util-linux; no namespace flag, so it is chroot(2) + chdir(2)),
 * groups and gid set first with setpriv (which keeps uid 0 and thus the right to chroot),
 * the capability bounding set cut to Docker's defaults, and finally `--setuid`.
 * Known gaps: a step that daemonizes (setsid) escapes the process-group kill; no /proc;
 * RUN --mount is refused (no mount namespace).
 */
export function createChrootRunner(opts: ChrootRunnerOptions): Runner {
  return { kind: 'chroot', run: (step, runOpts) => runChrooted(opts.capabilities, step, runOpts, 'chroot') };
}

async function runChrooted(caps: SandboxCapabilities, step: RunSpec, runOpts: RunOptions, kind: 'chroot' | 'none'): Promise<RunResult> {
  runOpts.signal?.throwIfAborted();
  const root = dirRootfs(step, kind);
  noMounts(step, kind);
  if (!caps.isRoot) {
    throw new TsbuildError('SANDBOX_UNAVAILABLE', `--isolation=${kind} needs root to chroot (CAP_SYS_CHROOT)`, { hint: 'run as root, or use --isolation=sandbox' });
  }
  const { setpriv, unshare } = caps.tools;
  if (!setpriv || !unshare) throw new TsbuildError('SANDBOX_UNAVAILABLE', 'setpriv/unshare (util-linux) are not installed', { hint: 'apt-get install util-linux' });
  const groups = step.user.additionalGids ?? [];
  // chroot keeps Docker's default capabilities (root's own for RUN --security=insecure); none
  // keeps root's own (kaniko does the same).
  const bounding = kind === 'chroot' && step.security !== 'insecure' ? ['--bounding-set', `-all,${DEFAULT_CAPABILITIES.map((c) => `+${c.slice('CAP_'.length).toLowerCase()}`).join(',')}`] : [];
  const args = [
    '--regid',
    String(step.user.gid),
    ...(groups.length > 0 ? ['--groups', groups.join(',')] : ['--clear-groups']),
    ...bounding,
    '--',
    unshare,
    `--root=${root}`,
    `--wd=${step.cwd}`,
    ...(step.user.uid !== 0 ? ['--setuid', String(step.user.uid)] : []),
    '--',
    ...step.args,
  ];
  assertUlimitsAllowed(step.ulimits ?? [], { rootless: false });
  const [command, commandArgs] = withUlimits(caps.tools.prlimit, setpriv, args, step.ulimits);
  const r = await runChild(command, commandArgs, { signal: runOpts.signal, env: envObject(step.env), ...(step.stdin ? { stdin: step.stdin } : {}), stdout: (c) => step.stdout?.(c), stderr: (c) => step.stderr?.(c) });
  return r;
}

/**
 * `--isolation=none` (only with the explicit flag), kaniko's model: no namespaces, no
 * sandbox, the step runs on the unpacked tree itself.
 *  - As root: chroot(2) into the tree with root's full capabilities (no bounding set cut,
 *    nothing mounted): like chroot, minus the capability limit.
 *  - As an ordinary user, who cannot chroot: the step runs directly on the host, with the
 *    tree joined with its cwd as working directory; absolute paths (including /bin/sh) are the
 *    host's, so only commands that work relative to WORKDIR make sense; the step runs as the
 *    invoking user, which is container root (another USER is an error).
 * Trade-off (README "Isolation"): nothing protects the host from the step.
 */
export function createHostRunner(opts: ChrootRunnerOptions): Runner {
  const caps = opts.capabilities;
  return {
    kind: 'none',
    async run(step: RunSpec, runOpts: RunOptions): Promise<RunResult> {
      runOpts.signal?.throwIfAborted();
      if (caps.isRoot) return runChrooted(caps, step, runOpts, 'none');
      const root = dirRootfs(step, 'none');
      noMounts(step, 'none');
      const [cmd, ...rest] = step.args;
      if (cmd === undefined) throw new TsbuildError('SANDBOX_FAILED', 'empty argv');
      // Container IDs -> host IDs (container root is the invoking user); an ordinary user can
      // become no other ID.
      const uid = containerToHost(caps.idMapping.uids, step.user.uid);
      const gid = containerToHost(caps.idMapping.gids, step.user.gid);
      if (uid !== caps.uid || gid !== caps.gid) {
        throw new TsbuildError('SANDBOX_UNAVAILABLE', `--isolation=none as ${caps.user} cannot run a step as uid ${step.user.uid} gid ${step.user.gid}: only as the invoking user (container root)`, {
          hint: 'use --isolation=sandbox (user namespaces), or run as root',
        });
      }
      assertUlimitsAllowed(step.ulimits ?? [], { rootless: true });
      const [command, commandArgs] = withUlimits(caps.tools.prlimit, cmd, rest, step.ulimits);
      return runChild(command, commandArgs, {
        signal: runOpts.signal,
        cwd: join(root, step.cwd),
        env: envObject(step.env),
        ...(step.stdin ? { stdin: step.stdin } : {}),
        stdout: (c) => step.stdout?.(c),
        stderr: (c) => step.stderr?.(c),
      });
    },
  };
}

function envObject(env: readonly string[]): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const kv of env) {
    const eq = kv.indexOf('=');
    if (eq > 0) out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}
