import { isTsbuildError } from '../../errors.js';
import { formatPlatform, parsePlatform } from '../../oci/index.js';
// store-layers.ts, not the registry's front door: listing images must not load undici.
import { readRepoDigests } from '../../registry/store-layers.js';
import type { Store } from '../../store/index.js';
import { defineCommand } from '../command.js';
import { parseFormatFlag, parseGoTemplate } from '../go-template.js';
import { familiarTag, resolveImageArg, storeImageForPlatform, type LocalIndex, type StoreImage } from '../../image/index.js';
import { renderError } from '../render-error.js';

/** The document `docker image inspect` prints for one image (the fields a daemon-free store has). */
export async function inspectDocument(store: Store, img: StoreImage, signal?: AbortSignal): Promise<Record<string, unknown>> {
  const { image } = img;
  const repoDigests = await readRepoDigests(store, image.manifestDescriptor.digest, { signal }).catch(() => [] as string[]);
  const c = image.config;
  return {
    Id: image.configDescriptor.digest,
    RepoTags: img.tags.map(familiarTag),
    RepoDigests: repoDigests.map(familiarRepoDigest),
    Parent: '',
    Comment: c.history?.at(-1)?.comment ?? '',
    Created: c.created ?? '',
    DockerVersion: '',
    Author: c.author ?? '',
    Config: c.config ?? null,
    Architecture: c.architecture,
    ...(c.variant ? { Variant: c.variant } : {}),
    Os: c.os,
    ...(c['os.version'] ? { OsVersion: c['os.version'] } : {}),
    Size: img.size,
    RootFS: { Type: c.rootfs.type, Layers: [...c.rootfs.diff_ids] },
    // The store does not record when a tag was set; Go's zero time, as docker shows for an
    // image that was never tagged locally.
    Metadata: { LastTagTime: '0001-01-01T00:00:00Z' },
    // Not docker's: the store manifest (uncompressed layers) the image ID belongs to.
    Descriptor: image.manifestDescriptor,
  };
}

/** The document `inspect` prints for a multi-platform image: the index and one entry per image. */
export async function inspectIndexDocument(store: Store, img: StoreImage & { readonly index: LocalIndex }, signal?: AbortSignal): Promise<Record<string, unknown>> {
  const { index } = img;
  const repoDigests = await readRepoDigests(store, index.descriptor.digest, { signal }).catch(() => [] as string[]);
  return {
    Id: index.descriptor.digest,
    RepoTags: img.tags.map(familiarTag),
    RepoDigests: repoDigests.map(familiarRepoDigest),
    MediaType: index.descriptor.mediaType,
    Platforms: index.images.map((i) => formatPlatform(i.platform)),
    Size: img.size,
    Manifests: index.images.map((i) => ({
      Platform: formatPlatform(i.platform),
      Digest: i.descriptor.digest,
      ImageId: i.image.configDescriptor.digest,
      Created: i.image.config.created ?? '',
      Size: i.image.manifest.layers.reduce((n, l) => n + l.size, 0),
      ...(i.descriptor.annotations !== undefined ? { Annotations: i.descriptor.annotations } : {}),
    })),
    // Manifests the index names that the store does not hold (platforms never pulled).
    ...(index.absent.length > 0 ? { Absent: index.absent.map((d) => ({ Digest: d.digest, ...(d.platform !== undefined ? { Platform: formatPlatform(d.platform) } : {}) })) } : {}),
    ...(index.index.annotations !== undefined ? { Annotations: index.index.annotations } : {}),
    Descriptor: index.descriptor,
  };
}

function familiarRepoDigest(rd: string): string {
  const at = rd.indexOf('@');
  return `${familiarTag(rd.slice(0, at)).replace(/:latest$/, '')}${rd.slice(at)}`;
}

export const inspectCommand = defineCommand({
  builder: (y) =>
    y
      .positional('images', { type: 'string', array: true, demandOption: true, describe: 'Image names or IDs' })
      .option('format', { alias: 'f', type: 'string', describe: "Go template, e.g. '{{.Config.Cmd}}' or '{{json .RootFS}}'" })
      .option('platform', { type: 'string', describe: 'Of a multi-platform image, show the image for this platform (e.g. linux/arm64) instead of the index' }),
  run: async (args, ctx) => {
    const signal = ctx.io.signal;
    const store = await ctx.store();
    // Parse the template before looking anything up: a bad template is a usage error.
    const template = args.format !== undefined ? parseGoTemplate(parseFormatFlag(args.format).template) : undefined;
    const platform = args.platform !== undefined ? parsePlatform(args.platform) : undefined;
    const docs: Array<Record<string, unknown>> = [];
    let failed = false;
    for (const name of args.images.map(String)) {
      try {
        const img = await resolveImageArg(store, name, { signal, asStored: true });
        if (platform !== undefined) docs.push(await inspectDocument(store, storeImageForPlatform(img, platform, name), signal));
        else if (img.index !== undefined) docs.push(await inspectIndexDocument(store, { ...img, index: img.index }, signal));
        else docs.push(await inspectDocument(store, img, signal));
      } catch (e) {
        if (!isTsbuildError(e)) throw e;
        ctx.io.stderr.write(renderError(e).text);
        failed = true;
      }
    }
    if (template) {
      for (const d of docs) ctx.io.stdout.write(`${template.render(d)}\n`);
    } else {
      ctx.io.stdout.write(`${JSON.stringify(docs, null, 4)}\n`);
    }
    return failed ? 1 : 0;
  },
});
