import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { TsbuildError, isTsbuildError, type SourceLocation } from '../errors.js';
import type { MountSource } from '../cache/index.js';
import type { RunMount } from '../plan/index.js';
import type { StepMount } from '../sandbox/index.js';
import { StoreLock, type Store } from '../store/index.js';
import { resolveInRoot } from './copy-sources.js';
import type { BuildSession } from './session.js';
import { writeHostsFile } from './extra-hosts.js';
import { makeSecretFile } from './secret-mount.js';
import { proxyAgent } from './ssh.js';
import type { BuildInputs } from './step.js';
import { digestTree } from './tree-digest.js';

/** A build secret: a file, or a value taken from the environment (`--secret id=,src=|env=`). */
export interface BuildSecret {
  readonly id: string;
  readonly file?: string;
  readonly value?: string;
}

export interface PreparedMounts {
  readonly mounts: StepMount[];
  /** Extra process environment (secret env=). Never logged, never in the key. */
  readonly env: string[];
  /** Mount targets, so empty mount points the runtime created never land in the layer. */
  readonly targets: string[];
  /** What the cache key must include (bind sources' identity). */
  readonly keyInputs: MountSource[];
  /**
   * Makes what only running the step needs (a bind mount of a stage's or an image's files,
   * unpacked): `mounts` is complete once it resolves. A cached step never calls it.
   */
  resolve(): Promise<void>;
  release(): void;
}

/** How long a step waits for a sharing=locked cache mount another build holds (BuildKit waits as long as it takes). */
const CACHE_LOCK_WAIT_MS = 24 * 60 * 60 * 1000;

/**
 * Holds the lock of cache mount `dir` (its own lock file next to it, the store lock's protocol:
 * other processes and steps of this one wait; a holder that died leaves a stale lock, taken
 * over) until the returned release is called. With `wait: false`, undefined when it is held.
 */
export async function holdCacheLock(dir: string, opts: { wait: boolean; signal?: AbortSignal | undefined }): Promise<(() => void) | undefined> {
  const lock = new StoreLock(`${dir}.lock`, { timeoutMs: opts.wait ? CACHE_LOCK_WAIT_MS : 0 });
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  try {
    await new Promise<void>((acquired, failed) => {
      lock.withLock(async () => {
        acquired();
        await released;
      }, { signal: opts.signal }).catch(failed);
    });
  } catch (e) {
    if (!opts.wait && isTsbuildError(e) && e.code === 'STORE_LOCKED') return undefined;
    throw e;
  }
  return release;
}

/** Cache mounts live in the store, one directory per id, kept between builds. */
export function cacheDir(store: Store, id: string): string {
  return path.join(store.root, 'cache-mounts', createHash('sha256').update(id).digest('hex').slice(0, 32));
}

/** What the mounts prepared so far hold (filled in order, freed by `release`). */
interface MountsBuilder {
  readonly mounts: StepMount[];
  readonly env: string[];
  readonly targets: string[];
  readonly keyInputs: MountSource[];
  readonly releases: Array<() => void>;
  /** Work left for PreparedMounts.resolve, each filling the mount it reserved. */
  readonly late: Array<() => Promise<void>>;
  /** ssh mounts seen so far, present or not (BuildKit's default target counts them all). */
  sshIndex: number;
}

interface MountContext {
  readonly session: BuildSession;
  readonly inputs: BuildInputs;
  readonly location: SourceLocation;
}

/**
 * Turns the RUN step's --mount list into sandbox mounts (reference: "RUN --mount"):
 * cache (persistent per id in the store; sharing=locked serialises steps of this process),
 * bind (from the context or a stage, read-only unless rw, where writes go to a throwaway
 * copy), tmpfs, and secret (a read-only file or an env variable; never in a layer, a key or
 * a log), and ssh (a proxy socket to the agent given with --ssh; SSH_AUTH_SOCK points at the
 * first). Cache sharing as BuildKit: shared (the default) lets every step in; locked makes a
 * second step wait until the first is done, also across tsbuild processes on one store;
 * private gives a second concurrent step a fresh, throwaway directory instead of waiting.
 */
export async function prepareMounts(list: readonly RunMount[], session: BuildSession, inputs: BuildInputs, location: SourceLocation): Promise<PreparedMounts> {
  const b: MountsBuilder = { mounts: [], env: [], targets: [], keyInputs: [], releases: [], late: [], sshIndex: 0 };
  const releaseAll = (): void => {
    for (const r of b.releases) r();
  };
  const ctx: MountContext = { session, inputs, location };
  try {
    for (const m of list) {
      switch (m.type) {
        case 'cache':
          await cacheMount(m, b, ctx);
          break;
        case 'tmpfs':
          if (!m.target) throw invalid(ctx, 'tmpfs mount needs a target');
          b.mounts.push({ type: 'tmpfs', target: m.target, readonly: false });
          b.targets.push(m.target);
          break;
        case 'bind':
          await bindMount(m, b, ctx);
          break;
        case 'secret':
          await secretMount(m, b, ctx);
          break;
        case 'ssh':
          await sshMount(m, b, ctx);
          break;
        default:
          m.type satisfies never;
      }
    }
    if (inputs.extraHosts && inputs.extraHosts.length > 0) {
      // Over the default /etc/hosts bind (runners mount the step's mounts after it).
      b.mounts.push({ type: 'bind', source: await writeHostsFile(inputs.extraHosts, await session.tempDir('mount')), target: '/etc/hosts', readonly: true });
      b.keyInputs.push({ kind: 'extra-hosts', hosts: inputs.extraHosts });
    }
  } catch (e) {
    // A later mount failed: free what the earlier ones took (locks, agent proxies).
    releaseAll();
    throw e;
  }
  let resolved: Promise<void> | undefined;
  const resolve = (): Promise<void> =>
    (resolved ??= (async () => {
      for (const task of b.late) await task();
    })());
  return { mounts: b.mounts, env: b.env, targets: b.targets, keyInputs: b.keyInputs, resolve, release: releaseAll };
}

function invalid(ctx: MountContext, msg: string, hint?: string): TsbuildError {
  return new TsbuildError('DOCKERFILE_INSTRUCTION', msg, { location: ctx.location, ...(hint ? { hint } : {}) });
}

async function cacheMount(m: RunMount, b: MountsBuilder, ctx: MountContext): Promise<void> {
  const { session } = ctx;
  const target = m.target;
  if (!target) throw invalid(ctx, 'cache mount needs a target');
  const id = m.id ?? target;
  // The first RUN of the build that mounts the id brings an imported copy in when the local
  // one is absent or empty (--cache-from carrying it); the others wait for that.
  let restored = session.cacheMounts.get(id);
  if (restored === undefined) {
    restored = import('./cache-mount-blob.js').then((b) => b.importCacheMount(session, id));
    session.cacheMounts.set(id, restored);
  }
  await restored;
  let dir = cacheDir(session.store, id);
  await fsp.mkdir(path.dirname(dir), { recursive: true });
  if (m.sharing === 'locked' || m.sharing === 'private') {
    const release = await holdCacheLock(dir, { wait: m.sharing === 'locked', signal: session.signal });
    if (release) b.releases.push(release);
    else dir = await session.tempDir('mount'); // private, and another step has it now
  }
  const fresh = await fsp.mkdir(dir, { recursive: true, mode: m.mode ?? 0o755 });
  if (fresh !== undefined) {
    await fsp.chmod(dir, m.mode ?? 0o755);
    await (await session.hostFs()).chown(dir, m.uid ?? 0, m.gid ?? 0, session.signal);
  }
  b.mounts.push({ type: 'bind', source: dir, target, readonly: m.readOnly });
  b.targets.push(target);
}

async function bindMount(m: RunMount, b: MountsBuilder, ctx: MountContext): Promise<void> {
  const { session, inputs, location } = ctx;
  if (!m.target) throw invalid(ctx, 'bind mount needs a target');
  const from = m.from ?? { kind: 'context' as const };
  let rootDir: string;
  // The main context and directory named contexts: confined, keyed by content.
  let isContext = from.kind === 'context';
  if (from.kind === 'context') {
    rootDir = inputs.contextDir;
  } else {
    // A stage or an image is keyed by its state: its files are unpacked only if the step runs.
    const state = await session.sourceState(from, location);
    if (state !== undefined) {
      b.keyInputs.push({ kind: 'bind-state', key: state.key });
      const target = m.target;
      const at = b.mounts.length;
      b.mounts.push({ type: 'bind', source: '', target, readonly: m.readOnly });
      b.targets.push(target);
      b.late.push(async () => {
        const s = await session.sourceRoot(from, location);
        b.mounts[at] = { type: 'bind', source: (await bindSource(m, s.root.dir, false, ctx)).path, target, readonly: m.readOnly };
      });
      return;
    }
    const s = await session.sourceRoot(from, location);
    rootDir = s.root.dir;
    isContext = s.root.kind === 'context';
    if (!isContext) b.keyInputs.push({ kind: 'bind-state', key: s.key });
  }
  const rel = (m.source ?? '').replace(/^\/+/, '');
  const source = await bindSource(m, rootDir, isContext, ctx);
  // BuildKit keys a bind mount on the content it exposes: so do we.
  if (isContext) b.keyInputs.push({ kind: 'bind-context', path: from.kind === 'image' ? `${from.ref}:${rel}` : rel, digest: await digestTree(source.original, inputs.digests, session.signal) });
  b.mounts.push({ type: 'bind', source: source.path, target: m.target, readonly: m.readOnly });
  b.targets.push(m.target);
}

/**
 * The host path a bind mount shows: its source inside `rootDir` (a stage's or image's symlinks
 * resolve inside that root, a context's stay confined to it); for a read-write mount, a private
 * copy (writes are discarded after the step, as in BuildKit). `original` is the source itself.
 */
async function bindSource(m: RunMount, rootDir: string, isContext: boolean, ctx: MountContext): Promise<{ path: string; original: string }> {
  const rel = (m.source ?? '').replace(/^\/+/, '');
  const src = await resolveInRoot(rootDir, rel, true, () => `RUN --mount=type=bind,source=${m.source ?? ''}`, { chroot: !isContext });
  if (src === undefined) throw invalid(ctx, `bind mount source ${JSON.stringify(m.source ?? '/')} not found`);
  if (m.readOnly) return { path: src, original: src };
  const copy = await ctx.session.tempDir('mount');
  await fsp.cp(src, path.join(copy, 'x'), { recursive: true, verbatimSymlinks: true });
  return { path: path.join(copy, 'x'), original: src };
}

async function secretMount(m: RunMount, b: MountsBuilder, ctx: MountContext): Promise<void> {
  const id = m.id ?? (m.target ? path.posix.basename(m.target) : undefined);
  if (!id) throw invalid(ctx, 'secret mount needs an id or a target');
  const secret = ctx.inputs.secrets.get(id);
  if (!secret) {
    if (m.required) throw invalid(ctx, `secret ${JSON.stringify(id)} is required but was not given`, `pass it with --secret id=${id},src=FILE or --secret id=${id},env=VAR`);
    return;
  }
  if (m.env !== undefined) {
    const value = secret.value ?? (secret.file ? await fsp.readFile(secret.file, 'utf8') : '');
    b.env.push(`${m.env}=${value}`);
    if (m.target === undefined) return;
  }
  // A private copy, 0400 root unless mode=/uid=/gid= (secret-mount.ts).
  const { file, release } = await makeSecretFile(secret, { mode: m.mode, uid: m.uid, gid: m.gid, hostFs: await ctx.session.hostFs() });
  b.releases.push(release);
  const target = m.target ?? `/run/secrets/${id}`;
  b.mounts.push({ type: 'bind', source: file, target, readonly: true });
  b.targets.push(target);
}

async function sshMount(m: RunMount, b: MountsBuilder, ctx: MountContext): Promise<void> {
  const id = m.id ?? 'default';
  const upstream = ctx.inputs.sshSockets?.get(id);
  // BuildKit's default target counts every ssh mount of the step, present or not.
  const target = m.target ?? `/run/buildkit/ssh_agent.${b.sshIndex}`;
  b.sshIndex++;
  if (upstream === undefined) {
    if (m.required) throw invalid(ctx, `ssh agent ${JSON.stringify(id)} is required but was not given`, `pass it with --ssh ${id} (uses $SSH_AUTH_SOCK) or --ssh ${id}=/path/to/agent.sock`);
    return;
  }
  // Not under the store: the sandbox resolves a bind source as the step's USER, and the
  // store usually sits in a home directory closed to other users. The proxy socket's own
  // mode and owner decide who may use it.
  // Named for its owner, so that a later build sweeps it away if tsbuild was SIGKILLed.
  const dir = await (await import('../sandbox/index.js')).makeStepDir('agent');
  let stop: (() => void) | undefined;
  b.releases.push(() => {
    stop?.();
    rmSync(dir, { recursive: true, force: true });
  });
  await fsp.chmod(dir, 0o711);
  // An unguessable name in a directory nobody else can list: other host users cannot
  // reach the socket even where its mode has to be open (below).
  const sock = path.join(dir, `${randomBytes(16).toString('hex')}.sock`);
  const uid = m.uid ?? 0;
  const gid = m.gid ?? 0;
  let mode = m.mode ?? 0o600;
  // As an ordinary user tsbuild cannot give the socket to another ID of the namespace:
  // open it to everyone in the sandbox instead, so uid=/gid= still reach the agent.
  if ((await ctx.session.hostFs()).kind !== 'root' && (uid !== 0 || gid !== 0)) mode |= 0o666;
  stop = await proxyAgent(upstream, sock, mode, uid, gid);
  if (!b.env.some((e) => e.startsWith('SSH_AUTH_SOCK='))) b.env.push(`SSH_AUTH_SOCK=${target}`);
  b.mounts.push({ type: 'bind', source: sock, target, readonly: false });
  b.targets.push(target);
}
