export { indexLayer, readLayerFile, cleanTarPath, type IndexedEntry, type LayerIndex } from './layer-index.js';
export { writeLayer, layerFromDirectory, compareLayerPaths, type LayerEntry, type WriteLayerOptions } from './tar-write.js';
export { applyLayer, type ApplyOptions } from './tar-apply.js';
