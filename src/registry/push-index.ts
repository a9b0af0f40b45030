import { TsbuildError } from '../errors.js';
import type { LocalIndex } from '../image/index.js';
import {
  OCI_IMAGE_INDEX,
  OCI_IMAGE_MANIFEST,
  canonicalJson,
  formatPlatform,
  formatReference,
  repositoryName,
  withDefaultTag,
  type Descriptor,
  type ImageIndex,
  type Reference,
} from '../oci/index.js';
import type { Store } from '../store/index.js';
import type { RegistryClient } from './client.js';
import { pushImage, type PushedImage, type PushOptions } from './push.js';
import { recordRepoDigest } from './store-layers.js';

export interface PushedIndex extends PushedImage {
  /** The images pushed (by digest), in index order. */
  readonly images: ReadonlyArray<PushedImage & { readonly platform: string }>;
}

/**
 * Push a multi-platform image of the store (`tsbuild push`, `manifest push`): every image first,
 * each under its digest (the registry checks that an index names manifests it has), then the
 * index under the destination's tag. Each image's push is pushImage's: layers skipped when the
 * repository has them (so layers shared by the images go once), mounted from another repository
 * of the registry when one is known to have them. The pushed images have compressed layers, so
 * their digests (and the index's) are the registry's own; the index keeps the store index's
 * platforms and annotations. An index naming manifests the store does not hold is refused
 * before anything is pushed.
 */
export async function pushIndex(client: RegistryClient, store: Store, local: LocalIndex, destination: Reference, opts: Omit<PushOptions, 'byDigest'> = {}): Promise<PushedIndex> {
  const dest = withDefaultTag(destination);
  const what = local.name ?? local.descriptor.digest;
  if (dest.digest !== undefined && dest.tag === undefined) {
    throw new TsbuildError('REFERENCE_INVALID', `cannot push to ${formatReference(dest)}: the destination needs a tag, not a digest`);
  }
  if (local.absent.length > 0) {
    const missing = local.absent.map((d) => (d.platform !== undefined ? formatPlatform(d.platform) : d.digest)).join(', ');
    throw new TsbuildError('IMAGE_NOT_FOUND', `cannot push ${what}: its index names images the local store does not hold (${missing})`, {
      hint: 'pull them with `tsbuild pull --all-platforms`, or push one platform with --platform',
    });
  }
  if (local.images.length === 0) throw new TsbuildError('IMAGE_NOT_FOUND', `cannot push ${what}: its index holds no image`);
  const signal = opts.signal;
  const repoName = repositoryName(dest);
  const pushed: Array<PushedImage & { readonly platform: string }> = [];
  const manifests: Descriptor[] = [];
  // One image at a time (each pushes its layers in parallel): images of one index share base
  // layers, and the second finds them in place instead of uploading them twice at once.
  for (const entry of local.images) {
    const p = await pushImage(client, store, entry.image, dest, { ...opts, byDigest: true });
    pushed.push({ ...p, platform: formatPlatform(entry.platform) });
    manifests.push({
      mediaType: OCI_IMAGE_MANIFEST,
      digest: p.digest,
      size: p.size,
      ...(entry.descriptor.annotations !== undefined ? { annotations: entry.descriptor.annotations } : {}),
      platform: entry.platform,
    });
  }
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: OCI_IMAGE_INDEX,
    manifests,
    ...(local.index.annotations !== undefined ? { annotations: local.index.annotations } : {}),
  };
  const bytes = canonicalJson(index);
  const digest = await client.putManifest(dest, { reference: dest.tag ?? 'latest', bytes, mediaType: OCI_IMAGE_INDEX, signal });
  const reference = formatReference(dest);
  opts.onProgress?.({ type: 'manifest', digest, reference });
  await recordRepoDigest(store, local.descriptor.digest, `${repoName}@${digest}`, { signal }).catch(() => undefined);
  return { reference, digest, size: bytes.byteLength, images: pushed };
}
