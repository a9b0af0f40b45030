import fsp from 'node:fs/promises';
import path from 'node:path';
import { TsbuildError } from '../errors.js';
import type { StoredImage, StoredLayer } from '../image/index.js';
import { readLocalImage, readLocalIndex } from '../image/index.js';
import { OCI_IMAGE_INDEX, OCI_IMAGE_MANIFEST, formatPlatform, parseReference, type Descriptor, type Digest, type Platform } from '../oci/index.js';
import type { RegistryClient } from '../registry/index.js';
import type { Store } from '../store/index.js';
import type { ExportImage } from '../store/archive-export.js';
import type { BuildRequest, OutputSpec } from './request.js';
import { writeResultFile } from './result-file.js';
import type { BuildSession } from './session.js';

export interface OutputEnv {
  readonly store: Store;
  readonly signal?: AbortSignal | undefined;
  readonly sourceDateEpoch?: number | undefined;
  /** What an output could not write exactly (a device node left out of type=local). */
  readonly warn?: ((message: string) => void) | undefined;
  /** `--annotation manifest-descriptor:`: on the manifest's entry in an OCI output's index.json. */
  readonly descriptorAnnotations?: Readonly<Record<string, string>> | undefined;
}

/**
 * Writes the built image where the request asked: the local store under its tags, an OCI
 * archive or layout, a docker archive, or the root filesystem as a directory or tar.
 * Each file output is written through a temp name and renamed, so a failure leaves no
 * half-written archive behind.
 *
 * Resolves with the descriptor of the manifest the first image output (oci, oci-layout,
 * docker) wrote, which differs from the store's when its layers are compressed; undefined
 * when no such output was asked for.
 */
async function writeOutputs(image: StoredImage, names: readonly string[], outputs: readonly OutputSpec[], env: OutputEnv): Promise<Descriptor | undefined> {
  const descriptorAnnotations = env.descriptorAnnotations && Object.keys(env.descriptorAnnotations).length > 0 ? env.descriptorAnnotations : undefined;
  const exportImage: ExportImage = { ...image, names, ...(descriptorAnnotations ? { descriptorAnnotations } : {}) };
  let written: Descriptor | undefined;
  const remember = (d: readonly Descriptor[]) => {
    written ??= d[0];
  };
  for (const out of outputs) {
    switch (out.type) {
      case 'image':
        for (const name of names) await env.store.setTag(name, image.manifestDescriptor, { signal: env.signal });
        break;
      case 'oci': {
        await ensureParent(out.dest);
        const { exportOciArchive } = await import('../store/archive-export.js');
        remember(await exportOciArchive(env.store, [exportImage], out.dest, { compression: out.compression, level: out.level, signal: env.signal }));
        break;
      }
      case 'oci-layout': {
        const { exportOciLayout } = await import('../store/archive-export.js');
        remember(await exportOciLayout(env.store, [exportImage], out.dest, { compression: out.compression, level: out.level, signal: env.signal }));
        break;
      }
      case 'docker': {
        await ensureParent(out.dest);
        const { exportDockerArchive } = await import('../store/archive-export.js');
        remember(await exportDockerArchive(env.store, [exportImage], out.dest, { signal: env.signal }));
        break;
      }
      case 'local': {
        const { materializeRootfs } = await import('./rootfs-output.js');
        // Devices and setuid files stay out unless asked for (a tar, by contrast, is inert).
        const dropSpecial = out.preserveSpecial !== true;
        await materializeRootfs(env.store, image.manifest.layers.map((l) => l.digest), out.dest, {
          signal: env.signal,
          dropSpecial,
          onWarning: (m) => env.warn?.(`--output type=local: ${m}; keep them with preserve-special=true`),
        });
        break;
      }
      case 'registry':
        break; // pushed by deliverImage
      case 'tar': {
        await ensureParent(out.dest);
        const { writeRootfsTar } = await import('./rootfs-output.js');
        await writeRootfsTar(env.store, image.manifest.layers.map((l) => l.digest), out.dest, { signal: env.signal, sourceDateEpoch: env.sourceDateEpoch });
        break;
      }
      default:
        out satisfies never;
    }
  }
  return written;
}

async function ensureParent(dest: string): Promise<void> {
  if (dest === '-') return;
  try {
    await fsp.mkdir(path.dirname(dest), { recursive: true });
  } catch (e) {
    throw new TsbuildError('OUTPUT_INVALID', `cannot create the directory of ${dest}: ${(e as Error).message}`);
  }
}

/**
 * buildx's --metadata-file keys for an image build. `manifest` is the manifest the user got
 * (pushed, or written to an archive or layout), as buildx reports it; the store's by default.
 */
function buildMetadata(image: StoredImage, names: readonly string[], manifest: Descriptor = image.manifestDescriptor): Record<string, unknown> {
  return {
    'containerimage.config.digest': image.configDescriptor.digest,
    'containerimage.digest': manifest.digest,
    'containerimage.descriptor': { mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size },
    ...(names.length > 0 ? { 'image.name': names.join(',') } : {}),
  };
}

/**
 * Delivers a sealed image: checks it is still whole in the store, writes every output, pushes
 * every tag when asked (each a progress step), writes --iidfile and --metadata-file.
 */
export async function deliverImage(image: StoredImage, req: BuildRequest, session: BuildSession, registry: (() => Promise<RegistryClient>) | undefined): Promise<Record<string, unknown>> {
  const { store, signal } = session;
  for (const d of [image.manifestDescriptor.digest, image.configDescriptor.digest]) {
    if (!(await store.blobs.hasBlob(d))) throw new TsbuildError('BLOB_NOT_FOUND', `the built image's ${d} was removed from the store meanwhile (by prune)`, { hint: 'run the build again' });
  }
  let delivered = await writeOutputs(image, req.tags, req.outputs, { store, signal, sourceDateEpoch: req.sourceDateEpoch, warn: (message) => session.warn(message), descriptorAnnotations: req.annotations?.manifestDescriptor });
  const pushes = pushDestinations(req);
  if (pushes.length > 0) {
    if (!registry) throw new TsbuildError('UNSUPPORTED', 'this build has no registry access configured');
    const client = await registry();
    const { pushImage } = await import('../registry/index.js');
    const local = await readLocalImage(store, image.manifestDescriptor, { signal });
    // A layer the registry neither has nor can mount is read from the store: a lazy cache hit
    // (an image only pushed keeps them lazy) is fetched then, verified, once.
    const ensureLayer = (layer: Descriptor): Promise<void> => session.claim([{ diffId: layer.digest, size: layer.size }]);
    for (const { name, compression, level } of pushes) {
      const id = session.nextStepId();
      session.report({ type: 'step-start', id, name: `pushing ${name}` });
      const t0 = Date.now();
      const layers = new Map<string, string>();
      const onProgress = (p: { type: string; digest?: string; status?: string }): void => {
        if (p.type === 'layer' && p.digest !== undefined && p.status !== undefined && p.status !== 'preparing' && p.status !== 'uploading') layers.set(p.digest, p.status);
      };
      const pushed = await pushImage(client, store, local, parseReference(name), { signal, ensureLayer, compression, level, onProgress });
      delivered = { mediaType: OCI_IMAGE_MANIFEST, digest: pushed.digest, size: pushed.size };
      const counts = ['exists', 'mounted', 'uploaded'].map((k) => `${[...layers.values()].filter((v) => v === k).length} ${k === 'exists' ? 'already there' : k}`);
      session.report({ type: 'step-log', id, stream: 'stdout', text: `layers: ${counts.join(', ')}\n` });
      session.report({ type: 'step-log', id, stream: 'stdout', text: `${pushed.reference}: digest: ${pushed.digest}\n` });
      session.report({ type: 'step-done', id, durationMs: Date.now() - t0 });
    }
  }
  // Replaced, never written through a symlink planted at the path (result-file.ts).
  if (req.iidFile) await writeResultFile(req.iidFile, image.configDescriptor.digest, '--iidfile');
  // image.name: the names the image went to (the tags, and the names it was pushed to), as buildx.
  const names = [...new Set([...req.tags, ...pushes.map((p) => p.name)])];
  const metadata = buildMetadata(image, names, delivered);
  if (req.metadataFile) await writeResultFile(req.metadataFile, `${JSON.stringify(metadata, null, 2)}\n`, '--metadata-file');
  return metadata;
}

/** True when the image is only pushed (every output is `type=registry`): it is not kept in the local store. */
export function pushOnly(req: BuildRequest): boolean {
  return req.outputs.length > 0 && req.outputs.every((o) => o.type === 'registry');
}

/**
 * Where the image is pushed: each `type=registry` output (to its name, else to every tag), then
 * every tag with `--push` (which also keeps the image under them in the local store); each
 * destination once.
 */
function pushDestinations(req: BuildRequest): Array<{ name: string; compression: 'gzip' | 'zstd' | 'uncompressed'; level?: number | undefined }> {
  const out = new Map<string, { name: string; compression: 'gzip' | 'zstd' | 'uncompressed'; level?: number | undefined }>();
  for (const o of req.outputs) {
    if (o.type !== 'registry') continue;
    for (const name of o.name !== undefined ? [o.name] : req.tags) if (!out.has(name)) out.set(name, { name, compression: o.compression, level: o.level });
  }
  if (req.push) for (const name of req.tags) if (!out.has(name)) out.set(name, { name, compression: 'gzip' });
  return [...out.values()];
}

/**
 * After a push-only build (its lease released): its manifest and config (a multi-platform
 * build's: the index, and every image's manifest and config) leave the store unless
 * something else holds them (a tag, another build's lease). The manifest may name lazy cache
 * hits the store never fetched, so it must not stay as an untagged image. Never throws: the
 * blobs are garbage for gc anyway.
 */
export async function dropPushedOnly(store: Store, digests: readonly Digest[]): Promise<void> {
  const { dropUnreferenced } = await import('../store/index.js');
  await dropUnreferenced(store, digests).catch(() => undefined);
}

/** Where a multi-platform build's `type=local` / `type=tar` puts a platform's files: `linux_arm64`, as buildx. */
export function platformDir(platform: Platform): string {
  return formatPlatform(platform).replaceAll('/', '_');
}

/**
 * Delivers the images of a multi-platform build as one OCI image index: written to the store
 * (canonical JSON, a blob) and tagged there, written into OCI archives and layouts, one
 * directory per platform for `local` and `tar`, pushed (every image by digest, then the index
 * under each tag). --iidfile gets the index digest, as buildx writes it for a multi-platform build.
 * Resolves with the store's index descriptor and the build's metadata (as --metadata-file).
 */
export async function deliverIndex(
  images: ReadonlyArray<{ readonly image: StoredImage; readonly platform: Platform }>,
  req: BuildRequest,
  session: BuildSession,
  registry: (() => Promise<RegistryClient>) | undefined,
  claim: (layers: readonly StoredLayer[]) => Promise<void> = (layers) => session.claim(layers),
): Promise<{ index: Descriptor; metadata: Record<string, unknown> }> {
  const { store, signal } = session;
  for (const { image } of images) {
    for (const d of [image.manifestDescriptor.digest, image.configDescriptor.digest]) {
      if (!(await store.blobs.hasBlob(d))) throw new TsbuildError('BLOB_NOT_FOUND', `the built image's ${d} was removed from the store meanwhile (by prune)`, { hint: 'run the build again' });
    }
  }
  const { writeStoreIndex } = await import('../store/index.js');
  const { descriptor: index } = await writeStoreIndex(store, images.map(({ image, platform }) => ({ manifestDescriptor: image.manifestDescriptor, platform })), { signal });
  await session.holdImage(index);
  let delivered: Descriptor = index;
  const exported = { kind: 'index' as const, images, names: req.tags };
  for (const out of req.outputs) {
    switch (out.type) {
      case 'image':
        for (const name of req.tags) await store.setTag(name, index, { signal });
        break;
      case 'oci': {
        await ensureParent(out.dest);
        const { exportOciArchive } = await import('../store/archive-export.js');
        delivered = (await exportOciArchive(store, [exported], out.dest, { compression: out.compression, signal }))[0] ?? delivered;
        break;
      }
      case 'oci-layout': {
        const { exportOciLayout } = await import('../store/archive-export.js');
        delivered = (await exportOciLayout(store, [exported], out.dest, { compression: out.compression, signal }))[0] ?? delivered;
        break;
      }
      case 'docker':
        throw new TsbuildError('USAGE', '--output type=docker holds one image, not an index of several platforms', { hint: 'build one platform for docker' });
      case 'registry':
        break; // pushed below
      case 'local': {
        const { materializeRootfs } = await import('./rootfs-output.js');
        const dropSpecial = out.preserveSpecial !== true;
        for (const { image, platform } of images) {
          await materializeRootfs(store, image.manifest.layers.map((l) => l.digest), path.join(out.dest, platformDir(platform)), {
            signal,
            dropSpecial,
            onWarning: (m) => session.warn(`--output type=local: ${m}; keep them with preserve-special=true`),
          });
        }
        break;
      }
      case 'tar': {
        await ensureParent(out.dest);
        const { writeRootfsTrees } = await import('./rootfs-output.js');
        const trees = images.map(({ image, platform }) => ({ subdir: platformDir(platform), diffIds: image.manifest.layers.map((l) => l.digest) }));
        await writeRootfsTrees(store, trees, out.dest, { signal, sourceDateEpoch: req.sourceDateEpoch });
        break;
      }
      default:
        out satisfies never;
    }
  }
  const pushes = pushDestinations(req);
  if (pushes.length > 0) {
    if (!registry) throw new TsbuildError('UNSUPPORTED', 'this build has no registry access configured');
    const client = await registry();
    const { pushIndex } = await import('../registry/index.js');
    const local = await readLocalIndex(store, index, { signal });
    // As for one image: a layer the registry neither has nor can mount is read from the store,
    // a lazy cache hit (an index only pushed keeps them lazy) fetched then, verified, once.
    const ensureLayer = (layer: Descriptor): Promise<void> => claim([{ diffId: layer.digest, size: layer.size }]);
    for (const { name, compression, level } of pushes) {
      const id = session.nextStepId();
      session.report({ type: 'step-start', id, name: `pushing ${name} (${images.map((i) => formatPlatform(i.platform)).join(', ')})` });
      const t0 = Date.now();
      const pushed = await pushIndex(client, store, local, parseReference(name), { signal, ensureLayer, compression, level });
      delivered = { mediaType: OCI_IMAGE_INDEX, digest: pushed.digest, size: pushed.size };
      session.report({ type: 'step-log', id, stream: 'stdout', text: `${pushed.reference}: digest: ${pushed.digest}\n` });
      session.report({ type: 'step-done', id, durationMs: Date.now() - t0 });
    }
  }
  if (req.iidFile) await writeResultFile(req.iidFile, index.digest, '--iidfile');
  const metadata = {
    'containerimage.config.digest': images[0]!.image.configDescriptor.digest,
    'containerimage.digest': delivered.digest,
    'containerimage.descriptor': { mediaType: delivered.mediaType, digest: delivered.digest, size: delivered.size },
    ...(req.tags.length > 0 ? { 'image.name': req.tags.join(',') } : {}),
  };
  if (req.metadataFile) await writeResultFile(req.metadataFile, `${JSON.stringify(metadata, null, 2)}\n`, '--metadata-file');
  return { index, metadata };
}
