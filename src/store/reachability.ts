import { TsbuildError, isTsbuildError } from '../errors.js';
import {
  isConfigMediaType,
  isDigest,
  isIndexMediaType,
  isManifestMediaType,
  MAX_CONFIG_BYTES,
  MAX_MANIFEST_BYTES,
  type Descriptor,
  type Digest,
} from '../oci/index.js';
import type { Store } from './store.js';
import { isPackedLayer } from './stored-image.js';

/**
 * What is reachable from a set of root descriptors: index -> manifests (recursively),
 * manifest -> config + layers, config -> rootfs.diff_ids (image-spec image-index.md,
 * manifest.md, config.md). Shared by gc (what to keep) and fsck (what is missing).
 * JSON blobs are read with the oci/ size caps; everything else is only named, never read.
 *
 * Deliberately more lenient than oci/parse-documents: gc only needs the digests a document
 * names, and a stored image with a field the strict parser dislikes must not block gc.
 */

export interface MissingRef {
  readonly digest: Digest;
  /** The blob whose JSON names it, or undefined for a root. */
  readonly parent: Digest | undefined;
  /** An index may name platforms that were never pulled; that is normal, the rest is not. */
  readonly fromIndex: boolean;
}

export interface InvalidRef {
  readonly digest: Digest;
  readonly error: TsbuildError;
}

export interface Reachable {
  readonly blobs: Set<Digest>;
  /** The diff IDs of reachable configs: their snapshots are kept. */
  readonly diffIds: Set<Digest>;
  /**
   * The diff IDs of images whose manifests name packed layers (compressed blobs of a `pull
   * --no-unpack`: stored-image.ts): their uncompressed forms, once made, are kept too.
   */
  readonly unpackedLayers: Set<Digest>;
  readonly missing: MissingRef[];
  readonly invalid: InvalidRef[];
}

/** A root: a descriptor (followed by media type) or a bare digest (kept, not followed). */
export type RootRef = Digest | Descriptor;

export async function findReachable(
  store: Store,
  roots: readonly RootRef[],
  opts: { readonly signal?: AbortSignal | undefined } = {},
): Promise<Reachable> {
  const out: Reachable = { blobs: new Set(), diffIds: new Set(), unpackedLayers: new Set(), missing: [], invalid: [] };
  const queue: Array<{ desc: Descriptor | { digest: Digest; mediaType?: undefined }; parent: Digest | undefined; fromIndex: boolean; packed?: boolean }> =
    roots.map((r) => ({ desc: typeof r === 'string' ? { digest: r } : r, parent: undefined, fromIndex: false }));

  for (let i = 0; i < queue.length; i++) {
    const item = queue[i]!;
    opts.signal?.throwIfAborted();
    const { desc, parent, fromIndex } = item;
    if (out.blobs.has(desc.digest)) continue;
    out.blobs.add(desc.digest);
    const mt = desc.mediaType ?? '';
    const kind = isIndexMediaType(mt) ? 'index' : isManifestMediaType(mt) ? 'manifest' : isConfigMediaType(mt) ? 'config' : undefined;
    if (kind === undefined) {
      // Layers and other blobs are not read; note absence for fsck.
      if (!(await store.blobs.hasBlob(desc.digest))) out.missing.push({ digest: desc.digest, parent, fromIndex });
      continue;
    }
    let doc: unknown;
    try {
      doc = await store.blobs.readBlobJson(desc.digest, {
        maxBytes: kind === 'config' ? MAX_CONFIG_BYTES : MAX_MANIFEST_BYTES,
        signal: opts.signal,
      });
    } catch (e) {
      if (isTsbuildError(e) && e.code === 'BLOB_NOT_FOUND') {
        out.missing.push({ digest: desc.digest, parent, fromIndex });
        continue;
      }
      if (isTsbuildError(e)) {
        out.invalid.push({ digest: desc.digest, error: e });
        continue;
      }
      throw e;
    }
    try {
      if (kind === 'index') {
        for (const child of descriptorList(doc, 'manifests', desc.digest)) {
          queue.push({ desc: child, parent: desc.digest, fromIndex: true });
        }
      } else if (kind === 'manifest') {
        const o = doc as Record<string, unknown>;
        const layers = descriptorList(doc, 'layers', desc.digest);
        queue.push({ desc: asDescriptor(o.config, desc.digest, 'config'), parent: desc.digest, fromIndex: false, packed: layers.some(isPackedLayer) });
        for (const layer of layers) {
          queue.push({ desc: layer, parent: desc.digest, fromIndex: false });
        }
      } else {
        for (const id of diffIdsOf(doc, desc.digest)) {
          out.diffIds.add(id);
          if (item.packed === true) out.unpackedLayers.add(id);
        }
      }
    } catch (e) {
      if (isTsbuildError(e)) out.invalid.push({ digest: desc.digest, error: e });
      else throw e;
    }
  }
  return out;
}

function invalid(where: Digest, what: string): TsbuildError {
  return new TsbuildError('MANIFEST_INVALID', `blob ${where}: ${what}`);
}

function descriptorList(doc: unknown, field: string, where: Digest): Descriptor[] {
  if (typeof doc !== 'object' || doc === null) throw invalid(where, 'not a JSON object');
  const list = (doc as Record<string, unknown>)[field];
  if (!Array.isArray(list)) throw invalid(where, `${field} is not an array`);
  return list.map((d: unknown, i) => asDescriptor(d, where, `${field}[${i}]`));
}

function asDescriptor(v: unknown, where: Digest, field: string): Descriptor {
  if (typeof v !== 'object' || v === null) throw invalid(where, `${field} is not a descriptor`);
  const o = v as Record<string, unknown>;
  if (typeof o.digest !== 'string' || !isDigest(o.digest)) throw invalid(where, `${field} has an invalid digest`);
  if (typeof o.mediaType !== 'string') throw invalid(where, `${field} has no mediaType`);
  if (typeof o.size !== 'number') throw invalid(where, `${field} has no size`);
  return { mediaType: o.mediaType, digest: o.digest, size: o.size };
}

function diffIdsOf(doc: unknown, where: Digest): Digest[] {
  if (typeof doc !== 'object' || doc === null) throw invalid(where, 'config is not a JSON object');
  const rootfs = (doc as Record<string, unknown>).rootfs;
  if (rootfs === undefined) return [];
  const ids = typeof rootfs === 'object' && rootfs !== null ? (rootfs as Record<string, unknown>).diff_ids : undefined;
  if (!Array.isArray(ids)) throw invalid(where, 'rootfs.diff_ids is not an array');
  return ids.map((id: unknown) => {
    if (typeof id !== 'string' || !isDigest(id)) throw invalid(where, 'rootfs.diff_ids has an invalid digest');
    return id;
  });
}
