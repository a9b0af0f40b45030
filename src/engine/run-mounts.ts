import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { TsbuildError, isTsbuildError, type SourceLocation } from '../errors.js';
import type { RunMount, SourceRef } from '../plan/index.js';
import type { StepMount } from '../sandbox/index.js';
import { StoreLock, type Store } from '../store/index.js';
import { resolveInRoot } from './copy-sources.js';
import { makeSecretFile } from './secret-mount.js';
import { proxyAgent } from './ssh.js';
import { extraHostsKey, writeHostsFile, type ExtraHost } from './extra-hosts.js';
import type { RunResources } from './run-resources.js';

/** A build secret: a file, or a value taken from the environment (`--secret id=,src=|env=`). */
export interface BuildSecret {
  readonly id: string;
  readonly file?: string;
  readonly value?: string;
}

export interface MountEnv {
  readonly store: Store;
  readonly contextDir: string;
  readonly secrets: ReadonlyMap<string, BuildSecret>;
  /** `--ssh`: host agent sockets per id, for RUN --mount=type=ssh. */
  readonly sshSockets?: ReadonlyMap<string, string>;
  /** The files of a stage or image on disk (materialized once per build). */
  sourceDir(from: SourceRef, location: SourceLocation): Promise<{ dir: string; key: string | undefined }>;
  tempDir(): Promise<string>;
  /** Content digest of a file tree (for the cache key of bind mounts). */
  digestTree(dir: string): Promise<string>;
  /** Cancels waiting for a cache mount that another step holds (sharing=locked). */
  readonly signal?: AbortSignal | undefined;
  /**
   * chown to container IDs, for an ordinary user: done inside the build's user namespace,
   * where the container's IDs exist (the host user cannot chown to its subordinate IDs).
   */
  readonly chownInContainer?: ((dir: string, uid: number, gid: number) => Promise<void>) | undefined;
  /** `--add-host`: entries every RUN step finds in its /etc/hosts. */
  readonly extraHosts?: readonly ExtraHost[] | undefined;
  /** `--shm-size`, `--ulimit`, `--allow`: what every RUN step runs with (run-resources.ts). */
  readonly runResources?: RunResources | undefined;
}

export interface PreparedMounts {
  readonly mounts: StepMount[];
  /** Extra process environment (secret env=). Never logged, never in the key. */
  readonly env: string[];
  /** Mount targets, so empty mount points the runtime created never land in the layer. */
  readonly targets: string[];
  /** What the cache key must include (bind sources' identity). */
  readonly keyInputs: string[];
  release(): void;
}

/** How long a step waits for a sharing=locked cache mount another build holds (BuildKit waits as long as it takes). */
const CACHE_LOCK_WAIT_MS = 24 * 60 * 60 * 1000;

/**
 * Holds the lock of cache mount `dir` (its own lock file next to it, the store lock's protocol:
 * other processes and steps of this one wait; a holder that died leaves a stale lock, taken
 * over) until the returned release is called. With `wait: false`, undefined when it is held.
 */
async function holdCacheLock(dir: string, opts: { wait: boolean; signal?: AbortSignal | undefined }): Promise<(() => void) | undefined> {
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
function cacheDir(store: Store, id: string): string {
  return path.join(store.root, 'cache-mounts', createHash('sha256').update(id).digest('hex').slice(0, 32));
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
export async function prepareMounts(list: readonly RunMount[], env: MountEnv, location: SourceLocation): Promise<PreparedMounts> {
  const mounts: StepMount[] = [];
  const extraEnv: string[] = [];
  const targets: string[] = [];
  const keyInputs: string[] = [];
  const releases: Array<() => void> = [];
  let sshIndex = 0;
  const fail = (msg: string, hint?: string) => new TsbuildError('DOCKERFILE_INSTRUCTION', msg, { location, ...(hint ? { hint } : {}) });
  const releaseAll = (): void => {
    for (const r of releases) r();
  };
  try {
    await addMounts();
    if (env.extraHosts && env.extraHosts.length > 0) {
      // Over the default /etc/hosts bind (runners mount the step's mounts after it).
      mounts.push({ type: 'bind', source: await writeHostsFile(env.extraHosts, await env.tempDir()), target: '/etc/hosts', readonly: true });
      keyInputs.push(extraHostsKey(env.extraHosts));
    }
  } catch (e) {
    // A later mount failed: free what the earlier ones took (locks, agent proxies).
    releaseAll();
    throw e;
  }
  return { mounts, env: extraEnv, targets, keyInputs, release: releaseAll };

  async function addMounts(): Promise<void> {
    for (const m of list) {
      switch (m.type) {
        case 'cache': {
          const target = m.target;
          if (!target) throw fail('cache mount needs a target');
          const id = m.id ?? target;
          let dir = cacheDir(env.store, id);
          await fsp.mkdir(path.dirname(dir), { recursive: true });
          if (m.sharing === 'locked' || m.sharing === 'private') {
            const release = await holdCacheLock(dir, { wait: m.sharing === 'locked', signal: env.signal });
            if (release) releases.push(release);
            else dir = await env.tempDir(); // private, and another step has it now
          }
          const fresh = await fsp.mkdir(dir, { recursive: true, mode: m.mode ?? 0o755 });
          if (fresh !== undefined) {
            await fsp.chmod(dir, m.mode ?? 0o755);
            const uid = m.uid ?? 0;
            const gid = m.gid ?? 0;
            if (process.getuid?.() === 0) await fsp.chown(dir, uid, gid);
            // As an ordinary user the directory is the user's, which is container root.
            else if ((uid !== 0 || gid !== 0) && env.chownInContainer) await env.chownInContainer(dir, uid, gid);
          }
          mounts.push({ type: 'bind', source: dir, target, readonly: m.readOnly });
          targets.push(target);
          break;
        }
        case 'tmpfs':
          if (!m.target) throw fail('tmpfs mount needs a target');
          mounts.push({ type: 'tmpfs', target: m.target, readonly: false });
          targets.push(m.target);
          break;
        case 'bind': {
          if (!m.target) throw fail('bind mount needs a target');
          const from = m.from ?? { kind: 'context' as const };
          let rootDir: string;
          if (from.kind === 'context') {
            rootDir = env.contextDir;
          } else {
            const s = await env.sourceDir(from, location);
            rootDir = s.dir;
            keyInputs.push(`bind-from:${s.key ?? 'scratch'}`);
          }
          const rel = (m.source ?? '').replace(/^\/+/, '');
          // A stage's or image's symlinks resolve inside that root, the context's stay confined to it.
          const src = await resolveInRoot(rootDir, rel, true, () => `RUN --mount=type=bind,source=${m.source ?? ''}`, { chroot: from.kind !== 'context' });
          if (src === undefined) throw fail(`bind mount source ${JSON.stringify(m.source ?? '/')} not found`);
          let source = src;
          if (!m.readOnly) {
            // Writes to a rw bind mount are discarded after the step, as in BuildKit.
            const copy = await env.tempDir();
            await fsp.cp(src, path.join(copy, 'x'), { recursive: true, verbatimSymlinks: true });
            source = path.join(copy, 'x');
          }
          // BuildKit keys a bind mount on the content it exposes: so do we.
          if (from.kind === 'context') keyInputs.push(`bind-context:${rel}:${await env.digestTree(src)}`);
          mounts.push({ type: 'bind', source, target: m.target, readonly: m.readOnly });
          targets.push(m.target);
          break;
        }
        case 'secret': {
          const id = m.id ?? (m.target ? path.posix.basename(m.target) : undefined);
          if (!id) throw fail('secret mount needs an id or a target');
          const secret = env.secrets.get(id);
          if (!secret) {
            if (m.required) throw fail(`secret ${JSON.stringify(id)} is required but was not given`, `pass it with --secret id=${id},src=FILE or --secret id=${id},env=VAR`);
            break;
          }
          if (m.env !== undefined) {
            const value = secret.value ?? (secret.file ? await fsp.readFile(secret.file, 'utf8') : '');
            extraEnv.push(`${m.env}=${value}`);
            if (m.target === undefined) break;
          }
          // A private copy, 0400 root unless mode=/uid=/gid= (secret-mount.ts).
          const { file, release } = await makeSecretFile(secret, { mode: m.mode, uid: m.uid, gid: m.gid, chownInContainer: env.chownInContainer });
          releases.push(release);
          const target = m.target ?? `/run/secrets/${id}`;
          mounts.push({ type: 'bind', source: file, target, readonly: true });
          targets.push(target);
          break;
        }
        case 'ssh': {
          const id = m.id ?? 'default';
          const upstream = env.sshSockets?.get(id);
          // BuildKit's default target counts every ssh mount of the step, present or not.
          const target = m.target ?? `/run/buildkit/ssh_agent.${sshIndex}`;
          sshIndex++;
          if (upstream === undefined) {
            if (m.required) throw fail(`ssh agent ${JSON.stringify(id)} is required but was not given`, `pass it with --ssh ${id} (uses $SSH_AUTH_SOCK) or --ssh ${id}=/path/to/agent.sock`);
            break;
          }
          // Not under the store: the sandbox resolves a bind source as the step's USER, and the
          // store usually sits in a home directory closed to other users. The proxy socket's own
          // mode and owner decide who may use it.
          // Named for its owner, so that a later build sweeps it away if tsbuild was SIGKILLed.
          const dir = await (await import('../sandbox/step-dir.js')).makeStepDir('agent');
          let stop: (() => void) | undefined;
          releases.push(() => {
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
          if (process.getuid?.() !== 0 && (uid !== 0 || gid !== 0)) mode |= 0o666;
          stop = await proxyAgent(upstream, sock, mode, uid, gid);
          if (!extraEnv.some((e) => e.startsWith('SSH_AUTH_SOCK='))) extraEnv.push(`SSH_AUTH_SOCK=${target}`);
          mounts.push({ type: 'bind', source: sock, target, readonly: false });
          targets.push(target);
          break;
        }
        default:
          m.type satisfies never;
      }
    }
  }
}
