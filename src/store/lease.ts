import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isDigest, type Descriptor, type Digest } from '../oci/index.js';
import { errnoCode, storeIoError, writeSmallFileAtomicSync } from './atomic-file.js';
import { ownerState, ownerTag, parseTempOwner } from '../host/index.js';
import type { RootRef } from './reachability.js';
import type { Store } from './store.js';

/**
 * Leases: what a running build or `run` is using, so that `rmi` and `prune` (gc) in another
 * process do not delete it. gc protects unreferenced data only by age, and `rmi` deletes an
 * untagged image's blobs at once: without a lease, `rmi busybox` during a build FROM busybox
 * removes the layers the build's result will name, and `prune` removes the snapshots a
 * running overlay uses as lower dirs.
 *
 * One file per lease, ROOT/leases/<pid>-<start>-<random>.json, listing gc roots (descriptors,
 * followed like tags, or bare digests) and snapshot names. Written under the store lock: gc
 * and rmi hold that lock from reading the leases to their last deletion, so once `hold`
 * returns, no gc that missed the lease is still running, and every later one sees it. Data
 * found before `hold` may have been deleted just before it: callers check that what they hold
 * still exists. A lease whose process is gone (pid and start time, process-owner.ts) is stale:
 * ignored, and removed by gc. Release removes the file; a crash leaves it stale, never stuck.
 * `defer` adds without writing, for what nothing reads before the next `hold` (a build's
 * cache hits): a fully cached build writes its lease once, not once per step.
 */
export class Lease {
  readonly #store: Store;
  readonly #path: string;
  readonly #roots = new Map<Digest, RootRef>();
  readonly #snapshots = new Set<Digest>();
  /** Bumped by every addition; the lease file on disk carries everything up to #writtenVersion. */
  #version = 0;
  #writtenVersion = 0;

  constructor(store: Store) {
    this.#store = store;
    this.#path = join(leaseDir(store), `${ownerTag()}-${randomBytes(6).toString('hex')}.json`);
  }

  /**
   * Adds to what the lease holds without writing it: protected only once a later `hold` returns.
   * For data a caller has found and will not read before that hold (a build's cache hits: their
   * blobs go into the image, which is held before it is tagged).
   */
  defer(what: { readonly roots?: readonly RootRef[]; readonly snapshots?: readonly Digest[] }): void {
    for (const r of what.roots ?? []) {
      const d = typeof r === 'string' ? r : r.digest;
      if (this.#roots.has(d)) continue;
      this.#roots.set(d, typeof r === 'string' ? r : { mediaType: r.mediaType, digest: r.digest, size: r.size });
      this.#version++;
    }
    for (const s of what.snapshots ?? []) {
      if (this.#snapshots.has(s)) continue;
      this.#snapshots.add(s);
      this.#version++;
    }
  }

  /**
   * Adds to what the lease holds and returns once the lease file carries it, and everything
   * deferred before (nothing is written when that is already so).
   */
  async hold(what: { readonly roots?: readonly RootRef[]; readonly snapshots?: readonly Digest[] } = {}, opts: { signal?: AbortSignal | undefined } = {}): Promise<void> {
    this.defer(what);
    const want = this.#version;
    if (this.#writtenVersion >= want) return;
    await this.#store.withLock(async () => {
      // A concurrent hold (parallel stages share a lease) may have written it meanwhile.
      if (this.#writtenVersion >= want) return;
      opts.signal?.throwIfAborted();
      const version = this.#version;
      const record: LeaseRecord = { roots: [...this.#roots.values()], snapshots: [...this.#snapshots] };
      const doc = `${JSON.stringify(record)}\n`;
      try {
        if (this.#writtenVersion === 0) mkdirSync(leaseDir(this.#store), { recursive: true });
        // Not fsynced: a lease means something only while its process lives, and a crash makes
        // it stale anyway. Atomic still, so a concurrent gc never reads half of it. A few KB,
        // written synchronously (atomic-file.ts).
        writeSmallFileAtomicSync(this.#path, doc, { tmpDir: this.#store.paths.tmp, durable: false });
      } catch (e) {
        throw storeIoError(e, `write the lease ${this.#path}`);
      }
      this.#writtenVersion = version;
    }, { signal: opts.signal });
  }

  /** Idempotent; needs no lock (dropping protection early is never unsafe for others). */
  async release(): Promise<void> {
    if (this.#writtenVersion > 0) await rm(this.#path, { force: true });
    this.#writtenVersion = 0;
  }
}

/** ROOT/leases/<owner>-<random>.json: what one lease holds. */
export interface LeaseRecord {
  readonly roots: readonly RootRef[];
  readonly snapshots: readonly Digest[];
}

/**
 * A lease file's JSON (`unknown`: anything, or undefined when it could not be read). Items of
 * another shape are skipped: a lease only adds protection, and gc must not stop on a bad file.
 */
export function parseLeaseRecord(value: unknown): LeaseRecord {
  const doc = typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  const roots: RootRef[] = [];
  for (const r of Array.isArray(doc.roots) ? (doc.roots as unknown[]) : []) {
    if (typeof r === 'string' && isDigest(r)) roots.push(r);
    else if (isDescriptorLike(r)) roots.push({ mediaType: r.mediaType, digest: r.digest, size: r.size });
  }
  const snapshots = (Array.isArray(doc.snapshots) ? (doc.snapshots as unknown[]) : []).filter((s): s is Digest => typeof s === 'string' && isDigest(s));
  return { roots, snapshots };
}

function leaseDir(store: Store): string {
  return join(store.paths.root, 'leases');
}

/**
 * What the live leases hold (call under the store lock). With `removeStale`, lease files of
 * processes that are gone are deleted on the way.
 */
export async function liveLeases(store: Store, opts: { readonly removeStale?: boolean } = {}): Promise<{ roots: RootRef[]; snapshots: Digest[] }> {
  let names: string[];
  try {
    names = await readdir(leaseDir(store));
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return { roots: [], snapshots: [] };
    throw e;
  }
  const roots: RootRef[] = [];
  const snapshots: Digest[] = [];
  for (const name of names) {
    if (!name.endsWith('.json')) continue;
    const path = join(leaseDir(store), name);
    const owner = parseTempOwner(name.slice(0, -'.json'.length));
    if (owner && ownerState(owner) === 'dead') {
      if (opts.removeStale) await rm(path, { force: true });
      continue;
    }
    const record = parseLeaseRecord(
      await readFile(path, 'utf8').then(
        (t) => JSON.parse(t) as unknown,
        () => undefined,
      ),
    );
    roots.push(...record.roots);
    snapshots.push(...record.snapshots);
  }
  return { roots, snapshots };
}

function isDescriptorLike(v: unknown): v is Descriptor {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return typeof o.mediaType === 'string' && typeof o.digest === 'string' && isDigest(o.digest) && typeof o.size === 'number';
}
