import { chmod, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TsbuildError } from '../errors.js';
import { runChild, Tail } from './child.js';
import { prepareOverlay } from './overlay.js';
import { makeStepDir } from './step-dir.js';
import { userNamespaceArgs, type SandboxCapabilities } from './probe.js';
import { isOverlayRootfs, type RunOptions, type RunResult, type Runner, type RunSpec } from './types.js';
import { assertMapped } from './user-namespace.js';

export interface BwrapRunnerOptions {
  readonly capabilities: SandboxCapabilities;
  /**
   * Where per-step directories (overlay short names and the mount point) are made. Must be
   * traversable by every user a step may run as (the default, the OS temp dir, is): bwrap for a
   * non-root USER runs as that user and resolves the root path itself.
   */
  readonly tmpDir?: string;
}

/**
 * The capability set Docker and BuildKit give a RUN step as root (moby's default caps),
 * instead of bwrap's "all caps" for a root sandbox.
 * https://github.com/moby/moby/blob/master/oci/caps/defaults.go
 */
export const DEFAULT_CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
] as const;

/**
 * Runs in the step's private mount namespace (made by `unshare --mount`), as (container) root:
 * mounts the overlay when there is one, then execs the rest of argv (setpriv, bwrap). The
 * script is a constant; every value arrives as a positional parameter, never as shell text.
 * The overlay mount lives only in that namespace: when the step's processes are gone, so is
 * the mount, whatever happened to us (no host mount to leak, no umount to forget).
 */
const MOUNT_WRAPPER = [
  'set -e',
  'if [ -n "$1" ]; then mount -t overlay overlay -o "$1" "$2"; fi',
  // Pre-pass for a non-root USER: a root bwrap with the same mounts creates the mount points
  // (/etc/resolv.conf, /proc, targets of RUN --mount) inside the new root, where it resolves
  // paths safely; the user's bwrap could not create them in root-owned directories. Its argv
  // comes NUL-separated from a file (xargs -0), so no value is ever parsed by the shell.
  'if [ -n "$3" ]; then xargs -0 -a "$3" -- "$4" >/dev/null 2>&1 || true; fi',
  'shift 4',
  'exec "$@"',
].join('\n');

/**
 * The default runner: bubblewrap (https://github.com/containers/bubblewrap, bwrap(1)) as a
 * child process, in new mount, PID, IPC and UTS namespaces (and network, for `none`).
 *
 * Process chain, all exec'd in one process group:
 *   unshare [--user + subordinate map when rootless] --mount --propagation private
 *   -> sh MOUNT_WRAPPER (mounts overlay)
 *   -> [setpriv --reuid/--regid/--groups, only for a non-root USER]
 *   -> bwrap [--unshare-user --uid --gid for a non-root USER] ... -- argv
 * Why setpriv + a nested user namespace for a non-root USER: bwrap can only *map* a --uid onto
 * its caller's uid, so running bwrap as root with --uid 1000 would create files owned by host
 * root. Becoming uid 1000 first (setpriv) and letting bwrap map 1000 onto itself keeps file
 * ownership right. Inside, supplementary groups are effective but show as 65534 in `id`.
 *
 * PID namespace: bwrap's init is PID 1; when the step's main process exits bwrap exits and
 * the kernel kills everything left in the namespace (a `sleep 1000 &` does not survive).
 * --die-with-parent covers bwrap dying first. Resource limits are inherited, never raised.
 */
export function createBwrapRunner(opts: BwrapRunnerOptions): Runner {
  const caps = opts.capabilities;
  const tools = caps.tools;
  return {
    kind: 'bwrap',
    async run(step: RunSpec, runOpts: RunOptions): Promise<RunResult> {
      const signal = runOpts.signal;
      signal?.throwIfAborted();
      if (!caps.bwrap.ok || !tools.bwrap || !tools.unshare || !tools.sh) {
        throw new TsbuildError('SANDBOX_UNAVAILABLE', `bubblewrap sandbox unavailable: ${caps.bwrap.reason ?? 'bwrap/unshare/sh missing'}`, {
          ...(caps.bwrap.hint ? { hint: caps.bwrap.hint } : {}),
        });
      }
      const extraGids = step.user.additionalGids ?? [];
      assertMapped(caps.idMapping, step.user.uid, [step.user.gid, ...extraGids], caps);
      const nonRootUser = step.user.uid !== 0;
      if (nonRootUser && !caps.userNamespaces.ok) {
        throw new TsbuildError('SANDBOX_UNAVAILABLE', `running a step as uid ${step.user.uid} with bwrap needs user namespaces: ${caps.userNamespaces.reason ?? ''}`, {
          hint: `${caps.userNamespaces.hint ?? 'enable user namespaces'}; or use --runtime runc`,
        });
      }
      if (nonRootUser && !tools.setpriv) throw new TsbuildError('SANDBOX_UNAVAILABLE', 'setpriv is not installed', { hint: 'apt-get install util-linux' });

      const stepDir = await makeStepDir('run', opts.tmpDir);
      try {
        // 0711: a non-root USER's bwrap must traverse to the mount point, nothing more.
        await chmod(stepDir, 0o711);
        let mountOptions = '';
        let root: string;
        if (isOverlayRootfs(step.rootfs)) {
          const prepared = await prepareOverlay(step.rootfs, stepDir, { userxattr: !caps.isRoot });
          mountOptions = prepared.options;
          root = join(stepDir, prepared.merged);
        } else {
          root = step.rootfs.dir;
        }

        let prepFile = '';
        if (nonRootUser) {
          prepFile = 'prep';
          // The command is /dev/null: exec fails (EACCES) after the mounts are made, so no code
          // of the image runs with root's privileges for this pass.
          await writeFile(join(stepDir, prepFile), [...bwrapArgs(step, root, false, true), '--', '/dev/null'].join('\0'));
        }
        const argv: string[] = [
          ...userNamespaceArgs(caps.idMapping),
          '--mount',
          '--propagation',
          'private',
          '--',
          tools.sh,
          '-c',
          MOUNT_WRAPPER,
          'tsbuild-sandbox',
          mountOptions,
          root,
          prepFile,
          tools.bwrap,
        ];
        const needsIds = nonRootUser || step.user.gid !== 0 || extraGids.length > 0;
        if (needsIds && tools.setpriv) {
          argv.push(tools.setpriv);
          if (nonRootUser) argv.push('--reuid', String(step.user.uid));
          argv.push('--regid', String(step.user.gid));
          // In the single-ID mapping setgroups(2) is denied; assertMapped already refused extra gids there.
          if (caps.idMapping.kind !== 'single') argv.push(...(extraGids.length > 0 ? ['--groups', extraGids.join(',')] : ['--clear-groups']));
          argv.push('--');
        }
        argv.push(tools.bwrap, ...bwrapArgs(step, root, nonRootUser), '--', ...step.args);

        const errTail = new Tail();
        let started = false;
        // If tsbuild is SIGKILLed before bwrap has started (while the wrapper mounts the overlay
        // or runs the pre-pass), --die-with-parent comes too late: bwrap sets PR_SET_PDEATHSIG
        // only when it runs and does not check whether its parent is already gone, so the step
        // ran on, orphaned (found by scripts/torture, rootless section). setpriv sets the
        // parent-death signal first; it survives the execs of unshare and sh (no credential
        // change) until bwrap sets its own. (A non-root USER's setpriv --reuid clears it for
        // the few instructions before bwrap starts.)
        const [command, commandArgs] = tools.setpriv ? [tools.setpriv, ['--pdeathsig', 'KILL', '--', tools.unshare, ...argv]] : [tools.unshare, argv];
        const result = await runChild(command, commandArgs, {
          signal,
          cwd: stepDir,
          ...(step.stdin ? { stdin: step.stdin } : {}),
          stdout: (c) => step.stdout?.(c),
          stderr: (c) => {
            errTail.push(c);
            step.stderr?.(c);
          },
          // bwrap writes {"child-pid": N} to the info fd once the sandbox is set up: without it,
          // a non-zero exit is the sandbox failing, not the step.
          fd3: () => {
            started = true;
          },
        });
        if (result.exitCode !== 0) {
          const last = errTail.text().split('\n').at(-1) ?? '';
          // bwrap's own messages start with "bwrap: ". A command that cannot be executed is
          // the step's failure, reported like a shell does: 127 not found, 126 not executable.
          if (/^bwrap: execvp .*: No such file or directory$/.test(last)) return { exitCode: 127 };
          if (/^bwrap: execvp .*: Permission denied$/.test(last)) return { exitCode: 126 };
          if (!started || last.startsWith('bwrap: ')) {
            throw new TsbuildError('SANDBOX_FAILED', `the sandbox could not start the step (exit ${result.exitCode}): ${errTail.text().split('\n').slice(-3).join(' | ')}`, {
              hint: 'check the probe output and that the working directory and mount sources exist',
            });
          }
        }
        return result;
      } finally {
        await rm(stepDir, { recursive: true, force: true });
      }
    },
  };
}

function bwrapArgs(step: RunSpec, root: string, nonRootUser: boolean, prepass = false): string[] {
  const a: string[] = prepass ? [] : ['--info-fd', '3'];
  if (nonRootUser) a.push('--unshare-user', '--uid', String(step.user.uid), '--gid', String(step.user.gid));
  a.push('--bind', root, '/');
  a.push('--proc', '/proc', '--dev', '/dev', '--tmpfs', '/dev/shm');
  // The host's resolver config, read-only, mounted over the image's (an empty mount point is
  // created when the image has none: captureUpperDir drops it).
  a.push('--ro-bind-try', '/etc/resolv.conf', '/etc/resolv.conf', '--ro-bind-try', '/etc/hosts', '/etc/hosts');
  for (const m of step.mounts ?? []) {
    if (m.type === 'bind') {
      if (!m.source) throw new TsbuildError('SANDBOX_FAILED', `bind mount to ${m.target} has no source`);
      a.push(m.readonly ? '--ro-bind' : '--bind', m.source, m.target);
    } else {
      a.push('--tmpfs', m.target);
      if (m.readonly) a.push('--remount-ro', m.target);
    }
  }
  // Read-only after the mount points above were made in it (`tsbuild run --read-only`).
  if (step.readonlyRoot) a.push('--remount-ro', '/');
  a.push('--unshare-pid', '--unshare-ipc', '--unshare-uts', '--hostname', step.hostname ?? 'tsbuild');
  if (step.network === 'none') a.push('--unshare-net');
  a.push('--die-with-parent');
  if (!nonRootUser) {
    a.push('--cap-drop', 'ALL');
    for (const c of DEFAULT_CAPABILITIES) a.push('--cap-add', c);
  }
  a.push('--clearenv');
  for (const kv of step.env) {
    const eq = kv.indexOf('=');
    if (eq <= 0) continue;
    a.push('--setenv', kv.slice(0, eq), kv.slice(eq + 1));
  }
  a.push('--chdir', step.cwd);
  return a;
}
