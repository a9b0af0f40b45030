import { TsbuildError } from '../errors.js';
import { createBwrapRunner } from './bwrap-runner.js';
import { createChrootRunner, createHostRunner } from './chroot-runner.js';
import type { Capability, SandboxCapabilities } from './probe.js';
import { createRuncRunner } from './runc-runner.js';
import type { Isolation, Runner } from './types.js';

export interface SelectRunnerOptions {
  readonly capabilities: SandboxCapabilities;
  readonly isolation: Isolation;
  /** `--runtime`: which sandbox implementation for isolation=sandbox. */
  readonly runtime?: 'bwrap' | 'runc';
  readonly tmpDir?: string;
  /** Called once with a warning when `auto` steps down, or overlay is unavailable. */
  readonly warn?: (message: string) => void;
  /**
   * How snapshots are made: `auto` (overlay where the sandbox can mount it, else copy),
   * or forced (`TSBUILD_SNAPSHOTTER=overlay|copy`; tests use `copy` to compare both).
   */
  readonly snapshotter?: SnapshotMode;
}

export type SnapshotMode = 'auto' | 'overlay' | 'copy';

export interface RunnerSelection {
  readonly runner: Runner;
  /** The isolation actually in force (`auto` resolved). */
  readonly isolation: Exclude<Isolation, 'auto'>;
  /**
   * How the engine makes snapshots: `overlay` (OverlayRootfs, captureUpperDir) or `copy`
   * (DirRootfs, snapshot/copy-snapshotter.ts): chroot/none cannot mount, and where the
   * kernel refuses overlay the copy-and-walk fallback is used.
   */
  readonly snapshots: 'overlay' | 'copy';
}

function missing(what: string, cap: Capability): string {
  return `${what}: ${cap.reason ?? 'unavailable'}${cap.hint ? ` (fix: ${cap.hint})` : ''}`;
}

/** Why the sandbox cannot run here, or undefined when it can. */
function sandboxProblem(c: SandboxCapabilities, runtime: 'bwrap' | 'runc'): { message: string; hint: string } | undefined {
  const rt = runtime === 'runc' ? c.runc : c.bwrap;
  if (!rt.ok) return { message: missing(runtime, rt), hint: rt.hint ?? `install ${runtime}` };
  if (!c.isRoot && !c.userNamespaces.ok) return { message: missing('user namespaces', c.userNamespaces), hint: c.userNamespaces.hint ?? 'enable user namespaces' };
  return undefined;
}

/**
 * `--isolation=auto|sandbox|chroot|none` -> a Runner.
 * auto: the sandbox when the host allows it; as root where namespaces are blocked (CI
 * containers), chroot with one warning; otherwise an error naming what is missing.
 * none is never chosen automatically.
 */
export function selectRunner(opts: SelectRunnerOptions): RunnerSelection {
  const c = opts.capabilities;
  const runtime = opts.runtime ?? 'bwrap';
  const base = { capabilities: c, ...(opts.tmpDir ? { tmpDir: opts.tmpDir } : {}) };
  const snapshotter = opts.snapshotter ?? 'auto';
  const sandbox = (): RunnerSelection => {
    const runner = runtime === 'runc' ? createRuncRunner(base) : createBwrapRunner(base);
    if (snapshotter === 'copy') return { runner, isolation: 'sandbox', snapshots: 'copy' };
    const overlayProblem = !c.overlay.ok ? missing('overlay', c.overlay) : !c.xattrReader.ok ? missing('getfattr', c.xattrReader) : undefined;
    if (overlayProblem === undefined) return { runner, isolation: 'sandbox', snapshots: 'overlay' };
    if (snapshotter === 'overlay') {
      throw new TsbuildError('SANDBOX_UNAVAILABLE', `overlay snapshots are unavailable: ${overlayProblem}`, { hint: 'unset TSBUILD_SNAPSHOTTER to use copy-and-walk snapshots' });
    }
    opts.warn?.(`overlay snapshots unavailable (${overlayProblem}); using copy-and-walk snapshots, slower for big images`);
    return { runner, isolation: 'sandbox', snapshots: 'copy' };
  };
  const plain = (isolation: 'chroot' | 'none'): RunnerSelection => {
    if (snapshotter === 'overlay') {
      throw new TsbuildError('SANDBOX_UNAVAILABLE', `--isolation=${isolation} cannot use overlay snapshots: mounting overlay needs the sandbox's mount namespace`, {
        hint: 'unset TSBUILD_SNAPSHOTTER, or use --isolation=sandbox',
      });
    }
    return { runner: isolation === 'chroot' ? createChrootRunner(base) : createHostRunner(base), isolation, snapshots: 'copy' };
  };
  switch (opts.isolation) {
    case 'sandbox': {
      const p = sandboxProblem(c, runtime);
      if (p) throw new TsbuildError('SANDBOX_UNAVAILABLE', `the RUN sandbox is unavailable: ${p.message}`, { hint: `${p.hint}; or --isolation=${c.isRoot ? 'chroot' : 'none'}` });
      return sandbox();
    }
    case 'auto': {
      const p = sandboxProblem(c, runtime);
      if (!p) return sandbox();
      if (c.isRoot) {
        opts.warn?.(
          `the RUN sandbox is unavailable (${p.message}); falling back to --isolation=chroot with copy-and-walk snapshots: steps share the host's PID, network and IPC namespaces and get no /proc (pass --isolation=chroot to silence this, or fix: ${p.hint})`,
        );
        return plain('chroot');
      }
      throw new TsbuildError('SANDBOX_UNAVAILABLE', `RUN steps cannot be isolated here: ${p.message}`, {
        hint: `${p.hint}; or run as root for --isolation=chroot, or pass --isolation=none to run steps unisolated on this host`,
      });
    }
    case 'chroot':
      if (!c.isRoot) throw new TsbuildError('SANDBOX_UNAVAILABLE', '--isolation=chroot needs root (chroot(2) needs CAP_SYS_CHROOT)', { hint: 'run as root, or use --isolation=sandbox or none' });
      return plain('chroot');
    case 'none':
      return plain('none');
  }
}
