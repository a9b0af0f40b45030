import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { TsbuildError } from '../errors.js';
import { captureChild, runChild, Tail, terminalTool } from './child.js';
import { childrenOf, SignalForwarder, signalProcess } from './signal-forward.js';
import { DEFAULT_CAPABILITIES } from './bwrap-runner.js';
import { prepareOverlay } from './overlay.js';
import { makeStepDir } from './step-dir.js';
import { userNamespaceArgs, type SandboxCapabilities } from './probe.js';
import { DEFAULT_SHM_SIZE, isOverlayRootfs, MASKED_PATHS, READONLY_PATHS, type RunOptions, type RunResult, type Runner, type RunSpec } from './types.js';
import { assertMapped } from './user-namespace.js';
import { assertUlimitsAllowed, ociRlimits } from './rlimits.js';
import { insecureCapabilities } from './insecure.js';
import { syncSuppressingSeccomp } from './suppress-sync.js';

export interface RuncRunnerOptions {
  readonly capabilities: SandboxCapabilities;
  /** Where per-step bundles (config.json, runc state, overlay short names) are made. */
  readonly tmpDir?: string;
}

/** Same constant wrapper idea as the bwrap runner: mount overlay in a private mount namespace, exec the rest. */
const MOUNT_WRAPPER = 'set -e\nif [ -n "$1" ]; then mount -t overlay overlay -o "$1" "$2"; fi\nshift 2\nexec "$@"';

/** A subset of the OCI runtime spec config (https://github.com/opencontainers/runtime-spec/blob/main/config.md). */
interface OciMount {
  destination: string;
  type: string;
  source: string;
  options?: string[];
}

/**
 * `--runtime runc`: writes an OCI runtime bundle (config.json, root = the merged overlay) and
 * runs `runc run` in the foreground as a child process. runc state lives in the step's own
 * directory (`runc --root`), so nothing is left in /run/runc; the container is always
 * `runc delete --force`d afterwards (kills what is left, removes its cgroup).
 *
 * Rootless: runc runs inside our user namespace (subordinate map) with `--rootless true` and
 * no cgroup; the config has no uidMappings because the namespace already exists.
 * The process's user (uid, gid, additionalGids) is set by runc itself: no setpriv needed.
 * rlimits in the config only for `--ulimit`: without them runc leaves the caller's limits alone
 * (TESTING.md: this host lacks CAP_SYS_RESOURCE, so asking for more than the hard limit fails;
 * assertUlimitsAllowed refuses that before runc starts).
 */
export function createRuncRunner(opts: RuncRunnerOptions): Runner {
  const caps = opts.capabilities;
  const tools = caps.tools;
  return {
    kind: 'runc',
    async run(step: RunSpec, runOpts: RunOptions): Promise<RunResult> {
      const signal = runOpts.signal;
      signal?.throwIfAborted();
      if (!caps.runc.ok || !tools.runc || !tools.unshare || !tools.sh) {
        throw new TsbuildError('SANDBOX_UNAVAILABLE', `runc unavailable: ${caps.runc.reason ?? 'runc/unshare/sh missing'}`, {
          ...(caps.runc.hint ? { hint: caps.runc.hint } : {}),
        });
      }
      assertMapped(caps.idMapping, step.user.uid, [step.user.gid, ...(step.user.additionalGids ?? [])], caps);
      assertUlimitsAllowed(step.ulimits ?? [], { rootless: !caps.isRoot });
      const runc = tools.runc;
      const stepDir = await makeStepDir('runc', opts.tmpDir);
      const id = `tsbuild-${basename(stepDir).slice('tsbuild-runc-'.length)}`;
      const state = join(stepDir, 'state');
      const rootless = !caps.isRoot;
      const runcGlobal = ['--root', state, ...(rootless ? ['--rootless', 'true'] : [])];
      const ns = userNamespaceArgs(caps.idMapping);
      try {
        await chmod(stepDir, 0o711);
        await mkdir(state);
        let mountOptions = '';
        let root: string;
        if (isOverlayRootfs(step.rootfs)) {
          const prepared = await prepareOverlay(step.rootfs, stepDir, { userxattr: rootless });
          mountOptions = prepared.options;
          root = join(stepDir, prepared.merged);
        } else {
          root = step.rootfs.dir;
        }
        const bundle = join(stepDir, 'bundle');
        await mkdir(bundle);
        // bigint values (rlimits) are written as JSON integers: RLIM_INFINITY is a uint64.
        await writeFile(join(bundle, 'config.json'), JSON.stringify(runtimeConfig(step, root, rootless), (_k, v: unknown) => (typeof v === 'bigint' ? `\u0000${v}\u0000` : v)).replace(/"\\u0000(\d+)\\u0000"/g, '$1'));

        const errTail = new Tail();
        const deleteContainer = async (): Promise<void> => {
          // Runs after the process group is gone; idempotent. In the same user namespace kind
          // as `run` so a rootless container's state is readable.
          const del = ns.length > 0 ? [tools.unshare ?? 'unshare', [...ns, '--', runc, ...runcGlobal, 'delete', '--force', id]] as const : [runc, [...runcGlobal, 'delete', '--force', id]] as const;
          await captureChild(del[0], del[1]).catch(() => undefined);
        };
        // A SIGKILLed tsbuild must not leave runc and the container running (they did: a
        // foreground `runc run` whose parent dies runs on, and so does the container's
        // process, which runc does not tie to its own life). So runc runs as PID 1 of a PID
        // namespace of its own (`--pid --fork`, with a /proc of that namespace, as runc reads
        // /proc/PID of its children): when it dies, the kernel kills everything in
        // that namespace, the container's nested one included. `--kill-child` SIGKILLs runc
        // when unshare dies, and setpriv's parent-death signal kills unshare when tsbuild
        // dies (it survives the exec of unshare: no credential change).
        // `runc run` in the foreground forwards the signals it gets to the container's process,
        // which is the container's PID 1: as with docker, a signal it has no handler for is
        // ignored. unshare's parent half blocks SIGINT/SIGTERM while it waits, so signals go to
        // its child, runc (the mount wrapper exec'd into it).
        // DEBT(#19): with `tty` the spawned process is script(1), not unshare, and gets the signal.
        const forwarder = new SignalForwarder(runOpts.forwardSignals);
        const unshareArgs = [...ns, '--mount', '--propagation', 'private', '--pid', '--fork', '--kill-child', '--mount-proc', '--', tools.sh, '-c', MOUNT_WRAPPER, 'tsbuild-sandbox', mountOptions, root, runc, ...runcGlobal, 'run', '--bundle', bundle, id];
        const [command, commandArgs] = tools.setpriv ? [tools.setpriv, ['--pdeathsig', 'KILL', '--', tools.unshare, ...unshareArgs]] : [tools.unshare, unshareArgs];
        const result = await runChild(
          command,
          commandArgs,
          {
            signal,
            cwd: stepDir,
            ...(step.stdin ? { stdin: step.stdin } : {}),
            ...(step.tty ? { terminal: { script: terminalTool(tools.script), input: step.stdin } } : {}),
            stdout: (c) => {
              // On a terminal the sandbox's own messages arrive here too.
              if (step.tty) errTail.push(c);
              step.stdout?.(c);
            },
            stderr: (c) => {
              errTail.push(c);
              step.stderr?.(c);
            },
            cleanup: deleteContainer,
            onSpawn: (pid) =>
              forwarder.target((sig) => {
                if (step.tty) return signalProcess(pid, sig);
                for (const child of childrenOf(pid)) signalProcess(child, sig);
              }),
          },
        ).finally(() => forwarder.stop());
        // runc reports its own failures (before the process starts) on stderr with exit 1,
        // with its log prefix. A command that cannot be executed is the step's failure,
        // reported like a shell does: 127 not found, 126 not executable.
        const tail = errTail.text();
        if (result.exitCode !== 0 && /level=error msg="runc run failed/.test(tail)) {
          if (/exec: .*(no such file or directory|executable file not found)/.test(tail)) return { exitCode: 127 };
          if (/exec: .*permission denied/.test(tail)) return { exitCode: 126 };
          throw new TsbuildError('SANDBOX_FAILED', `runc could not start the step: ${tail.split('\n').slice(-3).join(' | ')}`, {
            hint: 'check that the mount sources exist and the probe output',
          });
        }
        return result;
      } finally {
        await rm(stepDir, { recursive: true, force: true }).catch(async () => {
          // Rootless runc state may be owned by subordinate IDs.
          if (ns.length > 0) await captureChild(tools.unshare ?? 'unshare', [...ns, '--', 'rm', '-rf', '--', stepDir]);
        });
      }
    },
  };
}

/** The OCI runtime config for one step; exported for tests. */
export function runtimeConfig(step: RunSpec, root: string, rootless: boolean): Record<string, unknown> {
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    // runc creates the default devices (null, zero, full, random, urandom, tty, ptmx) in /dev.
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', `size=${step.shmSize ?? DEFAULT_SHM_SIZE}`] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/etc/resolv.conf', type: 'bind', source: '/etc/resolv.conf', options: ['rbind', 'ro', 'nosuid', 'nodev'] },
    { destination: '/etc/hosts', type: 'bind', source: '/etc/hosts', options: ['rbind', 'ro', 'nosuid', 'nodev'] },
  ];
  for (const m of step.mounts ?? []) {
    if (m.type === 'bind') {
      if (!m.source) throw new TsbuildError('SANDBOX_FAILED', `bind mount to ${m.target} has no source`);
      mounts.push({ destination: m.target, type: 'bind', source: m.source, options: ['rbind', m.readonly ? 'ro' : 'rw'] });
    } else {
      mounts.push({ destination: m.target, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', m.readonly ? 'ro' : 'rw'] });
    }
  }
  const namespaces: Array<{ type: string }> = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (step.network === 'none') namespaces.push({ type: 'network' });
  const insecure = step.security === 'insecure';
  const bounding = insecure ? insecureCapabilities(rootless) : [...DEFAULT_CAPABILITIES];
  const capsList = step.user.uid === 0 ? bounding : [];
  const seccomp = step.suppressSync ? syncSuppressingSeccomp() : undefined;
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: step.user.uid, gid: step.user.gid, ...(step.user.additionalGids?.length ? { additionalGids: [...step.user.additionalGids] } : {}) },
      args: [...step.args],
      env: [...step.env],
      cwd: step.cwd,
      capabilities: { bounding, effective: capsList, permitted: capsList },
      noNewPrivileges: false,
      ...(step.ulimits && step.ulimits.length > 0 ? { rlimits: ociRlimits(step.ulimits) } : {}),
    },
    root: { path: root, readonly: step.readonlyRoot ?? false },
    hostname: step.hostname ?? 'tsbuild',
    mounts,
    linux: {
      namespaces,
      // Docker's defaults: hide host kernel interfaces that /proc would otherwise expose.
      // (An insecure step gets none of them hidden or read-only, as BuildKit's WithInsecureSpec.)
      maskedPaths: insecure ? [] : [...MASKED_PATHS],
      readonlyPaths: insecure ? [] : [...READONLY_PATHS],
      ...(rootless ? {} : { resources: { devices: [{ allow: false, access: 'rwm' }] } }),
      ...(seccomp ? { seccomp } : {}),
    },
  };
}
