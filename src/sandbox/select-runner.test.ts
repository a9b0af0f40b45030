import { describe, expect, it } from 'vitest';
import { isTsbuildError } from '../errors.js';
import type { SandboxCapabilities } from './probe.js';
import { selectRunner } from './select-runner.js';

// The decision table of --isolation, on capability records shaped like probeSandbox's output
// for hosts we cannot reproduce here (user namespaces blocked, a CI container).
const ok = { ok: true } as const;
const blocked = { ok: false, reason: 'unprivileged user namespaces are disabled', hint: 'sysctl -w kernel.unprivileged_userns_clone=1' } as const;
function host(over: Partial<SandboxCapabilities>): SandboxCapabilities {
  return {
    uid: 1001,
    gid: 1001,
    user: 'u',
    isRoot: false,
    tools: {},
    bwrap: ok,
    runc: ok,
    userNamespaces: ok,
    subordinateIds: ok,
    overlay: ok,
    xattrReader: ok,
    idMapping: { kind: 'single', uids: [], gids: [] },
    platforms: [],
    ...over,
  };
}

describe('selectRunner', () => {
  it('auto uses the sandbox when the host allows it, with overlay snapshots', () => {
    const warnings: string[] = [];
    const s = selectRunner({ capabilities: host({}), isolation: 'auto', warn: (m) => warnings.push(m) });
    expect([s.isolation, s.runner.kind, s.snapshots, warnings]).toEqual(['sandbox', 'bwrap', 'overlay', []]);
    expect(selectRunner({ capabilities: host({}), isolation: 'auto', runtime: 'runc' }).runner.kind).toBe('runc');
  });

  it('auto as root with user namespaces blocked steps down to chroot with one warning', () => {
    const warnings: string[] = [];
    const s = selectRunner({ capabilities: host({ isRoot: true, uid: 0, userNamespaces: blocked, bwrap: { ok: false, reason: 'bwrap: setting up uid map: Permission denied' } }), isolation: 'auto', warn: (m) => warnings.push(m) });
    expect([s.isolation, s.runner.kind, s.snapshots]).toEqual(['chroot', 'chroot', 'copy']);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('chroot');
  });

  it('auto as a user with user namespaces blocked names what is missing and how to fix it', () => {
    const e = (() => {
      try {
        selectRunner({ capabilities: host({ userNamespaces: blocked }), isolation: 'auto' });
      } catch (x) {
        return x;
      }
    })();
    expect(isTsbuildError(e) && e.code).toBe('SANDBOX_UNAVAILABLE');
    expect(isTsbuildError(e) && e.message).toContain('unprivileged user namespaces are disabled');
    expect(isTsbuildError(e) && e.hint).toContain('sysctl -w kernel.unprivileged_userns_clone=1');
    expect(isTsbuildError(e) && e.hint).toContain('--isolation=none');
  });

  it('sandbox never steps down; chroot needs root; none only when asked', () => {
    expect(() => selectRunner({ capabilities: host({ bwrap: { ok: false, reason: 'bwrap (bubblewrap) is not installed', hint: 'apt-get install bubblewrap' } }), isolation: 'sandbox' })).toThrow(/bubblewrap/);
    expect(() => selectRunner({ capabilities: host({}), isolation: 'chroot' })).toThrow(/root/);
    expect(selectRunner({ capabilities: host({ userNamespaces: blocked }), isolation: 'none' }).runner.kind).toBe('none');
  });

  it('falls back to copy snapshots with a warning when overlay cannot be mounted', () => {
    const warnings: string[] = [];
    const s = selectRunner({ capabilities: host({ overlay: { ok: false, reason: 'overlayfs cannot be mounted' } }), isolation: 'sandbox', warn: (m) => warnings.push(m) });
    expect(s.snapshots).toBe('copy');
    expect(warnings[0]).toContain('copy-and-walk');
  });

  it('TSBUILD_SNAPSHOTTER forces copy without a warning, and overlay only where it can be mounted', () => {
    const warnings: string[] = [];
    const copy = selectRunner({ capabilities: host({}), isolation: 'sandbox', snapshotter: 'copy', warn: (m) => warnings.push(m) });
    expect([copy.runner.kind, copy.snapshots, warnings]).toEqual(['bwrap', 'copy', []]);
    expect(() => selectRunner({ capabilities: host({ overlay: { ok: false, reason: 'overlayfs cannot be mounted' } }), isolation: 'sandbox', snapshotter: 'overlay' })).toThrow(/overlay snapshots are unavailable/);
    expect(() => selectRunner({ capabilities: host({ isRoot: true, uid: 0 }), isolation: 'chroot', snapshotter: 'overlay' })).toThrow(/cannot use overlay/);
  });

  it('auto as root where bwrap is missing warns once, naming the fix', () => {
    const warnings: string[] = [];
    const s = selectRunner({ capabilities: host({ isRoot: true, uid: 0, bwrap: { ok: false, reason: 'bwrap (bubblewrap) is not installed', hint: 'apt-get install bubblewrap' } }), isolation: 'auto', warn: (m) => warnings.push(m) });
    expect([s.isolation, s.snapshots]).toEqual(['chroot', 'copy']);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/bubblewrap.*apt-get install bubblewrap/);
  });
});
