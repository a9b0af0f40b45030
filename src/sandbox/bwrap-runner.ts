import { statSync } from 'node:fs';
import { chmod, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TsbuildError } from '../errors.js';
import { runChild, Tail, terminalTool } from './child.js';
import { childrenOf, SignalForwarder, signalProcess } from './signal-forward.js';
import { prepareOverlay } from './overlay.js';
import { makeStepDir } from './step-dir.js';
import { confineTargets } from './confine-targets.js';
import { userNamespaceArgs, type SandboxCapabilities } from './probe.js';
import { DEFAULT_SHM_SIZE, isOverlayRootfs, MASKED_PATHS, READONLY_PATHS, type RunOptions, type RunResult, type Runner, type RunSpec } from './types.js';
import { assertMapped } from './user-namespace.js';
import { assertUlimitsAllowed, withUlimits } from './rlimits.js';
import { syncSuppressingFilter } from './suppress-sync.js';

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
  // (/etc/resolv.conf, /proc, targets of RUN --mount) inside the new root, at the paths
  // confine-targets.ts resolved in it; the user's bwrap could not create them in root-owned directories. Its argv
  // comes NUL-separated from a file (xargs -0), so no value is ever parsed by the shell.
  'if [ -n "$3" ]; then xargs -0 -a "$3" -- "$4" >/dev/null 2>&1 || true; fi',
  // Bind sources staged for a non-root USER: root (of the namespace) can reach a source in a
  // directory closed to that user (a store in a home directory, a 0700 temp dir); the user's
  // bwrap then binds the staged copy from the step dir, which it may traverse. Pairs SRC DST,
  // NUL-separated, from a file: never parsed by the shell.
  'if [ -n "$5" ]; then xargs -0 -n 2 -a "$5" -- mount --bind; fi',
  'shift 5',
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
 * --die-with-parent covers bwrap dying first. Resource limits are inherited, or set by
 * `--ulimit` (prlimit in front of bwrap), never raised above the caller's hard limits.
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
      assertUlimitsAllowed(step.ulimits ?? [], { rootless: !caps.isRoot });

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

        const dests = await destinationsOf(step);
        let prepFile = '';
        let stageFile = '';
        let sources: string[] | undefined;
        if (nonRootUser) {
          ({ file: stageFile, sources } = await stageBindSources(step, stepDir));
          prepFile = 'prep';
          // The command is /dev/null: exec fails (EACCES) after the mounts are made, so no code
          // of the image runs with root's privileges for this pass.
          await writeFile(join(stepDir, prepFile), [...bwrapArgs(step, root, dests, false, true, sources), '--', '/dev/null'].join('\0'));
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
          stageFile,
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
        // The seccomp program arrives on fd 4, read by bwrap before it execs the step.
        const seccomp = step.suppressSync ? syncSuppressingFilter() : undefined;
        const filterArgs = seccomp ? ['--seccomp', '4'] : [];
        // --ulimit: set on bwrap, which keeps them across its exec of the step (rlimits.ts).
        argv.push(...withUlimits(tools.prlimit, tools.bwrap, [...bwrapArgs(step, root, dests, nonRootUser, false, sources), ...filterArgs, '--', ...step.args], step.ulimits).flat());

        const errTail = new Tail();
        let started = false;
        let info = '';
        // bwrap's init (PID 1 of the step) reaps; the step's main process is its child. Signals
        // go to that child: PID 1 itself would ignore every signal it has no handler for.
        const forwarder = new SignalForwarder(runOpts.forwardSignals);
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
          ...(step.tty ? { terminal: { script: terminalTool(tools.script), input: step.stdin } } : {}),
          ...(seccomp ? { fd4: seccomp } : {}),
          stdout: (c) => {
            // On a terminal the sandbox's own messages arrive here too.
            if (step.tty) errTail.push(c);
            step.stdout?.(c);
          },
          stderr: (c) => {
            errTail.push(c);
            step.stderr?.(c);
          },
          // bwrap writes {"child-pid": N} to the info fd once the sandbox is set up: without it,
          // a non-zero exit is the sandbox failing, not the step.
          fd3: (c) => {
            started = true;
            info += c.toString('utf8');
            const m = /"child-pid":\s*(\d+)/.exec(info);
            if (m) {
              const init = Number(m[1]);
              forwarder.target((sig) => {
                for (const pid of childrenOf(init)) signalProcess(pid, sig);
              });
            }
          },
        }).finally(() => forwarder.stop());
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

/**
 * Mount points in the step dir for each bind mount's source (`stage/N`, a file or a directory
 * like the source), and the SRC/DST pairs MOUNT_WRAPPER binds there. Returns the file's name
 * (relative to the step dir, the wrapper's cwd) and the staged sources in mount order.
 */
async function stageBindSources(step: RunSpec, stepDir: string): Promise<{ file: string; sources: string[] | undefined }> {
  const binds = (step.mounts ?? []).filter((m) => m.type === 'bind');
  if (binds.length === 0) return { file: '', sources: undefined };
  const dir = join(stepDir, 'stage');
  await mkdir(dir, { mode: 0o711 });
  await chmod(dir, 0o711);
  const pairs: string[] = [];
  const sources: string[] = [];
  for (const [i, m] of binds.entries()) {
    if (!m.source) throw new TsbuildError('SANDBOX_FAILED', `bind mount to ${m.target} has no source`);
    const at = join(dir, String(i));
    const st = await stat(m.source).catch(() => undefined);
    if (st?.isDirectory()) await mkdir(at, { mode: 0o755 });
    else await writeFile(at, '', { mode: 0o644 });
    pairs.push(m.source, at);
    sources.push(at);
  }
  await writeFile(join(stepDir, 'binds'), pairs.join('\0'));
  return { file: 'binds', sources };
}


/**
 * Docker's masked and read-only /proc paths as bwrap arguments: a masked file under /dev/null (as runc: reads are empty), a
 * masked directory under an empty read-only tmpfs, a read-only path bound read-only over itself.
 * Only paths this kernel has (bwrap cannot make a mount point inside proc): the new pid
 * namespace's proc has the host's set of these system-wide entries. /sys is not mounted at all.
 */
function procMaskArgs(procAt: string): string[] {
  const a: string[] = [];
  const at = (p: string) => `${procAt}${p.slice('/proc'.length)}`;
  for (const p of READONLY_PATHS) {
    if (p.startsWith('/proc/') && statSync(p, { throwIfNoEntry: false })) a.push('--ro-bind', p, at(p));
  }
  for (const p of MASKED_PATHS) {
    if (!p.startsWith('/proc/')) continue;
    const st = statSync(p, { throwIfNoEntry: false });
    if (st?.isDirectory()) a.push('--tmpfs', at(p), '--remount-ro', at(p));
    else if (st) a.push('--dev-bind', '/dev/null', at(p));
  }
  return a;
}

/** Where bwrap makes each mount and the working directory, resolved in the step's root (confine-targets.ts). */
interface Destinations {
  readonly proc: string;
  readonly dev: string;
  readonly resolvConf: string;
  readonly hosts: string;
  /** step.mounts' targets, in order. */
  readonly mounts: readonly string[];
  readonly cwd: string;
}

async function destinationsOf(step: RunSpec): Promise<Destinations> {
  const mounts = step.mounts ?? [];
  const resolved = await confineTargets(
    step.rootfs,
    [
      { target: '/proc', kind: 'empty' },
      { target: '/dev', kind: 'dev' },
      { target: '/dev/shm', kind: 'empty' },
      { target: '/etc/resolv.conf', kind: 'bind', source: '/etc/resolv.conf' },
      { target: '/etc/hosts', kind: 'bind', source: '/etc/hosts' },
      ...mounts.map((m) => (m.type === 'bind' ? { target: m.target, kind: 'bind' as const, ...(m.source !== undefined ? { source: m.source } : {}) } : { target: m.target, kind: 'empty' as const })),
    ],
    [step.cwd],
  );
  const [proc, dev, , resolvConf, hosts] = resolved as [string, string, string, string, string];
  return { proc, dev, resolvConf, hosts, mounts: resolved.slice(5, 5 + mounts.length), cwd: resolved[5 + mounts.length]! };
}

function bwrapArgs(step: RunSpec, root: string, dests: Destinations, nonRootUser: boolean, prepass = false, stagedSources?: readonly string[]): string[] {
  const a: string[] = prepass ? [] : ['--info-fd', '3'];
  if (nonRootUser) a.push('--unshare-user', '--uid', String(step.user.uid), '--gid', String(step.user.gid));
  a.push('--bind', root, '/');
  a.push('--proc', dests.proc, '--dev', dests.dev, '--size', String(step.shmSize ?? DEFAULT_SHM_SIZE), '--perms', '1777', '--tmpfs', `${dests.dev}/shm`);
  // /proc/sys read-only, as Docker's readonlyPaths (bwrap covers it only when it is not run by
  // real root: a root step could otherwise set the host's sysctls). An insecure step gets it
  // writable; a write acts on the writer's namespaces (insecure.ts), whichever proc it goes through.
  if (step.security === 'insecure') a.push('--bind', '/proc/sys', `${dests.proc}/sys`);
  else a.push(...procMaskArgs(dests.proc));
  // The host's resolver config, read-only, mounted over the image's (an empty mount point is
  // created when the image has none: captureUpperDir drops it).
  a.push('--ro-bind-try', '/etc/resolv.conf', dests.resolvConf, '--ro-bind-try', '/etc/hosts', dests.hosts);
  const mounts = step.mounts ?? [];
  if (prepass) {
    // bwrap makes the missing parents of a mount point 0700, which the USER could not cross:
    // create them first, 0755, the way --dir does (an existing directory is left as it is).
    const made = new Set<string>();
    for (const target of dests.mounts) {
      const parts = target.split('/').filter((p) => p !== '');
      for (let i = 1; i < parts.length; i++) {
        const dir = `/${parts.slice(0, i).join('/')}`;
        if (!made.has(dir)) a.push('--dir', dir);
        made.add(dir);
      }
    }
  }
  let bindIndex = 0;
  for (const [i, m] of mounts.entries()) {
    const target = dests.mounts[i]!;
    if (m.type === 'bind') {
      if (!m.source) throw new TsbuildError('SANDBOX_FAILED', `bind mount to ${m.target} has no source`);
      a.push(m.readonly ? '--ro-bind' : '--bind', stagedSources?.[bindIndex] ?? m.source, target);
      bindIndex++;
    } else {
      // World-writable with the sticky bit, as a fresh tmpfs under runc (and docker) is.
      a.push('--perms', '1777', '--tmpfs', target);
      if (m.readonly) a.push('--remount-ro', target);
    }
  }
  // The working directory is made when a step removed it (as runc and BuildKit's executor do),
  // before a read-only root is remounted.
  a.push('--dir', dests.cwd);
  // Read-only after the mount points above were made in it (`tsbuild run --read-only`).
  if (step.readonlyRoot) a.push('--remount-ro', '/');
  a.push('--unshare-pid', '--unshare-ipc', '--unshare-uts', '--hostname', step.hostname ?? 'tsbuild');
  if (step.network === 'none') a.push('--unshare-net');
  a.push('--die-with-parent');
  if (!nonRootUser && step.security === 'insecure') {
    // Every capability bwrap holds (as root, tsbuild's bounding set; rootless, the user namespace's).
    a.push('--cap-add', 'ALL');
  } else if (!nonRootUser) {
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
