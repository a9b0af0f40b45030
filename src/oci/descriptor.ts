import { sha256Digest } from './digest.js';
import type { Descriptor } from './types.js';

/** Optional descriptor fields a caller may attach (descriptor.md#properties). */
export type DescriptorExtras = Pick<Descriptor, 'annotations' | 'platform' | 'artifactType' | 'urls'>;

/**
 * The descriptor of a small document held in memory (a config, manifest or index after
 * `canonicalJson`): sha256 of exactly these bytes and their length. Blobs that stream
 * (layers) get theirs from a DigestStream instead.
 */
export function descriptorFor(mediaType: string, bytes: Uint8Array, extras: Partial<DescriptorExtras> = {}): Descriptor {
  return { mediaType, digest: sha256Digest(bytes), size: bytes.byteLength, ...extras };
}
