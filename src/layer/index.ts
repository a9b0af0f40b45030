/**
 * layer/: deterministic layer tars (write), compression, and the safe applier.
 * Only this folder and store/ import tar-stream (DESIGN.md).
 * Front door (STYLE.md 2), with side doors that test/imports.test.ts names, each to keep the
 * applier, the compressors and the gzip workers off a build that needs less: layer-index.ts
 * (image views, the step cache), read-ahead.ts (context files for cache keys) and
 * write-layer.ts (a COPY's tar).
 */
export { writeLayer, layerTarStream, layerTarChunks, fileContent, WHITEOUT_PREFIX, OPAQUE_WHITEOUT } from './write-layer.js';
export type { LayerEntry, LayerEntryType, WriteLayerOptions, WrittenLayer } from './write-layer.js';
export { layerFromDirectory } from './layer-from-directory.js';
export type { LayerFromDirectoryOptions } from './layer-from-directory.js';
export { DEFAULT_GZIP_LEVEL, DEFAULT_ZSTD_LEVEL, assertZstdAvailable, compressFile, compressLayer, compressionChoice, createLayerCompressor, createZstdDecompressor, sniffLayerCompression } from './compress.js';
export type { CompressLayerOptions, CompressedLayer, CompressionChoice, LayerCompression } from './compress.js';
export { zstdProgram } from './zstd.js';
export { ParallelGzip, gzipOneBlock, type ParallelGzipOptions } from './parallel-gzip.js';
export { END_OF_ARCHIVE, encodeHeader, padding } from './tar-header.js';
export { noteDeadBuffers } from '../host/index.js';
export { ReadAhead, recycledFileReader, readWholeFile } from './read-ahead.js';
export type { BufferSource, ReadAheadFile } from './read-ahead.js';
export { applyLayer } from './apply-layer.js';
export type { ApplyLayerOptions, AppliedLayer, ApplyLayerOptions as ApplyOptions } from './apply-layer.js';
export { cleanEntryName, linkWalk, resolveInRoot } from './root-path.js';
export { indexLayer, readLayerFile } from './layer-index.js';
export type { IndexedEntry, LayerIndex } from './layer-index.js';
