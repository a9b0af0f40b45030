import { access, chmod, constants, mkdir, readFile, rm } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { captureChild, HOST_PATH } from './child.js';
import { COMMON_PLATFORMS, describePlatformSupport, platformSupport, type PlatformSupport } from './emulation.js';
import { makeStepDir } from './step-dir.js';
import type { IdMapping, IdRange } from './types.js';

/** One thing the sandbox may need; `reason` and `hint` are set when it is not available. */
export interface Capability {
  readonly ok: boolean;
  readonly reason?: string;
  readonly hint?: string;
}

/** Absolute paths of the host tools the sandbox uses; undefined when not installed. */
export interface HostTools {
  readonly bwrap?: string;
  readonly runc?: string;
  readonly unshare?: string;
  readonly setpriv?: string;
  readonly mount?: string;
  readonly newuidmap?: string;
  readonly newgidmap?: string;
  readonly getfattr?: string;
  readonly sh?: string;
  /** util-linux script(1): the pseudo-terminal of `tsbuild run -t`. */
  readonly script?: string;
  /** util-linux prlimit(1): the resource limits of `--ulimit`. */
  readonly prlimit?: string;
}

export interface SubordinateRange {
  readonly start: number;
  readonly count: number;
}

export interface SandboxCapabilities {
  readonly uid: number;
  readonly gid: number;
  readonly user: string;
  readonly isRoot: boolean;
  readonly tools: HostTools;
  /** `bwrap` runs a trivial sandbox here. */
  readonly bwrap: Capability;
  readonly runc: Capability;
  /** The current user may create a user namespace (`unshare --user --map-root-user true`). */
  readonly userNamespaces: Capability;
  /** /etc/subuid and /etc/subgid ranges for this user, usable through newuidmap/newgidmap. */
  readonly subordinateIds: Capability & { readonly uids?: SubordinateRange; readonly gids?: SubordinateRange };
  /** Kernel overlayfs mounts (as root: in a private mount namespace; else: in a user namespace with userxattr). */
  readonly overlay: Capability;
  /** getfattr (Debian package `attr`) to read overlay opaque-directory xattrs. */
  readonly xattrReader: Capability;
  /** The ID mapping steps will run with. */
  readonly idMapping: IdMapping;
  /** Which common platforms' programs run here, natively or emulated (emulation.ts). */
  readonly platforms: readonly PlatformSupport[];
}

export interface ProbeOptions {
  readonly signal?: AbortSignal | undefined;
  /** Probe again instead of returning the per-process cached result. */
  readonly refresh?: boolean;
  /**
   * The caller's PATH (the CLI passes its environment's): host tools are looked up there,
   * then in the sbin directories, which an ordinary user's PATH often lacks (runc is in
   * /usr/sbin). Default: a standard root PATH.
   */
  readonly path?: string | undefined;
}

/** One probe per search path (in practice one per process). */
const cached = new Map<string, Promise<SandboxCapabilities>>();

/**
 * What this host allows, probed once per process (each probe is a real child process:
 * ~10 small spawns, well under a second). Every missing capability carries a reason and a
 * hint; `selectRunner` turns them into errors and warnings.
 */
export function probeSandbox(opts: ProbeOptions = {}): Promise<SandboxCapabilities> {
  const key = opts.path ?? '';
  let p = cached.get(key);
  if (p === undefined || opts.refresh === true) {
    const fresh = probeUncached(opts.signal, opts.path);
    p = fresh;
    cached.set(key, fresh);
    // A failed or aborted probe is not cached.
    fresh.catch(() => {
      if (cached.get(key) === fresh) cached.delete(key);
    });
  }
  return p;
}

async function probeUncached(signal: AbortSignal | undefined, path: string | undefined): Promise<SandboxCapabilities> {
  const uid = process.getuid?.() ?? -1;
  const gid = process.getgid?.() ?? -1;
  const user = safeUserName(uid);
  const isRoot = uid === 0;
  const tools = await findTools(searchDirs(path));
  const opt = { signal };

  const userNamespaces = await probeUserNamespaces(tools, opt);
  const subordinateIds = isRoot ? { ok: true } : await probeSubordinateIds(tools, user, uid, gid, userNamespaces, opt);
  const idMapping = mappingFor(isRoot, uid, gid, subordinateIds);
  // Independent of each other: run at once (a cold build waits for the probe before its first
  // RUN; one after the other they took ~0.2 s here, runc --version alone up to 0.12 s).
  const [bwrap, runc, overlay, platforms] = await Promise.all([
    probeBwrap(tools, isRoot, userNamespaces, opt),
    probeRunc(tools, opt),
    probeOverlay(tools, isRoot, idMapping, userNamespaces, opt),
    Promise.all(COMMON_PLATFORMS.map((p) => platformSupport(p))),
  ]);
  const xattrReader: Capability = tools.getfattr
    ? { ok: true }
    : { ok: false, reason: 'getfattr is not installed (needed to see opaque directories in an overlay upper dir)', hint: 'apt-get install attr' };
  return { uid, gid, user, isRoot, tools, bwrap, runc, userNamespaces, subordinateIds, overlay, xattrReader, idMapping, platforms };
}

function safeUserName(uid: number): string {
  try {
    return userInfo().username;
  } catch {
    return String(uid);
  }
}

function searchDirs(path: string | undefined): string[] {
  if (path === undefined) return HOST_PATH.split(':');
  const sbin = HOST_PATH.split(':').filter((d) => d.endsWith('/sbin'));
  return [...new Set([...path.split(':').filter((d) => d.startsWith('/')), ...sbin])];
}

async function which(name: string, dirs: readonly string[]): Promise<string | undefined> {
  for (const d of dirs) {
    const p = join(d, name);
    try {
      await access(p, constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return undefined;
}

async function findTools(dirs: readonly string[]): Promise<HostTools> {
  const names = ['bwrap', 'runc', 'unshare', 'setpriv', 'mount', 'newuidmap', 'newgidmap', 'getfattr', 'sh', 'script', 'prlimit'] as const;
  const found = await Promise.all(names.map((n) => which(n, dirs)));
  const tools: Record<string, string> = {};
  names.forEach((n, i) => {
    const p = found[i];
    if (p !== undefined) tools[n] = p;
  });
  return tools as HostTools;
}

async function userNsSysctlHint(): Promise<{ reason: string; hint: string }> {
  const read = async (p: string): Promise<string | undefined> => (await readFile(p, 'utf8').catch(() => undefined))?.trim();
  if ((await read('/proc/sys/kernel/unprivileged_userns_clone')) === '0') {
    return { reason: 'unprivileged user namespaces are disabled', hint: 'sysctl -w kernel.unprivileged_userns_clone=1' };
  }
  if ((await read('/proc/sys/user/max_user_namespaces')) === '0') {
    return { reason: 'user namespaces are disabled (user.max_user_namespaces=0)', hint: 'sysctl -w user.max_user_namespaces=15000' };
  }
  if ((await read('/proc/sys/kernel/apparmor_restrict_unprivileged_userns')) === '1') {
    return {
      reason: 'AppArmor restricts unprivileged user namespaces',
      hint: 'sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile allowing userns for bwrap',
    };
  }
  return {
    reason: 'creating a user namespace failed (a seccomp filter, e.g. in a container, may block it)',
    hint: 'run the container with --security-opt seccomp=unconfined (or a profile allowing clone(CLONE_NEWUSER)), or use --isolation=chroot as root',
  };
}

async function probeUserNamespaces(tools: HostTools, opt: { signal: AbortSignal | undefined }): Promise<Capability> {
  if (!tools.unshare) return { ok: false, reason: 'unshare (util-linux) is not installed', hint: 'apt-get install util-linux' };
  const r = await captureChild(tools.unshare, ['--user', '--map-root-user', 'true'], opt);
  if (r.exitCode === 0) return { ok: true };
  const why = await userNsSysctlHint();
  return { ok: false, reason: `${why.reason}: ${r.stderr.trim()}`, hint: why.hint };
}

/** Parses /etc/subuid-style text ("name:start:count" or "uid:start:count") for one user; first range wins. */
export function parseSubordinateIds(text: string, user: string, id: number): SubordinateRange | undefined {
  for (const line of text.split('\n')) {
    const parts = line.trim().split(':');
    if (parts.length !== 3) continue;
    const [owner, s, c] = parts as [string, string, string];
    if (owner !== user && owner !== String(id)) continue;
    const start = Number(s);
    const count = Number(c);
    if (Number.isSafeInteger(start) && Number.isSafeInteger(count) && count > 0) return { start, count };
  }
  return undefined;
}

async function probeSubordinateIds(
  tools: HostTools,
  user: string,
  uid: number,
  gid: number,
  userns: Capability,
  opt: { signal: AbortSignal | undefined },
): Promise<SandboxCapabilities['subordinateIds']> {
  const uids = parseSubordinateIds(await readFile('/etc/subuid', 'utf8').catch(() => ''), user, uid);
  const gids = parseSubordinateIds(await readFile('/etc/subgid', 'utf8').catch(() => ''), user, uid);
  const hint = `usermod --add-subuids 200000-265535 --add-subgids 200000-265535 ${user}`;
  if (!uids || !gids) {
    return { ok: false, reason: `no subordinate ID range for user ${user} in ${!uids ? '/etc/subuid' : '/etc/subgid'}`, hint };
  }
  if (!tools.newuidmap || !tools.newgidmap) {
    return { ok: false, uids, gids, reason: 'newuidmap/newgidmap are not installed', hint: 'apt-get install uidmap' };
  }
  if (!userns.ok) return { ok: false, uids, gids, ...(userns.reason ? { reason: userns.reason } : {}), ...(userns.hint ? { hint: userns.hint } : {}) };
  const r = await captureChild(tools.unshare ?? 'unshare', [...userNamespaceArgs(fullMapping(uid, gid, uids, gids)), 'true'], opt);
  if (r.exitCode !== 0) {
    return { ok: false, uids, gids, reason: `newuidmap/newgidmap refused the range: ${r.stderr.trim()}`, hint: 'check that /usr/bin/newuidmap and newgidmap are setuid root or have CAP_SETUID/CAP_SETGID file capabilities' };
  }
  return { ok: true, uids, gids };
}

function fullMapping(uid: number, gid: number, uids: SubordinateRange, gids: SubordinateRange): IdMapping {
  const r = (host: number, sub: SubordinateRange): IdRange[] => [
    { containerId: 0, hostId: host, size: 1 },
    { containerId: 1, hostId: sub.start, size: sub.count },
  ];
  return { kind: 'subordinate', uids: r(uid, uids), gids: r(gid, gids) };
}

function mappingFor(isRoot: boolean, uid: number, gid: number, sub: SandboxCapabilities['subordinateIds']): IdMapping {
  if (isRoot) return { kind: 'identity', uids: [], gids: [] };
  if (sub.ok && sub.uids && sub.gids) return fullMapping(uid, gid, sub.uids, sub.gids);
  return { kind: 'single', uids: [{ containerId: 0, hostId: uid, size: 1 }], gids: [{ containerId: 0, hostId: gid, size: 1 }] };
}

/**
 * `unshare` options creating a user namespace with `mapping` (root: none needed). The full
 * map goes through newuidmap/newgidmap, which unshare(1) calls for --map-users/--map-groups
 * (util-linux >= 2.38); container 0 is the caller via --map-root-user.
 */
export function userNamespaceArgs(mapping: IdMapping): string[] {
  switch (mapping.kind) {
    case 'identity':
      return [];
    case 'single':
      return ['--user', '--map-root-user'];
    case 'subordinate': {
      const args = ['--user', '--map-root-user'];
      for (const r of mapping.uids) if (r.containerId !== 0) args.push(`--map-users=${r.hostId},${r.containerId},${r.size}`);
      for (const r of mapping.gids) if (r.containerId !== 0) args.push(`--map-groups=${r.hostId},${r.containerId},${r.size}`);
      return args;
    }
  }
}

async function probeBwrap(tools: HostTools, isRoot: boolean, userns: Capability, opt: { signal: AbortSignal | undefined }): Promise<Capability> {
  if (!tools.bwrap) return { ok: false, reason: 'bwrap (bubblewrap) is not installed', hint: 'apt-get install bubblewrap' };
  const args = isRoot ? ['--ro-bind', '/', '/', '--unshare-pid', 'true'] : ['--unshare-user', '--ro-bind', '/', '/', '--unshare-pid', 'true'];
  const r = await captureChild(tools.bwrap, args, opt);
  if (r.exitCode === 0) return { ok: true };
  return {
    ok: false,
    reason: `bwrap cannot create a sandbox: ${r.stderr.trim()}${userns.ok ? '' : ` (${userns.reason ?? 'user namespaces unavailable'})`}`,
    hint: userns.ok ? 'check bwrap with: bwrap --unshare-user --ro-bind / / true' : (userns.hint ?? 'enable user namespaces'),
  };
}

async function probeRunc(tools: HostTools, opt: { signal: AbortSignal | undefined }): Promise<Capability> {
  if (!tools.runc) return { ok: false, reason: 'runc is not installed', hint: 'apt-get install runc' };
  const r = await captureChild(tools.runc, ['--version'], opt);
  return r.exitCode === 0 ? { ok: true } : { ok: false, reason: `runc --version failed: ${r.stderr.trim()}`, hint: 'reinstall runc' };
}

async function probeOverlay(
  tools: HostTools,
  isRoot: boolean,
  mapping: IdMapping,
  userns: Capability,
  opt: { signal: AbortSignal | undefined },
): Promise<Capability> {
  if (!tools.unshare || !tools.mount || !tools.sh) return { ok: false, reason: 'unshare/mount/sh missing', hint: 'apt-get install util-linux mount' };
  if (!isRoot && !userns.ok) return { ok: false, reason: `overlay needs a user namespace as non-root: ${userns.reason ?? ''}`, ...(userns.hint ? { hint: userns.hint } : {}) };
  // Named for its owner like a step dir, so one left by a killed tsbuild is swept later.
  const dir = await makeStepDir('probe');
  try {
    for (const d of ['l', 'u', 'w', 'm']) await mkdir(join(dir, d));
    await chmod(dir, 0o700);
    const o = `lowerdir=l,upperdir=u,workdir=w${isRoot ? '' : ',userxattr'}`;
    // Mount in a private mount namespace that dies with the probe: nothing to unmount.
    const r = await captureChild(
      tools.unshare,
      [...userNamespaceArgs(mapping), '--mount', '--propagation', 'private', tools.mount, '-t', 'overlay', 'overlay', '-o', o, 'm'],
      { ...opt, cwd: dir },
    );
    if (r.exitCode === 0) return { ok: true };
    return {
      ok: false,
      reason: `overlayfs cannot be mounted${isRoot ? '' : ' in a user namespace'}: ${r.stderr.trim()}`,
      hint: isRoot ? 'modprobe overlay' : 'needs Linux >= 5.11 for unprivileged overlay; the copy-and-walk fallback is used instead',
    };
  } finally {
    // overlayfs made w/work with mode 000: a non-root owner cannot list it to remove it.
    await chmod(join(dir, 'w', 'work'), 0o700).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

/** Human-readable summary, one line per capability (for logs and `tsbuild info`). */
export function describeCapabilities(c: SandboxCapabilities): string {
  const line = (name: string, cap: Capability): string => `${name}: ${cap.ok ? 'ok' : `missing - ${cap.reason ?? ''}${cap.hint ? ` (fix: ${cap.hint})` : ''}`}`;
  const sub = c.subordinateIds.uids ? ` uids ${c.subordinateIds.uids.start}+${c.subordinateIds.uids.count}` : '';
  return [
    `user: ${c.user} (uid ${c.uid}, gid ${c.gid})${c.isRoot ? ' root' : ''}`,
    line('bwrap', c.bwrap),
    line('runc', c.runc),
    line('user namespaces', c.userNamespaces),
    line(`subordinate ids${sub}`, c.subordinateIds),
    line('overlay', c.overlay),
    line('getfattr', c.xattrReader),
    `id mapping: ${c.idMapping.kind}`,
    describePlatformSupport(c.platforms),
  ].join('\n');
}
