import { TsbuildError, type SourceLocation } from '../errors.js';
import type { RunSpec, Ulimit, UlimitName } from '../sandbox/index.js';

/**
 * What `--shm-size`, `--ulimit` and `--allow` give every RUN step of a build, as buildx
 * passes them to BuildKit's Dockerfile frontend (dispatchRun: a tmpfs mount of that size at
 * /dev/shm, ExecOp.Meta.Ulimit, the entitlements the solver checks).
 */
export interface RunResources {
  /** Bytes; undefined: the runtime's 64 MiB. */
  readonly shmSize?: number | undefined;
  /** One per name, sorted by name (the last `--ulimit` of a name wins, as buildx's UlimitOpt). */
  readonly ulimits?: readonly Ulimit[] | undefined;
  /** `--allow`: the entitlements granted. */
  readonly allow?: ReadonlySet<Entitlement> | undefined;
}

/** buildx's entitlements that mean something here; `network.host` is granted anyway (README). */
export type Entitlement = 'security.insecure' | 'network.host';
const ENTITLEMENTS: readonly Entitlement[] = ['security.insecure', 'network.host'];

/**
 * docker's `--ulimit` names (a Record, so the compiler checks it against sandbox's UlimitName;
 * kept here so parsing flags does not load the sandbox code).
 */
const ULIMIT_NAMES: Readonly<Record<UlimitName, true>> = {
  core: true, cpu: true, data: true, fsize: true, locks: true, memlock: true, msgqueue: true, nice: true,
  nofile: true, nproc: true, rss: true, rtprio: true, rttime: true, sigpending: true, stack: true,
};

const UNIT: Readonly<Record<string, number>> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4, p: 1024 ** 5 };

/**
 * `--shm-size` as docker and buildx read it (go-units RAMInBytes): a number, optionally with a
 * fraction, an optional space, then b, or k/m/g/t/p with an optional b or ib, any case; binary
 * units (64m = 64 MiB); bare numbers are bytes. 0 means "not set", as buildx omits it.
 */
export function parseShmSize(spec: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?) ?(?:(b)|([kmgtp])(b|ib)?)?$/i.exec(spec);
  const usage = () =>
    new TsbuildError('USAGE', `invalid --shm-size ${JSON.stringify(spec)}: not a size`, { hint: 'give bytes or a number with a unit, e.g. --shm-size 64m, --shm-size 1g, --shm-size 268435456' });
  if (!m) throw usage();
  const bytes = Math.floor(Number(m[1]) * (m[3] ? (UNIT[m[3].toLowerCase()] ?? 1) : 1));
  if (!Number.isSafeInteger(bytes)) throw usage();
  return bytes === 0 ? undefined : bytes;
}

/**
 * `--ulimit NAME=SOFT[:HARD]` as docker's go-units ParseUlimit: docker's names only, hard
 * defaults to soft, -1 is unlimited, soft may not exceed a finite hard.
 */
export function parseUlimit(spec: string): Ulimit {
  const eq = spec.indexOf('=');
  const usage = (why: string, hint = 'use --ulimit NAME=SOFT[:HARD], e.g. --ulimit nofile=1024:2048 (-1 is unlimited)') =>
    new TsbuildError('USAGE', `invalid --ulimit ${JSON.stringify(spec)}: ${why}`, { hint });
  if (eq < 0) throw usage('no "=" between the name and the limits');
  const name = spec.slice(0, eq);
  if (!Object.hasOwn(ULIMIT_NAMES, name)) throw usage(`unknown limit ${JSON.stringify(name)}`, `the names docker takes: ${Object.keys(ULIMIT_NAMES).join(', ')}`);
  const parts = spec.slice(eq + 1).split(':');
  if (parts.length > 2) throw usage('more than two values: only SOFT[:HARD]');
  const values = parts.map((p) => {
    if (!/^-?\d+$/.test(p)) throw usage(`${JSON.stringify(p)} is not an integer`);
    const n = Number(p);
    if (n < -1 || !Number.isSafeInteger(n)) throw usage(`${p} is out of range (-1 is unlimited)`);
    return n;
  });
  const soft = values[0] as number;
  const hard = values[1] ?? soft;
  if (hard !== -1 && (soft === -1 || soft > hard)) throw usage(`the soft limit ${soft === -1 ? 'unlimited' : soft} is above the hard limit ${hard}`);
  return { name: name as UlimitName, soft, hard };
}

/** The last limit of each name, sorted by name (a stable key). */
export function mergeUlimits(list: readonly Ulimit[]): Ulimit[] {
  const byName = new Map(list.map((u) => [u.name, u]));
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** `--allow` values (repeatable, comma-separated as buildx). */
export function parseAllow(list: readonly string[]): Set<Entitlement> {
  const out = new Set<Entitlement>();
  for (const item of list.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean)) {
    const e = ENTITLEMENTS.find((x) => x === item);
    if (!e) throw new TsbuildError('USAGE', `invalid --allow ${JSON.stringify(item)}: not an entitlement`, { hint: `the entitlements: ${ENTITLEMENTS.join(', ')}` });
    out.add(e);
  }
  return out;
}

/**
 * Cache key inputs of a RUN step. BuildKit keys an ExecOp on all of it but proxy variables,
 * extra hosts' IPs and mount selectors (ops/exec.go CacheMap): the /dev/shm tmpfs mount with
 * its size and Meta.Ulimit are in, so a step run with other limits is another step. Nothing
 * when the flags are not given, so a build without them keeps its keys. (The security mode
 * is already in the RUN's key text.)
 */
export function runResourcesKey(r: RunResources | undefined): string[] {
  const out: string[] = [];
  if (r?.shmSize !== undefined) out.push(`shm-size:${r.shmSize}`);
  if (r?.ulimits && r.ulimits.length > 0) out.push(`ulimits:${r.ulimits.map((u) => `${u.name}=${u.soft}:${u.hard}`).join(',')}`);
  return out;
}

/**
 * `RUN --security=insecure` needs `--allow security.insecure` (BuildKit's solver refuses the
 * build with "security.insecure is not allowed" otherwise); `sandbox` or none is the default.
 */
export function checkRunSecurity(security: string | undefined, allow: ReadonlySet<Entitlement> | undefined, location: SourceLocation): 'sandbox' | 'insecure' {
  if (security === undefined || security === 'sandbox') return 'sandbox';
  if (security !== 'insecure') throw new TsbuildError('DOCKERFILE_INSTRUCTION', `RUN --security=${security} is not valid`, { location, hint: 'use --security=sandbox or --security=insecure' });
  if (!allow?.has('security.insecure')) {
    throw new TsbuildError('DOCKERFILE_INSTRUCTION', 'security.insecure is not allowed', {
      location,
      hint: 'RUN --security=insecure runs the step with every capability: pass --allow security.insecure to grant it',
    });
  }
  return 'insecure';
}

/** The RunSpec fields of a step (only those set, so a runner sees its defaults otherwise). */
export function runSpecResources(r: RunResources | undefined, security: string | undefined): Pick<RunSpec, 'shmSize' | 'ulimits' | 'security'> {
  return {
    ...(r?.shmSize !== undefined ? { shmSize: r.shmSize } : {}),
    ...(r?.ulimits && r.ulimits.length > 0 ? { ulimits: r.ulimits } : {}),
    ...(security === 'insecure' ? { security: 'insecure' as const } : {}),
  };
}
