import { join } from 'node:path';
import { TsbuildError } from '../errors.js';
import { runChild } from './child.js';
import { DEFAULT_CAPABILITIES } from './bwrap-runner.js';
import type { SandboxCapabilities } from './probe.js';
import { isOverlayRootfs, type RunOptions, type RunResult, type Runner, type RunSpec } from './types.js';

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

/**
 * `--isolation=chroot`: for root where namespaces are not allowed (an unprivileged container
 * with CAP_SYS_CHROOT but no CAP_SYS_ADMIN, where kaniko runs). No namespaces at all: the step
 * shares the host's PID, network and mount namespaces; no /proc is mounted (mounting needs
 * CAP_SYS_ADMIN); /etc/resolv.conf is the image's. The root is changed with
 * `unshare --root --wd` (util-linux; no namespace flag, so it is chroot(2) + chdir(2)),
 * groups and gid set first with setpriv (which keeps uid 0 and thus the right to chroot),
 * the capability bounding set cut to Docker's defaults, and finally `--setuid`.
 * Known gaps: a step that daemonizes (setsid) escapes the process-group kill; the host's
 * resolver config is not provided.
 */
export function createChrootRunner(opts: ChrootRunnerOptions): Runner {
  const caps = opts.capabilities;
  return {
    kind: 'chroot',
    async run(step: RunSpec, runOpts: RunOptions): Promise<RunResult> {
      runOpts.signal?.throwIfAborted();
      const root = dirRootfs(step, 'chroot');
      if (!caps.isRoot) {
        throw new TsbuildError('SANDBOX_UNAVAILABLE', '--isolation=chroot needs root (CAP_SYS_CHROOT)', { hint: 'run as root, or use --isolation=sandbox or none' });
      }
      const { setpriv, unshare } = caps.tools;
      if (!setpriv || !unshare) throw new TsbuildError('SANDBOX_UNAVAILABLE', 'setpriv/unshare (util-linux) are not installed', { hint: 'apt-get install util-linux' });
      const groups = step.user.additionalGids ?? [];
      const bounding = `-all,${DEFAULT_CAPABILITIES.map((c) => `+${c.slice('CAP_'.length).toLowerCase()}`).join(',')}`;
      const args = [
        '--regid',
        String(step.user.gid),
        ...(groups.length > 0 ? ['--groups', groups.join(',')] : ['--clear-groups']),
        '--bounding-set',
        bounding,
        '--',
        unshare,
        `--root=${root}`,
        `--wd=${step.cwd}`,
        ...(step.user.uid !== 0 ? ['--setuid', String(step.user.uid)] : []),
        '--',
        ...step.args,
      ];
      return runChild(setpriv, args, { signal: runOpts.signal, env: envObject(step.env), ...(step.stdin ? { stdin: step.stdin } : {}), stdout: (c) => step.stdout?.(c), stderr: (c) => step.stderr?.(c) });
    },
  };
}

/**
 * `--isolation=none`: the step runs as a plain host process (only with the explicit flag),
 * with the rootfs directory joined with the step's cwd as its working directory. For builds
 * inside a throwaway container whose own root *is* the image root (kaniko's model, dir "/").
 * uid/gid applied through Node's spawn (supplementary groups are not set); nothing else.
 */
export function createHostRunner(_opts: ChrootRunnerOptions): Runner {
  return {
    kind: 'none',
    async run(step: RunSpec, runOpts: RunOptions): Promise<RunResult> {
      runOpts.signal?.throwIfAborted();
      const root = dirRootfs(step, 'none');
      const [cmd, ...rest] = step.args;
      if (cmd === undefined) throw new TsbuildError('SANDBOX_FAILED', 'empty argv');
      const me = process.getuid?.();
      return runChild(cmd, rest, {
        signal: runOpts.signal,
        cwd: join(root, step.cwd),
        env: envObject(step.env),
        ...(step.stdin ? { stdin: step.stdin } : {}),
        stdout: (c) => step.stdout?.(c),
        stderr: (c) => step.stderr?.(c),
        ...(me === step.user.uid ? {} : { uid: step.user.uid, gid: step.user.gid }),
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
