// The front door of oci/ (STYLE.md 2): wire formats only, no file system or network.
export * from './digest.js';
export * from './media-types.js';
export type * from './types.js';
export * from './canonical-json.js';
export * from './parse-documents.js';
export * from './reference.js';
export * from './platform.js';
export * from './byte-names.js';
