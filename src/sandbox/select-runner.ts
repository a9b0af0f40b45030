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
}

export interface RunnerSelection {
  readonly runner: Runner;
  /** The isolation actually in force (`auto` resolved). */
  readonly isolation: Exclude<Isolation, 'auto'>;
  /**
   * How the engine makes snapshots: `overlay` (OverlayRootfs, captureUpperDir) or `copy`
   * (prepareCopyRootfs + DirRootfs + diffCopyRootfs): chroot/none cannot mount, and where the
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
  const sandbox = (): RunnerSelection => {
    const snapshots = c.overlay.ok && c.xattrReader.ok ? 'overlay' : 'copy';
    if (snapshots === 'copy') {
      opts.warn?.(`overlay snapshots unavailable (${!c.overlay.ok ? missing('overlay', c.overlay) : missing('getfattr', c.xattrReader)}); using copy-and-walk snapshots, slower for big images`);
    }
    return { runner: runtime === 'runc' ? createRuncRunner(base) : createBwrapRunner(base), isolation: 'sandbox', snapshots };
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
        opts.warn?.(`the RUN sandbox is unavailable (${p.message}); falling back to --isolation=chroot: steps share the host's PID, network and IPC namespaces`);
        return { runner: createChrootRunner(base), isolation: 'chroot', snapshots: 'copy' };
      }
      throw new TsbuildError('SANDBOX_UNAVAILABLE', `RUN steps cannot be isolated here: ${p.message}`, {
        hint: `${p.hint}; or run as root for --isolation=chroot, or pass --isolation=none to run steps unisolated on this host`,
      });
    }
    case 'chroot':
      if (!c.isRoot) throw new TsbuildError('SANDBOX_UNAVAILABLE', '--isolation=chroot needs root', { hint: 'use --isolation=sandbox, or none' });
      return { runner: createChrootRunner(base), isolation: 'chroot', snapshots: 'copy' };
    case 'none':
      return { runner: createHostRunner(base), isolation: 'none', snapshots: 'copy' };
  }
}
