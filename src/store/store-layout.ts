import { join } from 'node:path';

/**
 * The on-disk layout of a tsbuild store. One root directory:
 *
 *   ROOT/
 *     oci-layout        {"imageLayoutVersion":"1.0.0"}
 *     index.json        an OCI image index listing the tagged manifests
 *     blobs/sha256/<hex>
 *     tmp/              temp files and dirs, named <pid>-<start>-<random>.<kind>
 *     snapshots/<hex>/  unpacked layers, one directory per layer diff ID
 *     meta/<name>.json  small JSON state of other components (step cache index, ...)
 *     leases/<pid>-<start>-<random>.json  what a running build or run holds (lease.ts)
 *     lock              the cross-process lock file (lock.ts); lock.steal is its guard
 *
 * Why this shape:
 *  - ROOT minus tmp/, snapshots/, meta/ and lock is an OCI image layout
 *    (https://github.com/opencontainers/image-spec/blob/main/image-layout.md), so
 *    `skopeo inspect oci:ROOT:docker.io/library/busybox:latest` and `umoci` read the store
 *    directly. The layout spec allows extra files and directories next to its own.
 *  - Tags: index.json is the single source of truth. Each tagged manifest is one entry of its
 *    `manifests` with the annotation `org.opencontainers.image.ref.name` set to the full
 *    reference (`docker.io/library/busybox:latest`; image-layout.md#indexjson-file,
 *    annotations.md). One entry per name: tagging again replaces it. Entries without the
 *    annotation (written by other tools) are kept and are gc roots too. index.json is rewritten
 *    atomically (temp + fsync + rename + fsync dir) under the lock; readers take no lock.
 *  - Blobs are written to tmp/ and renamed into blobs/ only once their digest is verified
 *    (blob-store.ts), without the lock. tmp/ is on the same file system, which makes the
 *    rename atomic.
 *  - Temp names carry the writer's pid and process start time, so gc removes only files of
 *    processes that are gone (process-owner.ts).
 *  - Layers are kept uncompressed under their diff IDs, except those of a `pull --no-unpack`,
 *    kept as the compressed blobs pulled until first use (stored-image.ts StoredLayer.packed,
 *    adopt-layers.ts unpackStoredImage).
 *  - snapshots/ are keyed by diff ID (the digest of the uncompressed layer), the unit that
 *    overlay lower dirs are made of (DESIGN.md "Snapshots come from overlayfs"). They are
 *    built in a tmp/ dir by other components and committed with one rename.
 *  - meta/ files are whole JSON documents replaced atomically; read-modify-write goes through
 *    `updateMeta`, which holds the lock.
 */
export const LAYOUT_VERSION = '1.0.0';

export interface StorePaths {
  readonly root: string;
  readonly ociLayout: string;
  readonly index: string;
  readonly blobs: string;
  readonly tmp: string;
  readonly snapshots: string;
  readonly meta: string;
  readonly lock: string;
}

export function storePaths(root: string): StorePaths {
  return {
    root,
    ociLayout: join(root, 'oci-layout'),
    index: join(root, 'index.json'),
    blobs: join(root, 'blobs'),
    tmp: join(root, 'tmp'),
    snapshots: join(root, 'snapshots'),
    meta: join(root, 'meta'),
    lock: join(root, 'lock'),
  };
}
