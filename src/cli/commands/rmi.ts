import { TsbuildError, isTsbuildError } from '../../errors.js';
import { normalizeName } from '../../image/index.js';
import type { Digest } from '../../oci/index.js';
import { findReachable, liveLeases, type RootRef, type Store } from '../../store/index.js';
import { listStepCache } from '../build-cache.js';
import { defineCommand } from '../command.js';
import { familiarTag, listStoreImages, resolveImageArg, shortId, storeImageId, type StoreImage } from '../../image/index.js';
import { renderError } from '../render-error.js';

/**
 * Other images built on top of `img` (of any of its images, for a multi-platform one): their
 * layers start with all of its layers.
 */
function childrenOf(img: StoreImage, all: readonly StoreImage[]): StoreImage[] {
  const ids = new Set(img.images.map((i) => i.configDescriptor.digest));
  return all.filter((o) => {
    if (storeImageId(o) === storeImageId(img)) return false;
    return img.images.some((mineImage) => {
      const mine = mineImage.config.rootfs.diff_ids;
      if (mine.length === 0) return false;
      return o.images.some((other) => {
        if (ids.has(other.configDescriptor.digest)) return false;
        const theirs = other.config.rootfs.diff_ids;
        return theirs.length >= mine.length && mine.every((d, i) => theirs[i] === d);
      });
    });
  });
}

/**
 * Deletes the blobs of an untagged image that nothing else needs: not reachable from any tag
 * (index.json) nor from the build cache (meta/step.*, whose layers later builds reuse),
 * nor from a live lease (a build or `run` using it now). Decided and done under the store
 * lock, so no tag or lease can appear in between. Snapshots are left to `prune`.
 */
async function deleteUnneeded(store: Store, img: StoreImage, signal: AbortSignal): Promise<Digest[]> {
  const cacheRoots: RootRef[] = (await listStepCache(store, signal)).flatMap((e) => (e.diffId ? [e.diffId] : []));
  // Of a multi-platform image: the index, then every image it holds.
  // With the uncompressed forms of layers the store holds packed (`pull --no-unpack`, decompressed since).
  const candidates: Digest[] = [
    ...img.rootDigests,
    ...img.images.flatMap((i) => [i.configDescriptor.digest, i.manifestDescriptor.digest, ...i.manifest.layers.map((l) => l.digest), ...i.config.rootfs.diff_ids]),
  ];
  return store.withLock(async () => {
    const index = await store.readIndex({ signal });
    // A build or `run` using this image right now holds it in a lease (store/lease.ts).
    const leased = await liveLeases(store);
    const reach = await findReachable(store, [...index.manifests, ...cacheRoots, ...leased.roots], { signal });
    const deleted: Digest[] = [];
    for (const d of new Set(candidates)) {
      if (reach.blobs.has(d) || reach.unpackedLayers.has(d)) continue;
      if (await store.blobs.deleteBlob(d)) deleted.push(d);
    }
    return deleted;
  }, { signal });
}

async function removeOne(store: Store, arg: string, force: boolean, out: (line: string) => void, signal: AbortSignal): Promise<void> {
  const img = await resolveImageArg(store, arg, { signal, asStored: true });
  let byName: string | undefined;
  try {
    const n = normalizeName(arg);
    if (img.tags.includes(n)) byName = n;
  } catch {
    byName = undefined;
  }
  // A name of an image that has other names: only that name goes (docker semantics).
  if (byName !== undefined && img.tags.length > 1) {
    await store.removeTag(byName, { signal });
    out(`Untagged: ${familiarTag(byName)}`);
    return;
  }
  if (byName === undefined && img.tags.length > 1 && !force) {
    throw new TsbuildError('IMAGE_IN_USE', `conflict: unable to delete ${shortId(storeImageId(img))} (must be forced) - image is referenced in multiple repositories (${img.tags.map(familiarTag).join(', ')})`, {
      hint: 'remove the names one by one, or use -f to remove them all',
    });
  }
  if (!force) {
    const leased = await liveLeases(store);
    const mine = new Set<Digest>([...img.rootDigests, ...img.images.map((i) => i.manifestDescriptor.digest)]);
    if (leased.roots.some((r) => mine.has(typeof r === 'string' ? r : r.digest))) {
      throw new TsbuildError('IMAGE_IN_USE', `conflict: unable to delete ${arg} (${shortId(storeImageId(img))}) (must be forced) - image is being used by a running tsbuild run`, {
        hint: 'wait for the run to end, or use -f (what the run uses stays until it ends; prune removes it afterwards)',
      });
    }
  }
  const children = childrenOf(img, await listStoreImages(store, { signal }));
  if (children.length > 0 && !force) {
    const names = children.map((c) => (c.tags[0] ? familiarTag(c.tags[0]) : shortId(storeImageId(c))));
    throw new TsbuildError('IMAGE_IN_USE', `conflict: unable to delete ${arg} (${shortId(storeImageId(img))}) - image has dependent child images: ${names.join(', ')}`, {
      hint: 'remove the child images first, or use -f (layers the children need are kept)',
    });
  }
  for (const t of img.tags) {
    await store.removeTag(t, { signal });
    out(`Untagged: ${familiarTag(t)}`);
  }
  for (const d of await deleteUnneeded(store, img, signal)) out(`Deleted: ${d}`);
}

export const rmiCommand = defineCommand({
  builder: (y) =>
    y
      .positional('images', { type: 'string', array: true, demandOption: true, describe: 'Image names or IDs' })
      .option('force', { alias: 'f', type: 'boolean', default: false, describe: 'Remove an image with several names or with child images' }),
  run: async (args, ctx) => {
    const store = await ctx.store();
    let failed = false;
    for (const arg of args.images.map(String)) {
      try {
        await removeOne(store, arg, args.force, (l) => ctx.io.stdout.write(`${l}\n`), ctx.io.signal);
      } catch (e) {
        if (!isTsbuildError(e)) throw e;
        ctx.io.stderr.write(renderError(e).text);
        failed = true;
      }
    }
    return failed ? 1 : 0;
  },
});
