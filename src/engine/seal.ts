import type { CacheKey } from '../cache/index.js';
import { setLabels } from '../image/index.js';
import { readLocalImage } from '../image/index.js';
import { sealImage, type StoredImage } from '../image/index.js';
import { OCI_IMAGE_MANIFEST, isDigest, type Descriptor, type ImageConfig } from '../oci/index.js';
import { runCached } from './dispatch.js';
import type { BuildSession } from './session.js';
import type { StageState } from './stage-state.js';

/**
 * A sealed image record, `meta/image.<seal key hex>.json`: the manifest an earlier build sealed
 * from the same final state, labels and epoch (a descriptor).
 */
type SealRecord = Descriptor;

/** A stored seal record as read from disk; undefined for anything else. */
function parseSealRecord(doc: unknown): SealRecord | undefined {
  if (typeof doc !== 'object' || doc === null) return undefined;
  const r = doc as { mediaType?: unknown; digest?: unknown; size?: unknown };
  if (typeof r.digest !== 'string' || !isDigest(r.digest) || typeof r.size !== 'number') return undefined;
  return { mediaType: typeof r.mediaType === 'string' ? r.mediaType : OCI_IMAGE_MANIFEST, digest: r.digest, size: r.size };
}

function sealRecordName(key: CacheKey): string {
  return `image.${key.slice('sha256:'.length)}`;
}

/**
 * Seals the target image, or reuses the image an earlier build sealed from the same steps
 * with the same layers, so an unchanged rebuild gives the same image ID (as buildah and
 * docker do) instead of a new one that differs only in its time stamps. The key is made of
 * the final state's key and layers, the --label values and SOURCE_DATE_EPOCH.
 */
export async function sealTarget(session: BuildSession, final: StageState, opts: { readonly created: string; readonly labels: Readonly<Record<string, string>>; readonly annotations?: Readonly<Record<string, string>> | undefined; readonly sourceDateEpoch?: number | undefined; readonly inlineCache?: { readonly field: string; readonly value: unknown } | undefined }): Promise<StoredImage> {
  const { store, signal } = session;
  const r = await runCached<StoredImage>({
    keyInputs: { parent: final.key, kind: 'SEAL', instruction: JSON.stringify(opts.inlineCache === undefined ? [opts.labels, opts.annotations ?? {}] : [opts.labels, opts.annotations ?? {}, opts.inlineCache]), layers: final.layers.map((l) => l.diffId), epoch: opts.sourceDateEpoch, platform: session.platformText },
    noCache: false,
    async lookup(key) {
      const known = parseSealRecord(await store.readMeta(sealRecordName(key)));
      if (!known || !(await store.blobs.hasBlob(known.digest))) return undefined;
      const local = await readLocalImage(store, known, { signal }).catch(() => undefined);
      if (!local || !local.manifest.layers.every((l, i) => l.digest === final.layers[i]?.diffId)) return undefined;
      if (!(await Promise.all(local.manifest.layers.map((l) => store.blobs.hasBlob(l.digest)))).every(Boolean)) return undefined;
      return { value: { manifest: local.manifest, config: local.config, configDescriptor: local.manifest.config, manifestDescriptor: local.manifestDescriptor } };
    },
    async execute() {
      let config: ImageConfig = { ...final.config, created: opts.created };
      if (Object.keys(opts.labels).length > 0) config = setLabels(config, Object.entries(opts.labels));
      // --cache-to type=inline: the cache metadata rides in the config (an extra top-level field,
      // as BuildKit's moby.buildkit.cache.v0), so the pushed image is itself a cache source.
      if (opts.inlineCache !== undefined) config = { ...config, [opts.inlineCache.field]: opts.inlineCache.value } as ImageConfig;
      return { value: await sealImage(store, config, final.layers, { signal, annotations: opts.annotations }) };
    },
    record: (key, image) => store.writeMeta(sealRecordName(key), image.manifestDescriptor),
  });
  return r.value;
}
