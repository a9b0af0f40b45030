import { mkdirSync, readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { chmod, mkdir, readdir, rename, rm, stat, utimes } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { TsbuildError } from '../errors.js';
import { canonicalJson, digestHex, isDigest, type Descriptor, type Digest } from '../oci/index.js';
import { createFileIfAbsent, errnoCode, fsyncDir, storeIoError, tempPath, writeFileAtomic, writeSmallFileAtomic } from './atomic-file.js';
import { BlobStore } from './blob-store.js';
import {
  assertRefName,
  emptyLayoutIndex,
  readLayoutIndex,
  refNameOf,
  serializeLayoutIndex,
  type LayoutIndex,
} from './layout-index.js';
import { StoreLock, type LockOptions } from './lock.js';
import { LAYOUT_VERSION, storePaths, type StorePaths } from './store-layout.js';
import { REF_NAME_ANNOTATION } from './types.js';

export interface OpenStoreOptions {
  /** Default wait for the store lock before STORE_LOCKED. 60 s. */
  readonly lockTimeoutMs?: number;
  readonly signal?: AbortSignal | undefined;
  /**
   * Removes a directory tree (snapshots, leftover temp dirs). The default is `fs.rm` with a
   * chmod pass for read-only directories. Snapshots extracted inside a user namespace are
   * owned by subordinate IDs the host user cannot delete; the sandbox layer passes a remover
   * that runs inside the namespace (DESIGN.md "Rootless").
   */
  readonly removeTree?: (path: string, signal?: AbortSignal) => Promise<void>;
}

export interface SignalOption {
  readonly signal?: AbortSignal | undefined;
}

/**
 * Options of the meta/ documents. `memo`: the document is a memo of facts that can be found
 * again (which compressed blob a layer has, which registries hold it, the digests registries
 * know an image by): it is replaced by rename without fsync, and read as absent when it does not
 * parse (a crash of the machine can leave a file renamed before its bytes reached the disk).
 * Losing one costs a compression or an upload again, never a wrong result. A push wrote five
 * such records at two fsyncs each after its uploads: ~15 ms of a 1 MB image's 0.17 s push.
 */
export interface MetaOptions extends SignalOption {
  readonly memo?: boolean | undefined;
}

/** A tag of the store: the full reference and the descriptor it points at. */
export interface TagEntry {
  readonly name: string;
  readonly descriptor: Descriptor;
}

/** meta/ names: file-name safe, lowercase, no path separators. */
const META_NAME_RE = /^[a-z0-9][a-z0-9._-]{0,127}$/;
/** Default cap for a meta/ document read into memory. */
const MAX_META_BYTES = 64 * 1024 * 1024;

/**
 * The local image store under one root directory; see store-layout.ts for the layout and the
 * reasons for it. Get one with `openStore`. Blob operations live on `store.blobs`.
 */
export class Store {
  readonly root: string;
  readonly paths: StorePaths;
  readonly blobs: BlobStore;
  readonly lock: StoreLock;
  readonly removeTree: (path: string, signal?: AbortSignal) => Promise<void>;

  /** Use openStore: it creates or checks the layout first. */
  constructor(root: string, opts: OpenStoreOptions = {}) {
    this.root = root;
    this.paths = storePaths(root);
    this.blobs = new BlobStore({ blobsDir: this.paths.blobs, tmpDir: this.paths.tmp });
    this.lock = new StoreLock(this.paths.lock, opts.lockTimeoutMs === undefined ? {} : { timeoutMs: opts.lockTimeoutMs });
    this.removeTree = opts.removeTree ?? removeTreeDefault;
  }

  /** Run `fn` holding the store's cross-process lock (lock.ts). Keep `fn` short. */
  withLock<T>(fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
    return this.lock.withLock(fn, opts);
  }

  // ---- tags (index.json) ----

  /** The current index.json, validated. Needs no lock: it is only ever replaced by rename. */
  readIndex(opts: SignalOption = {}): Promise<LayoutIndex> {
    return readLayoutIndex(this.paths.index, opts.signal);
  }

  /**
   * Point tag `name` (a full reference, e.g. docker.io/library/busybox:latest) at `desc`.
   * The blob must be in the store with the descriptor's size (BLOB_NOT_FOUND /
   * DIGEST_MISMATCH otherwise), so a tag never points at nothing. Replaces any previous
   * entry of that name.
   */
  async setTag(name: string, desc: Descriptor, opts: SignalOption = {}): Promise<void> {
    assertRefName(name);
    const entry = descriptorEntry(desc, name);
    await this.withLock(async () => {
      // Checked under the lock: gc, which could remove an unreferenced blob, runs under it too.
      const st = await this.blobs.statBlob(entry.digest);
      if (!st) {
        throw new TsbuildError('BLOB_NOT_FOUND', `cannot tag ${name}: blob ${entry.digest} is not in the store`, {
          hint: 'store the manifest blob before tagging it',
        });
      }
      if (st.size !== entry.size) {
        throw new TsbuildError('DIGEST_MISMATCH', `cannot tag ${name}: descriptor says ${entry.size} bytes, blob ${entry.digest} has ${st.size}`);
      }
      const index = await this.readIndex(opts);
      let placed = false;
      const manifests: Descriptor[] = [];
      for (const m of index.manifests) {
        if (refNameOf(m) !== name) manifests.push(m);
        else if (!placed) {
          manifests.push(entry);
          placed = true;
        }
      }
      if (!placed) manifests.push(entry);
      // Re-tagging with the same descriptor (an unchanged, fully cached rebuild) changes
      // nothing: the index is not rewritten and fsynced again.
      const same = manifests.length === index.manifests.length && manifests.every((m, i) => canonicalJson(m).equals(canonicalJson(index.manifests[i])));
      if (!same) await this.#writeIndex({ ...index, manifests }, opts.signal);
    }, opts);
  }

  /** The descriptor tagged `name`, or undefined. */
  async getTag(name: string, opts: SignalOption = {}): Promise<Descriptor | undefined> {
    const index = await this.readIndex(opts);
    return index.manifests.find((m) => refNameOf(m) === name);
  }

  /** Remove tag `name`; false if there was none. Blobs stay until gc. */
  async removeTag(name: string, opts: SignalOption = {}): Promise<boolean> {
    return this.withLock(async () => {
      const index = await this.readIndex(opts);
      const manifests = index.manifests.filter((m) => refNameOf(m) !== name);
      if (manifests.length === index.manifests.length) return false;
      await this.#writeIndex({ ...index, manifests }, opts.signal);
      return true;
    }, opts);
  }

  /** All tags, sorted by name. Entries without a ref name are not tags and are left out. */
  async listTags(opts: SignalOption = {}): Promise<TagEntry[]> {
    const index = await this.readIndex(opts);
    const out: TagEntry[] = [];
    for (const m of index.manifests) {
      const name = refNameOf(m);
      if (name !== undefined) out.push({ name, descriptor: m });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async #writeIndex(index: LayoutIndex, signal: AbortSignal | undefined): Promise<void> {
    await writeSmallFileAtomic(this.paths.index, serializeLayoutIndex(index), { tmpDir: this.paths.tmp, signal }).catch((e: unknown) => {
      throw storeIoError(e, 'update the store tags');
    });
  }

  // ---- temp files ----

  /** A fresh temp file path in tmp/ (not created). Owned by this process for gc purposes. */
  tempPath(kind = 'tmp'): string {
    return tempPath(this.paths.tmp, kind);
  }

  /**
   * A new empty directory under tmp/, for building a snapshot (then `commitSnapshot`) or any
   * scratch work. Same file system as the store, so committing it is one rename.
   */
  async makeTempDir(kind = 'dir'): Promise<string> {
    const dir = tempPath(this.paths.tmp, kind);
    await mkdir(dir, { mode: 0o755 });
    return dir;
  }

  // ---- snapshots ----

  /** Where the unpacked layer with this diff ID lives (whether or not it exists). */
  snapshotPath(diffId: Digest): string {
    // Named by hex only (the layout this store promises); a sha512 hex is 128 characters, so
    // it can never collide with a sha256 name, and listSnapshots tells them apart by length.
    return join(this.paths.snapshots, digestHex(diffId));
  }

  async hasSnapshot(diffId: Digest): Promise<boolean> {
    try {
      return statSync(this.snapshotPath(diffId)).isDirectory();
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return false;
      throw e;
    }
  }

  /**
   * Make `tmpDir` (from makeTempDir, fully written) the snapshot of `diffId` with one atomic
   * rename. If another writer committed the same diff ID first, ours is removed and
   * `committed` is false: equal diff IDs mean equal content.
   *
   * The caller is responsible for the content; the store does not fsync a tree (that would
   * cost more than re-extracting the layer). DEBT(#19): after a power loss a snapshot may be
   * incomplete; see index.ts.
   */
  async commitSnapshot(tmpDir: string, diffId: Digest, opts: SignalOption = {}): Promise<{ committed: boolean }> {
    const src = resolve(tmpDir);
    const rel = relative(this.paths.tmp, src);
    if (rel === '' || rel.startsWith('..') || rel.includes(sep)) {
      throw new TsbuildError('USAGE', `commitSnapshot: ${tmpDir} is not a direct child of ${this.paths.tmp}`, {
        hint: 'create the directory with store.makeTempDir() so the commit is a same-file-system rename',
      });
    }
    opts.signal?.throwIfAborted();
    const dest = this.snapshotPath(diffId);
    try {
      await rename(src, dest);
    } catch (e) {
      const code = errnoCode(e);
      if (code === 'ENOTEMPTY' || code === 'EEXIST') {
        await this.removeTree(src, opts.signal);
        return { committed: false };
      }
      throw e;
    }
    // gc keeps young snapshots (a build commits them before it tags anything); rename(2)
    // keeps the old mtime, so mark the commit time.
    const now = new Date();
    await utimes(dest, now, now);
    await fsyncDir(this.paths.snapshots);
    return { committed: true };
  }

  /**
   * Remove a snapshot; false if there was none. It disappears atomically (renamed into tmp/
   * first), then the tree is deleted; if deleting fails, gc retries once this process is gone.
   */
  async removeSnapshot(diffId: Digest, opts: SignalOption = {}): Promise<boolean> {
    const trash = tempPath(this.paths.tmp, 'trash');
    try {
      await rename(this.snapshotPath(diffId), trash);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return false;
      throw e;
    }
    await this.removeTree(trash, opts.signal);
    return true;
  }

  /** Diff IDs of all snapshots, sorted. */
  async listSnapshots(): Promise<Digest[]> {
    let names: string[];
    try {
      names = await readdir(this.paths.snapshots);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return [];
      throw e;
    }
    const out: Digest[] = [];
    for (const name of names) {
      const d = name.length === 128 ? `sha512:${name}` : `sha256:${name}`;
      if (isDigest(d)) out.push(d);
    }
    return out.sort();
  }

  // ---- meta ----

  /** The JSON document meta/<name>.json, or undefined if absent. Caller validates the shape. */
  async readMeta(name: string, opts: MetaOptions & { readonly maxBytes?: number } = {}): Promise<unknown> {
    opts.signal?.throwIfAborted();
    const path = this.#metaPath(name);
    const max = opts.maxBytes ?? MAX_META_BYTES;
    let text: string;
    try {
      // Synchronous (atomic-file.ts): meta/ documents are small, and a cached build reads two per step.
      const st = statSync(path);
      if (st.size > max) {
        throw new TsbuildError('BLOB_TOO_LARGE', `${path} is ${st.size} bytes, more than the ${max} allowed`);
      }
      text = readFileSync(path, 'utf8');
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return undefined;
      throw e;
    }
    try {
      return JSON.parse(text) as unknown;
    } catch (e) {
      if (opts.memo === true) return undefined;
      throw new TsbuildError('STORE_CORRUPT', `${path} is not valid JSON`, {
        hint: `delete ${path} if its owner can rebuild it (for example the step cache index)`,
        cause: e,
      });
    }
  }

  /** Replace meta/<name>.json atomically (under the lock). */
  async writeMeta(name: string, value: unknown, opts: MetaOptions = {}): Promise<void> {
    const path = this.#metaPath(name);
    const text = JSON.stringify(value);
    if (text === undefined) throw new TsbuildError('USAGE', `writeMeta(${name}): value is not JSON-serialisable`);
    await this.withLock(
      () =>
        writeSmallFileAtomic(path, `${text}\n`, { tmpDir: this.paths.tmp, signal: opts.signal, durable: opts.memo !== true }).catch((e: unknown) => {
          throw storeIoError(e, `write ${path}`);
        }),
      opts,
    );
  }

  /**
   * Read-modify-write of meta/<name>.json under the lock: `fn` gets the current value
   * (undefined if absent) and returns the new one. Returns what `fn` returned.
   */
  async updateMeta<T>(name: string, fn: (current: unknown) => T | Promise<T>, opts: MetaOptions = {}): Promise<T> {
    return this.withLock(async () => {
      const next = await fn(await this.readMeta(name, opts));
      await this.writeMeta(name, next, opts);
      return next;
    }, opts);
  }

  /**
   * updateMeta for a big document, without its whole JSON text in memory: `fn` gets the current
   * value and returns the new one's JSON text in pieces (each a few KB or more: each is one
   * write), which are written as they come.
   */
  async updateMetaText(name: string, fn: (current: unknown) => Iterable<string>, opts: SignalOption = {}): Promise<void> {
    const path = this.#metaPath(name);
    await this.withLock(async () => {
      const pieces = fn(await this.readMeta(name, opts));
      await writeFileAtomic(path, pieces, { tmpDir: this.paths.tmp, signal: opts.signal }).catch((e: unknown) => {
        throw storeIoError(e, `write ${path}`);
      });
    }, opts);
  }

  #metaPath(name: string): string {
    if (!META_NAME_RE.test(name)) {
      throw new TsbuildError('USAGE', `invalid meta name ${JSON.stringify(name)}`, {
        hint: 'meta names are lowercase letters, digits, ".", "_" and "-"',
      });
    }
    return join(this.paths.meta, `${name}.json`);
  }
}

/**
 * Open the store at `root`, creating the layout if missing (safe when several processes do it
 * at once: files are created with link(2), which never replaces). An existing store is checked:
 * a broken oci-layout or index.json is STORE_CORRUPT, never silently reset. A non-empty
 * directory that is not a store is refused, so a mistyped --root does not litter a home dir.
 */
export async function openStore(root: string, opts: OpenStoreOptions = {}): Promise<Store> {
  opts.signal?.throwIfAborted();
  try {
    return await openStoreUnwrapped(root, opts);
  } catch (e) {
    throw storeIoError(e, `open the store at ${root}`);
  }
}

async function openStoreUnwrapped(root: string, opts: OpenStoreOptions): Promise<Store> {
  // Synchronous checks (atomic-file.ts): a handful of stats and two small reads on every command.
  try {
    mkdirSync(resolve(root), { recursive: true });
  } catch (e) {
    if (errnoCode(e) !== 'EEXIST') throw e;
    throw new TsbuildError('STORE_IO', `cannot open the store at ${root}: it is not a directory`, {
      hint: 'point --root at a directory (it is created if missing)',
    });
  }
  const abs = realpathSync(resolve(root));
  const paths = storePaths(abs);

  const hasLayout = exists(paths.ociLayout);
  if (!hasLayout && !exists(paths.index)) {
    const known = new Set(['tmp', 'blobs', 'snapshots', 'meta', 'leases', 'lock', 'lock.steal', 'lost+found']);
    const foreign = readdirSync(abs).filter((n) => !known.has(n));
    if (foreign.length > 0) {
      throw new TsbuildError('STORE_CORRUPT', `${abs} is not empty and is not a tsbuild store`, {
        hint: `choose an empty or new directory for the store (found ${foreign.slice(0, 3).join(', ')})`,
      });
    }
  }
  for (const dir of [paths.tmp, join(paths.blobs, 'sha256'), paths.snapshots, paths.meta]) {
    if (!hasLayout || !exists(dir)) mkdirSync(dir, { recursive: true });
  }
  if (!hasLayout) {
    await createFileIfAbsent(paths.ociLayout, `${JSON.stringify({ imageLayoutVersion: LAYOUT_VERSION })}\n`, { tmpDir: paths.tmp });
  }
  checkOciLayout(paths.ociLayout);
  if (!exists(paths.index)) {
    await createFileIfAbsent(paths.index, serializeLayoutIndex(emptyLayoutIndex()), { tmpDir: paths.tmp });
  }
  await readLayoutIndex(paths.index, opts.signal);
  return new Store(abs, opts);
}

function checkOciLayout(path: string): void {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new TsbuildError('STORE_CORRUPT', `${path} is not valid JSON`, {
      hint: `it should contain {"imageLayoutVersion":"${LAYOUT_VERSION}"}`,
      cause: e,
    });
  }
  const version = typeof v === 'object' && v !== null ? (v as Record<string, unknown>).imageLayoutVersion : undefined;
  if (version !== LAYOUT_VERSION) {
    throw new TsbuildError('STORE_CORRUPT', `${path} has imageLayoutVersion ${JSON.stringify(version)}`, {
      hint: `tsbuild reads OCI image layouts version ${LAYOUT_VERSION}`,
    });
  }
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return false;
    throw e;
  }
}

/** Copy only the descriptor fields the layout defines, adding the ref name annotation. */
function descriptorEntry(desc: Descriptor, name: string): Descriptor {
  if (typeof desc.mediaType !== 'string' || desc.mediaType === '') {
    throw new TsbuildError('MANIFEST_INVALID', `cannot tag ${name}: descriptor has no mediaType`);
  }
  if (!isDigest(desc.digest)) throw new TsbuildError('DIGEST_INVALID', `cannot tag ${name}: invalid digest ${JSON.stringify(desc.digest)}`);
  if (!Number.isSafeInteger(desc.size) || desc.size < 0) {
    throw new TsbuildError('MANIFEST_INVALID', `cannot tag ${name}: invalid size ${String(desc.size)}`);
  }
  return {
    mediaType: desc.mediaType,
    digest: desc.digest,
    size: desc.size,
    ...(desc.platform ? { platform: desc.platform } : {}),
    ...(desc.artifactType ? { artifactType: desc.artifactType } : {}),
    ...(desc.urls ? { urls: desc.urls } : {}),
    annotations: { ...desc.annotations, [REF_NAME_ANNOTATION]: name },
  };
}

/**
 * fs.rm, and if that fails on permissions (layers contain read-only directories such as
 * 0555 /proc or /sys mount points), make every directory writable and try once more.
 */
export async function removeTreeDefault(path: string, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  try {
    await rm(path, { recursive: true, force: true });
    return;
  } catch (e) {
    const code = errnoCode(e);
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'ENOTEMPTY') throw e;
  }
  await makeWritable(path, signal);
  await rm(path, { recursive: true, force: true });
}

async function makeWritable(dir: string, signal?: AbortSignal): Promise<void> {
  signal?.throwIfAborted();
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) return;
  await chmod(dir, 0o700).catch(() => undefined);
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    if (e.isDirectory()) await makeWritable(join(dir, e.name), signal);
  }
}
