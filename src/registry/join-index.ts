import { TsbuildError } from '../errors.js';
import {
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  MAX_CONFIG_BYTES,
  OCI_IMAGE_INDEX,
  canonicalJson,
  formatReference,
  isManifestMediaType,
  isNondistributableLayer,
  normalizePlatform,
  parseImageConfig,
  parseManifestOrIndex,
  repositoryName,
  withDefaultTag,
  type Descriptor,
  type Digest,
  type ImageIndex,
  type ImageManifest,
  type Platform,
  type Reference,
} from '../oci/index.js';
import type { RegistryClient } from './client.js';

/**
 * An index made of images that are already in a registry, without downloading their layers
 * (`tsbuild manifest create --push` with registry sources, as buildx `imagetools create`): the
 * images' blobs are mounted from their repositories into the target's, their manifests are put
 * there unchanged (so they keep their digests, whatever tool wrote them), then the index.
 */

/** One image of the index: its manifest as the registry serves it, and where it is. */
export interface RemoteEntry {
  /** The index entry: media type, digest, size, platform (and the source index's annotations). */
  readonly descriptor: Descriptor & { readonly platform: Platform };
  readonly bytes: Buffer;
  readonly manifest: ImageManifest;
  readonly source: Reference;
  /** The SRC as given, for messages. */
  readonly label: string;
}

type SignalOption = { readonly signal?: AbortSignal | undefined };

/**
 * The images of a registry reference: each image manifest of an index (attestations for
 * `unknown/unknown` and nested indexes left out), or the one image, whose platform its config
 * names.
 */
export async function readRemoteEntries(client: RegistryClient, reference: Reference, label: string, opts: SignalOption = {}): Promise<RemoteEntry[]> {
  const ref = withDefaultTag(reference);
  const name = formatReference(ref);
  const { signal } = opts;
  const top = await client.getManifest(ref, { signal });
  const parsed = parseManifestOrIndex(top.bytes, top.contentType, { what: `manifest ${name}` });
  if (parsed.kind === 'manifest') {
    const platform = await configPlatform(client, ref, parsed.manifest, opts);
    return [{ descriptor: { mediaType: parsed.mediaType, digest: top.digest, size: top.bytes.length, platform }, bytes: top.bytes, manifest: parsed.manifest, source: ref, label }];
  }
  const out: RemoteEntry[] = [];
  for (const child of parsed.index.manifests) {
    if (!isManifestMediaType(child.mediaType) || child.platform?.os === 'unknown') continue;
    const fetched = await client.getManifest({ ...ref, digest: child.digest }, { signal, what: `manifest ${repositoryName(ref)}@${child.digest}` });
    const m = parseManifestOrIndex(fetched.bytes, child.mediaType, { what: `manifest ${repositoryName(ref)}@${child.digest}` });
    if (m.kind !== 'manifest') throw new TsbuildError('MANIFEST_INVALID', `${name}: index entry ${child.digest} is not an image manifest (registry ${ref.registry})`);
    const platform = child.platform ?? (await configPlatform(client, ref, m.manifest, opts));
    out.push({ descriptor: { ...child, platform }, bytes: fetched.bytes, manifest: m.manifest, source: ref, label });
  }
  if (out.length === 0) throw new TsbuildError('MANIFEST_INVALID', `${name} is an image index with no image manifests (registry ${ref.registry})`);
  return out;
}

async function configPlatform(client: RegistryClient, ref: Reference, manifest: ImageManifest, opts: SignalOption): Promise<Platform> {
  const cfg = manifest.config;
  if (cfg.size > MAX_CONFIG_BYTES) throw new TsbuildError('MANIFEST_INVALID', `the config of ${formatReference(ref)} is ${cfg.size} bytes, over the ${MAX_CONFIG_BYTES}-byte limit`);
  const bytes = await client.downloadBlob({ repo: ref, digest: cfg.digest, size: cfg.size, what: `config ${cfg.digest} of ${formatReference(ref)}`, signal: opts.signal }, async (stream) => {
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  });
  const config = parseImageConfig(bytes, { what: `config of ${formatReference(ref)}` });
  return normalizePlatform({ os: config.os, architecture: config.architecture, ...(config.variant !== undefined && config.variant !== '' ? { variant: config.variant } : {}) });
}

/**
 * Puts the index of `entries` under `target`'s tag, every image first. Returns undefined,
 * having put no manifest, when a blob cannot be mounted (another registry, or one that refuses
 * mounts): the caller then copies the images itself.
 */
export async function putRemoteIndex(client: RegistryClient, entries: readonly RemoteEntry[], target: Reference, opts: SignalOption & { readonly annotations?: Readonly<Record<string, string>> | undefined; readonly onBlob?: (digest: Digest, status: 'exists' | 'mounted') => void } = {}): Promise<{ digest: Digest; size: number } | undefined> {
  const dest = withDefaultTag(target);
  if (dest.tag === undefined) throw new TsbuildError('REFERENCE_INVALID', `cannot push to ${formatReference(dest)}: the destination needs a tag`);
  const { signal } = opts;
  const done = new Set<Digest>();
  // Blobs first, for every image: nothing is put until all of them are in the target repository.
  for (const e of entries) {
    const sameRepo = e.source.registry === dest.registry && e.source.repository === dest.repository;
    for (const blob of [e.manifest.config, ...e.manifest.layers]) {
      if (done.has(blob.digest) || isNondistributableLayer(blob.mediaType)) continue;
      done.add(blob.digest);
      if (sameRepo || (await client.blobSize(dest, blob.digest, { signal, forPush: true })) !== undefined) {
        opts.onBlob?.(blob.digest, 'exists');
        continue;
      }
      if (e.source.registry !== dest.registry) return undefined;
      if (!(await client.mountBlob(dest, { digest: blob.digest, from: e.source.repository, signal }))) return undefined;
      opts.onBlob?.(blob.digest, 'mounted');
    }
  }
  for (const e of entries) {
    await client.putManifest(dest, { reference: e.descriptor.digest, bytes: e.bytes, mediaType: e.descriptor.mediaType, signal });
  }
  // A Docker manifest list when every image is Docker schema 2 (as buildx does), else an OCI index.
  const docker = entries.every((e) => e.descriptor.mediaType === DOCKER_MANIFEST);
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: docker ? DOCKER_MANIFEST_LIST : OCI_IMAGE_INDEX,
    manifests: entries.map((e) => e.descriptor),
    ...(!docker && opts.annotations !== undefined && Object.keys(opts.annotations).length > 0 ? { annotations: opts.annotations } : {}),
  };
  const bytes = canonicalJson(index);
  const digest = await client.putManifest(dest, { reference: dest.tag, bytes, mediaType: index.mediaType!, signal });
  return { digest, size: bytes.length };
}
