import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TsbuildError, isAbortError } from '../errors.js';
import { applyLayer, type LayerEntry } from '../layer/index.js';
import { isDigest, type Digest } from '../oci/index.js';
import { hostToContainer, probeSandbox, runInUserNamespace, type SandboxCapabilities } from '../sandbox/index.js';
import { removeTreeDefault, type Store } from '../store/index.js';
import type { StoredLayer } from '../image/index.js';
import { writeLayerToStore } from './store-layer.js';

/**
 * How tsbuild touches trees of image files on the host (DESIGN.md "Rootless"), chosen once per
 * process from who runs it and what the host allows:
 *  - `root`: directly, owners kept as the layers record them;
 *  - `user-namespace` (an ordinary user with a subordinate ID range): inside the build's user
 *    namespace, where the layers' owners are real (copy-up of a file whose owner is not mapped
 *    fails with EOVERFLOW) and files of other IDs with mode 0600 can be read and removed; on the
 *    host those files show as subordinate IDs;
 *  - `unprivileged` (an ordinary user without a user namespace): directly, every file the user's.
 */
export interface HostFilesystem {
  readonly kind: 'root' | 'user-namespace' | 'unprivileged';
  /**
   * Applies a stored layer onto `dir` (whiteouts honoured, nothing written outside it). `dir` is
   * a temporary tree of the caller's that nobody else reads until the caller keeps it whole
   * (renames it into place, runs a step on it) or removes it whole: a failed apply may leave
   * a file half-written in it (ApplyLayerOptions.privateRoot).
   */
  unpackLayer(store: Store, diffId: Digest, dir: string, signal?: AbortSignal): Promise<void>;
  /** Removes a tree this capability made (also one holding files of subordinate IDs). */
  removeTree(dir: string, signal?: AbortSignal): Promise<void>;
  /** Writes a layer of files read from this capability's trees into the store. */
  writeLayer(store: Store, entries: readonly HostLayerEntry[], opts: { readonly sourceDateEpoch?: number | undefined; readonly signal?: AbortSignal | undefined }): Promise<StoredLayer>;
  /** Gives `dir` to the container's `uid:gid` (a fresh cache mount, a secret file). */
  chown(dir: string, uid: number, gid: number, signal?: AbortSignal): Promise<void>;
  /** The image owner of a file this capability unpacked, from its owner on the host. */
  imageOwner(uid: number, gid: number): { uid: number; gid: number };
}

/** A layer entry whose file content, if any, is read from a host path (`sourcePath`). */
export type HostLayerEntry = Omit<LayerEntry, 'source'>;

const chosen = new Map<string, Promise<HostFilesystem>>();

/**
 * The host filesystem capability of this process: root, else probed (once per tool PATH). A
 * failed probe leaves an ordinary user `unprivileged`, as before the probe existed.
 */
export function hostFilesystem(opts: { readonly toolPath?: string | undefined; readonly signal?: AbortSignal | undefined } = {}): Promise<HostFilesystem> {
  if (process.getuid?.() === 0) return Promise.resolve(ROOT);
  const key = opts.toolPath ?? '';
  let p = chosen.get(key);
  if (!p) {
    const fresh = probeSandbox({ signal: opts.signal, path: opts.toolPath })
      .catch((e: unknown) => {
        if (isAbortError(e)) throw e;
        return undefined;
      })
      .then((caps) => (caps ? hostFilesystemFor(caps) : UNPRIVILEGED));
    p = fresh;
    chosen.set(key, fresh);
    // A cancelled probe is not remembered.
    fresh.catch(() => {
      if (chosen.get(key) === fresh) chosen.delete(key);
    });
  }
  return p;
}

/** The capability that goes with already probed capabilities (what a RUN step runs with). */
function hostFilesystemFor(caps: SandboxCapabilities): HostFilesystem {
  if (caps.isRoot) return ROOT;
  return caps.userNamespaces.ok && caps.idMapping.kind !== 'identity' ? userNamespaceFs(caps) : UNPRIVILEGED;
}

function directFs(kind: 'root' | 'unprivileged'): HostFilesystem {
  return {
    kind,
    async unpackLayer(store, diffId, dir, signal) {
      await applyLayer(await store.blobs.openBlob(diffId, { signal }), dir, { sameOwner: kind === 'root', privateRoot: true, ...(signal ? { signal } : {}) });
    },
    removeTree: (dir, signal) => removeTreeDefault(dir, signal),
    writeLayer: (store, entries, opts) => writeLayerToStore(store, entries, opts),
    async chown(dir, uid, gid, signal) {
      if (kind === 'root') await fsp.chown(dir, uid, gid);
      // Without a user namespace the container's IDs do not exist: the same error as with one
      // that cannot be entered.
      else if (uid !== 0 || gid !== 0) await chownInNamespace(await probeSandbox({ signal }), dir, uid, gid, signal);
    },
    imageOwner: (uid, gid) => ({ uid, gid }),
  };
}

const ROOT = directFs('root');
const UNPRIVILEGED = directFs('unprivileged');

const WORKER = fileURLToPath(new URL('./namespace-worker.js', import.meta.url));

function userNamespaceFs(caps: SandboxCapabilities): HostFilesystem {
  const map = caps.idMapping;
  return {
    kind: 'user-namespace',
    async unpackLayer(store, diffId, dir, signal) {
      await worker(caps, ['unpack', store.blobs.blobPath(diffId), dir], signal);
    },
    removeTree: userNamespaceRemoveTree(caps),
    writeLayer: (store, entries, opts) => writeLayerInNamespace(caps, store, entries, opts.sourceDateEpoch, opts.signal),
    async chown(dir, uid, gid, signal) {
      // The directory is the user's, which is container root already.
      if (uid !== 0 || gid !== 0) await chownInNamespace(caps, dir, uid, gid, signal);
    },
    imageOwner: (uid, gid) => ({ uid: hostToContainer(map.uids, uid) ?? 0, gid: hostToContainer(map.gids, gid) ?? 0 }),
  };
}

async function chownInNamespace(caps: SandboxCapabilities, dir: string, uid: number, gid: number, signal?: AbortSignal): Promise<void> {
  const err: Buffer[] = [];
  const r = await runInUserNamespace('chown', [`${uid}:${gid}`, '--', dir], { capabilities: caps, ...(signal ? { signal } : {}), stderr: (c) => err.push(c) });
  if (r.exitCode !== 0) {
    throw new TsbuildError('SANDBOX_FAILED', `cannot give ${dir} to the container's ${uid}:${gid}: ${Buffer.concat(err).toString('utf8').trim()}`, {
      hint: 'the IDs must be inside the subordinate range of /etc/subuid and /etc/subgid',
    });
  }
}

async function worker(caps: SandboxCapabilities, args: readonly string[], signal?: AbortSignal): Promise<string> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const r = await runInUserNamespace(process.execPath, [WORKER, ...args], { capabilities: caps, ...(signal ? { signal } : {}), stdout: (c) => out.push(c), stderr: (c) => err.push(c) });
  if (r.exitCode !== 0) {
    throw new TsbuildError('SANDBOX_FAILED', `${args[0]} in the user namespace failed: ${Buffer.concat(err).toString('utf8').trim() || `exit ${r.exitCode}`}`);
  }
  return Buffer.concat(out).toString('utf8');
}

/**
 * Writes a layer inside the user namespace (it reads files only the namespace can read)
 * straight into the store: the worker hashes the tar as it writes the blob (putChunks), and the
 * blob it names must be in the store with the size it reports.
 */
async function writeLayerInNamespace(caps: SandboxCapabilities, store: Store, entries: readonly HostLayerEntry[], epoch: number | undefined, signal?: AbortSignal): Promise<StoredLayer> {
  const dir = await store.makeTempDir('nslayer');
  try {
    const list = path.join(dir, 'entries.json');
    const serial = entries.map(({ xattrs, ...e }) => (xattrs ? { ...e, xattrs: Object.fromEntries(Object.entries(xattrs).map(([k, v]) => [k, v.toString('base64')])) } : e));
    await fsp.writeFile(list, JSON.stringify({ entries: serial, ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}) }));
    const reported = JSON.parse(await worker(caps, ['write-layer', list, store.root], signal)) as { diffId: unknown; size: unknown };
    if (typeof reported.diffId !== 'string' || !isDigest(reported.diffId) || (await store.blobs.statBlob(reported.diffId))?.size !== reported.size) {
      throw new TsbuildError('SANDBOX_FAILED', `the layer written in the user namespace, ${String(reported.diffId)} (${String(reported.size)} bytes), is not in the store`);
    }
    return { diffId: reported.diffId, size: reported.size as number };
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

let anyOwnerCaps: Promise<SandboxCapabilities> | undefined;

/**
 * The store's tree remover for an ordinary user (OpenStoreOptions.removeTree): fs.rm first
 * (what the user owns), and where that is refused (snapshots and cache mounts hold files of
 * subordinate IDs, made by rootless steps) rm -rf inside a user namespace of the user's range,
 * where those IDs are the user's own. The sandbox is probed only then, once per process. As
 * root, plain fs.rm.
 */
export async function removeTreeAnyOwner(dir: string, signal?: AbortSignal): Promise<void> {
  try {
    await removeTreeDefault(dir, signal);
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (process.getuid?.() === 0 || (code !== 'EACCES' && code !== 'EPERM')) throw e;
  }
  anyOwnerCaps ??= probeSandbox({ signal });
  const caps = await anyOwnerCaps;
  if (!caps.userNamespaces.ok) {
    throw new TsbuildError('STORE_IO', `cannot remove ${dir}: it holds files of other user IDs (from rootless RUN steps), and no user namespace is available to remove them`, {
      hint: caps.userNamespaces.hint ?? 'remove it as root',
    });
  }
  await userNamespaceRemoveTree(caps)(dir, signal);
}

/**
 * `rm -rf` inside the user namespace, where directories owned by subordinate IDs and overlay's
 * mode-000 work/work directory are removable.
 */
function userNamespaceRemoveTree(caps: SandboxCapabilities): (dir: string, signal?: AbortSignal) => Promise<void> {
  return async (dir, signal) => {
    const err: Buffer[] = [];
    const r = await runInUserNamespace('rm', ['-rf', '--', dir], { capabilities: caps, ...(signal ? { signal } : {}), stderr: (c) => err.push(c) });
    if (r.exitCode !== 0) throw new TsbuildError('STORE_IO', `cannot remove ${dir} in the user namespace: ${Buffer.concat(err).toString('utf8').trim()}`);
  };
}
