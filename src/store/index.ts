/**
 * store/: the local image store, an OCI image layout plus tsbuild's own state under one root.
 * The layout and the reasons for it are in store-layout.ts.
 *
 * Front door (STYLE.md 2): other folders import from here, or from archive-import.ts and
 * archive-export.ts (archive load and save, which load tar-stream and layer/: kept off the start-up
 * of every command that opens the store). test/imports.test.ts checks it.
 *
 * Known gaps (DEBT, with the issue that owns each):
 *  - #19: leases (lease.ts) protect what a build or `run` holds; what a process wrote and has
 *    not yet held (a blob between putBlob and Lease.hold) is protected only by gc's age
 *    grace (`graceMs`, 1 h), so `prune --filter until=0s` can still take it in that window.
 *  - #19: a store shared by several hosts (NFS) is not supported: temp names carry no host,
 *    and a lock from another host is only ever waited for.
 *  - #19: snapshot trees are not fsynced on commit; after a power loss a snapshot may be
 *    incomplete while its name exists.
 *  - #14: only sha256 blobs are written; sha512 names are read-only (readBlobBytes verifies
 *    them).
 *
 * Descriptors, media types and size caps are oci/'s (Descriptor, OCI_IMAGE_INDEX, ...).
 */
export { BlobStore, type BlobInfo, type ExpectedBlob, type PutBlobOptions, type ReadBlobOptions } from './blob-store.js';
export { collectGarbage, dropUnreferenced, type GcOptions, type GcResult } from './gc.js';
export { fsckStore, type FsckOptions, type FsckProblem } from './fsck.js';
export { StoreLock, readLockHolder, type LockHolder, type LockOptions, type StoreLockOptions } from './lock.js';
export { type LayoutIndex, assertRefName } from './layout-index.js';
export { Lease, liveLeases, parseLeaseRecord, type LeaseRecord } from './lease.js';
export { findReachable, type Reachable, type RootRef } from './reachability.js';
export { LAYOUT_VERSION, storePaths, type StorePaths } from './store-layout.js';
export { Store, openStore, removeTreeDefault, type MetaOptions, type OpenStoreOptions, type SignalOption, type TagEntry } from './store.js';
export { REF_NAME_ANNOTATION } from './types.js';
export { storeUncompressedLayer, unpackStoredImage } from './adopt-layers.js';
export { isPackedLayer, writeStoreIndex, writeStoreManifest, type StoredImage, type StoredIndexEntry, type StoredLayer } from './stored-image.js';
export {
  compressedLayerForm,
  compressLayerInMemory,
  knownCompressedLayer,
  parseCompressedLayersRecord,
  pulledFormKey,
  rememberCompressedLayer,
  SMALL_LAYER,
  type CompressedLayer,
  type CompressedLayerFormOptions,
  type CompressedLayersRecord,
  type StoredLayerRef,
} from './compressed-layers.js';
export { currentOwner, ownerState, ownerTag, type ProcessOwner } from '../host/index.js';
