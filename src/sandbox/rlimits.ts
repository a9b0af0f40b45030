import { readFileSync } from 'node:fs';
import { TsbuildError } from '../errors.js';
import type { Ulimit, UlimitName } from './types.js';

/**
 * Resource limits of a step (`--ulimit NAME=SOFT[:HARD]`), applied by the runners:
 * bwrap, chroot and none through util-linux prlimit(1) just before the sandbox's last exec,
 * runc through config.json `process.rlimits` (runc sets them in the container's init).
 *
 * Contract: a limit is never raised above the hard limit tsbuild itself runs with, unless
 * tsbuild is root with CAP_SYS_RESOURCE and no user namespace is involved: the kernel would
 * refuse (EPERM) half-way into the sandbox's start, so the request is refused up front with
 * the limit's name and the host's hard limit (hostHardLimit / assertUlimitsAllowed).
 */

interface LimitInfo {
  /** RLIMIT_* name, as the OCI runtime spec writes it. */
  readonly rlimit: string;
  /** The row of /proc/PID/limits (proc(5)). */
  readonly procRow: string;
}

const ULIMITS: Readonly<Record<UlimitName, LimitInfo>> = {
  core: { rlimit: 'RLIMIT_CORE', procRow: 'Max core file size' },
  cpu: { rlimit: 'RLIMIT_CPU', procRow: 'Max cpu time' },
  data: { rlimit: 'RLIMIT_DATA', procRow: 'Max data size' },
  fsize: { rlimit: 'RLIMIT_FSIZE', procRow: 'Max file size' },
  locks: { rlimit: 'RLIMIT_LOCKS', procRow: 'Max file locks' },
  memlock: { rlimit: 'RLIMIT_MEMLOCK', procRow: 'Max locked memory' },
  msgqueue: { rlimit: 'RLIMIT_MSGQUEUE', procRow: 'Max msgqueue size' },
  nice: { rlimit: 'RLIMIT_NICE', procRow: 'Max nice priority' },
  nofile: { rlimit: 'RLIMIT_NOFILE', procRow: 'Max open files' },
  nproc: { rlimit: 'RLIMIT_NPROC', procRow: 'Max processes' },
  rss: { rlimit: 'RLIMIT_RSS', procRow: 'Max resident set' },
  rtprio: { rlimit: 'RLIMIT_RTPRIO', procRow: 'Max realtime priority' },
  rttime: { rlimit: 'RLIMIT_RTTIME', procRow: 'Max realtime timeout' },
  sigpending: { rlimit: 'RLIMIT_SIGPENDING', procRow: 'Max pending signals' },
  stack: { rlimit: 'RLIMIT_STACK', procRow: 'Max stack size' },
};

/** The hard limits of this process by name (-1 unlimited), read from /proc/self/limits. */
export function hostHardLimits(limitsText: string = readFileSync('/proc/self/limits', 'utf8')): Map<UlimitName, number> {
  const out = new Map<UlimitName, number>();
  for (const [name, info] of Object.entries(ULIMITS) as Array<[UlimitName, LimitInfo]>) {
    const line = limitsText.split('\n').find((l) => l.startsWith(info.procRow));
    if (!line) continue;
    // "Max open files            20000                20000                files"
    const cols = line.slice(info.procRow.length).trim().split(/\s+/);
    const hard = cols[1];
    if (hard === undefined) continue;
    out.set(name, hard === 'unlimited' ? -1 : Number(hard));
  }
  return out;
}

/** CAP_SYS_RESOURCE in this process's effective set (capability 24, capabilities(7)). */
function hasSysResource(): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m !== null && ((BigInt(`0x${m[1]}`) >> 24n) & 1n) === 1n;
}

/** a <= b where -1 is infinity. */
function notAbove(a: number, b: number): boolean {
  if (b === -1) return true;
  return a !== -1 && a <= b;
}

/**
 * Refuses (USAGE) a limit whose soft or hard value is above this process's hard limit, when
 * raising is not possible: as an ordinary user (a user namespace's CAP_SYS_RESOURCE does not
 * count for rlimits) or as root without CAP_SYS_RESOURCE (a container, this CI host).
 */
export function assertUlimitsAllowed(ulimits: readonly Ulimit[], opts: { rootless: boolean; limitsText?: string; canRaise?: boolean }): void {
  if (ulimits.length === 0) return;
  const canRaise = opts.canRaise ?? (!opts.rootless && process.getuid?.() === 0 && hasSysResource());
  if (canRaise) return;
  const host = hostHardLimits(opts.limitsText);
  for (const u of ulimits) {
    const max = host.get(u.name);
    if (max === undefined || (notAbove(u.hard, max) && notAbove(u.soft, max))) continue;
    const shown = (v: number) => (v === -1 ? 'unlimited' : String(v));
    throw new TsbuildError('USAGE', `--ulimit ${u.name}=${shown(u.soft)}:${shown(u.hard)} is above this host's hard limit for ${u.name} (${shown(max)})`, {
      hint: `tsbuild cannot raise a limit without CAP_SYS_RESOURCE: ask for at most ${u.name}=${shown(max)}, or raise the hard limit of the shell that starts tsbuild (ulimit -H, /etc/security/limits.conf)`,
    });
  }
}

/** prlimit(1) options for the limits: `--nofile=SOFT:HARD` ("unlimited" for -1). */
export function prlimitArgs(ulimits: readonly Ulimit[]): string[] {
  const v = (n: number) => (n === -1 ? 'unlimited' : String(n));
  return ulimits.map((u) => `--${u.name}=${v(u.soft)}:${v(u.hard)}`);
}

/**
 * Wraps a command so it starts with the limits set: `prlimit --NAME=S:H ... -- cmd args`.
 * Unchanged without limits; SANDBOX_UNAVAILABLE without prlimit.
 */
export function withUlimits(prlimit: string | undefined, command: string, args: readonly string[], ulimits: readonly Ulimit[] | undefined): [string, string[]] {
  if (!ulimits || ulimits.length === 0) return [command, [...args]];
  if (!prlimit) throw new TsbuildError('SANDBOX_UNAVAILABLE', '--ulimit needs prlimit, which is not installed', { hint: 'apt-get install util-linux' });
  return [prlimit, [...prlimitArgs(ulimits), '--', command, ...args]];
}

/** RLIM_INFINITY as the OCI runtime spec's uint64. */
const RLIM_INFINITY = 18446744073709551615n;

/** config.json `process.rlimits` entries; values are bigint (RLIM_INFINITY does not fit a double). */
export function ociRlimits(ulimits: readonly Ulimit[]): Array<{ type: string; soft: bigint; hard: bigint }> {
  const v = (n: number) => (n === -1 ? RLIM_INFINITY : BigInt(n));
  return ulimits.map((u) => ({ type: ULIMITS[u.name].rlimit, soft: v(u.soft), hard: v(u.hard) }));
}
