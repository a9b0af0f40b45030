import type { Digest } from '../../oci/index.js';
import { listCacheMounts, listStepCache, treeSize } from '../build-cache.js';
import { defineCommand } from '../command.js';
import { alignTabs, createdSince, humanSize } from '../format-output.js';
import { listStoreImages, shortId, splitTag, storeImageId } from '../../image/index.js';

function pct(part: number, whole: number): string {
  return `${humanSize(part)} (${whole === 0 ? 0 : Math.round((part / whole) * 100)}%)`;
}

export const dfCommand = defineCommand({
  builder: (y) => y.option('verbose', { alias: 'v', type: 'boolean', default: false, describe: 'Per image (shared and unique sizes) and per cache entry' }),
  run: async (args, ctx) => {
    const signal = ctx.io.signal;
    const store = await ctx.store();
    const images = await listStoreImages(store, { signal });
    const cache = await listStepCache(store, signal);

    // Layer sizes, and how many images use each layer.
    const layerSize = new Map<Digest, number>();
    const users = new Map<Digest, number>();
    const taggedLayers = new Set<Digest>();
    // A multi-platform image counts each of its layers once however many of its images share it.
    const layersOf = (i: (typeof images)[number]) => i.images.flatMap((image) => image.manifest.layers);
    for (const i of images) {
      for (const l of new Set(layersOf(i).map((x) => x.digest))) {
        users.set(l, (users.get(l) ?? 0) + 1);
        if (i.tags.length > 0) taggedLayers.add(l);
      }
      for (const l of layersOf(i)) layerSize.set(l.digest, l.size);
    }
    const imagesSize = [...layerSize.values()].reduce((a, b) => a + b, 0);
    const imagesReclaimable = [...layerSize].filter(([d]) => !taggedLayers.has(d)).reduce((a, [, s]) => a + s, 0);

    // Build cache: layers of step entries that exist; counted once, and only if no image has them.
    const cacheLayers = new Map<Digest, number>();
    for (const e of cache) {
      if (!e.diffId || layerSize.has(e.diffId)) continue;
      const st = await store.blobs.statBlob(e.diffId);
      if (st) cacheLayers.set(e.diffId, st.size);
    }
    const cacheSize = [...cacheLayers.values()].reduce((a, b) => a + b, 0);
    const cacheActive = cache.filter((e) => e.diffId !== undefined && taggedLayers.has(e.diffId)).length;

    const snaps = await store.listSnapshots();
    let snapSize = 0;
    let snapReclaimable = 0;
    let snapActive = 0;
    const cacheIds = new Set(cache.flatMap((e) => (e.diffId ? [e.diffId] : [])));
    // A tagged image's snapshots: one per layer, or one per flattened chain (made when the
    // image was pulled or first built on).
    const { snapshotNamesFor } = await import('../../snapshot/index.js');
    const taggedSnapshots = new Set(images.filter((i) => i.tags.length > 0).flatMap((i) => i.images.flatMap((image) => snapshotNamesFor(image.config.rootfs.diff_ids))));
    for (const id of snaps) {
      const size = await treeSize(store.snapshotPath(id), signal);
      snapSize += size;
      if (taggedSnapshots.has(id)) snapActive++;
      else if (!cacheIds.has(id)) snapReclaimable += size;
    }

    const mounts = await listCacheMounts(store);
    let mountsSize = 0;
    for (const m of mounts) mountsSize += await treeSize(m.path, signal);

    const out = ctx.io.stdout;
    if (!args.verbose) {
      out.write(
        alignTabs([
          'TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE',
          `Images\t${images.length}\t${images.filter((i) => i.tags.length > 0).length}\t${humanSize(imagesSize)}\t${pct(imagesReclaimable, imagesSize)}`,
          `Build Cache\t${cache.length}\t${cacheActive}\t${humanSize(cacheSize)}\t${humanSize(cacheSize)}`,
          `Snapshots\t${snaps.length}\t${snapActive}\t${humanSize(snapSize)}\t${pct(snapReclaimable, snapSize)}`,
          `Cache Mounts\t${mounts.length}\t0\t${humanSize(mountsSize)}\t${pct(mountsSize, mountsSize)}`,
        ]),
      );
      return 0;
    }

    const now = new Date();
    out.write('Images space usage:\n\n');
    const rows = ['REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\tSHARED SIZE\tUNIQUE SIZE\tCONTAINERS'];
    for (const i of images) {
      let shared = 0;
      for (const l of new Map(layersOf(i).map((x) => [x.digest, x])).values()) if ((users.get(l.digest) ?? 0) > 1) shared += l.size;
      const names = i.tags.length > 0 ? i.tags.map(splitTag) : [{ repository: '<none>', tag: '<none>' }];
      for (const n of names) {
        rows.push(`${n.repository}\t${n.tag}\t${shortId(storeImageId(i))}\t${createdSince(i.image.config.created, now)}\t${humanSize(i.size)}\t${humanSize(shared)}\t${humanSize(i.size - shared)}\t0`);
      }
    }
    out.write(alignTabs(rows));
    out.write(`\nBuild cache usage: ${humanSize(cacheSize)}\n\n`);
    const crow = ['CACHE ID\tCACHE TYPE\tSIZE\tCREATED\tLAST USED\tUSAGE\tSHARED'];
    for (const e of cache) {
      const when = createdSince(new Date(e.mtimeMs).toISOString(), now);
      const shared = e.diffId !== undefined && layerSize.has(e.diffId);
      crow.push(`${e.name.slice('step.'.length, 'step.'.length + 12)}\tregular\t${humanSize(e.diffId ? (cacheLayers.get(e.diffId) ?? (shared ? (layerSize.get(e.diffId) ?? 0) : 0)) : 0)}\t${when}\t${when}\t1\t${shared}`);
    }
    out.write(alignTabs(crow));
    out.write(`\nSnapshots usage: ${humanSize(snapSize)} in ${snaps.length}\nCache mounts usage: ${humanSize(mountsSize)} in ${mounts.length}\n`);
    return 0;
  },
});
