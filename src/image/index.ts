// The front door of image/ (STYLE.md 2): what an image is in the store and the pure edits of
// its config; reading and sealing store images; the file-system view of a layer stack.
export type { StoredImage, StoredLayer } from '../store/index.js';
export * from './config-edit.js';
export { DEFAULT_PATH, importRootfsTar, type ImportOptions } from './import-rootfs.js';
export { expectLayerIndexes, hasLayerIndex, knownLayerIndex, layerIndexOf, lazyLayerIndex, parseLayerIndexRecord, rememberLayerIndex, type LazyLayerIndex } from './layer-index-cache.js';
export { findLocalImage, getLocalImage, normalizeName, readLocalImage, type LocalImage } from './local-image.js';
export { RootfsView, UnrecordedLookup, normalize, type IndexedEntry, type LayerIndex, type ViewEntry } from './rootfs-view.js';
export { parseViewRecord, readViewRecord, saveViewRecord, type ViewFindings, type ViewLookups, type ViewRecord } from './view-record.js';
export { sealImage } from './seal.js';
export { parseAnnotations, type ImageAnnotations } from './annotations.js';
export { parseIdFile, resolveChown, resolveFileOpUser, resolveUser, type IdPair, type ImageUser } from './users.js';
export { familiarTag, listStoreImages, resolveImageArg, shortId, splitTag, storeImageId, type StoreImage } from './store-images.js';
export { exportEntryFor, imagePlatform, indexImageFor, platformList, readLocalIndex, storeImageForPlatform, type LocalIndex, type LocalIndexImage } from './local-index.js';
