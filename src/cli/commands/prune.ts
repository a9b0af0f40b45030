import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pruneLastKeyRecords, sweepDeadRuns } from '../../engine/index.js';
import { TsbuildError } from '../../errors.js';
import { isDigest, parseDigest, type Digest } from '../../oci/index.js';
import { collectGarbage, parseCompressedLayersRecord, type RootRef, type Store } from '../../store/index.js';
import { listCacheMounts, listStepCache, treeSize } from '../build-cache.js';
import { defineCommand, repeatable } from '../command.js';
import { humanSize, parseDuration } from '../format-output.js';
import { listStoreImages } from '../../image/index.js';

/** meta/compressed.<diffId hex> -> {variant: {digest, size}}: compressed copies kept for push/save. */
async function compressedVariants(store: Store, signal: AbortSignal): Promise<Map<Digest, Digest[]>> {
  const out = new Map<Digest, Digest[]>();
  for (const file of await readdir(store.paths.meta).catch(() => [] as string[])) {
    const m = /^compressed\.([a-f0-9]{64})\.json$/.exec(file);
    if (!m) continue;
    const doc = parseCompressedLayersRecord(await store.readMeta(file.slice(0, -5), { signal, maxBytes: 64 * 1024 }).catch(() => undefined));
    const list = Object.values(doc).map((v) => v.digest);
    out.set(parseDigest(`sha256:${m[1]}`), list);
  }
  return out;
}

/**
 * meta documents about one blob (layer-index.<hex>, compressed.<hex>) whose blob is gone, the
 * recorded views of layer stacks (view.<hex>) of which a layer is gone, and the keys of COPY
 * --from and ADD steps (copy-alias.<hex>) whose step entry is gone.
 */
async function removeOrphanMeta(store: Store, signal: AbortSignal): Promise<void> {
  const read = async (file: string): Promise<Record<string, unknown> | undefined> =>
    (await store.readMeta(file.slice(0, -5), { signal, memo: true }).catch(() => undefined)) as Record<string, unknown> | undefined;
  const orphaned = async (file: string): Promise<boolean> => {
    const blob = /^(?:layer-index|compressed)\.([a-f0-9]{64})\.json$/.exec(file);
    if (blob) return !(await store.blobs.hasBlob(parseDigest(`sha256:${blob[1]}`)));
    if (/^view\.[a-f0-9]{64}\.json$/.test(file)) {
      const layers = (await read(file))?.layers;
      if (!Array.isArray(layers) || layers.length === 0) return true;
      for (const d of layers) if (typeof d !== 'string' || !isDigest(d) || !(await store.blobs.hasBlob(d))) return true;
      return false;
    }
    if (/^copy-alias\.[a-f0-9]{64}\.json$/.test(file)) {
      // A COPY --from's or ADD's key (engine/copy-step.ts copyAlias) whose step entry is gone.
      const key = (await read(file))?.key;
      return typeof key !== 'string' || !isDigest(key) || (await read(`step.${key.slice('sha256:'.length)}.json`)) === undefined;
    }
    return false;
  };
  for (const file of await readdir(store.paths.meta).catch(() => [] as string[])) {
    if (await orphaned(file)) await store.withLock(() => rm(join(store.paths.meta, file), { force: true }), { signal });
  }
}

export const pruneCommand = defineCommand({
  builder: (y) =>
    y
      .option('all', { alias: 'a', type: 'boolean', default: false, describe: 'Also remove the build cache (step cache entries, their layers and snapshots)' })
      .option('filter', { type: 'string', describe: 'until=DURATION: only what is older (e.g. until=24h); default 1h keeps what a running build just wrote' })
      .option('cache-mounts', { type: 'boolean', default: false, describe: 'Also empty the RUN --mount=type=cache directories' })
      .option('force', { alias: 'f', type: 'boolean', default: false, describe: 'Do not prompt (tsbuild never prompts)' }),
  run: async (args, ctx) => {
    const signal = ctx.io.signal;
    let untilMs: number | undefined;
    for (const spec of repeatable(args.filter)) {
      const [key, value = ''] = spec.split(/=(.*)/s, 2);
      if (key !== 'until') throw new TsbuildError('USAGE', `invalid filter '${key ?? spec}'`, { hint: 'prune supports --filter until=DURATION (e.g. 24h, 90m)' });
      untilMs = parseDuration(value);
      if (untilMs === undefined) throw new TsbuildError('USAGE', `invalid duration in filter 'until=${value}'`, { hint: 'durations look like 24h, 90m, 30s, 1h30m' });
    }
    const store = await ctx.store();
    // Step dirs (and ssh-agent proxy dirs) of SIGKILLed tsbuilds live outside the store, in the
    // temp dir: prune clears those of dead processes too, as a build does when it starts.
    await sweepDeadRuns();
    const now = Date.now();
    const olderThan = (mtimeMs: number): boolean => untilMs === undefined || now - mtimeMs >= untilMs;

    const before = await listStoreImages(store, { signal });
    const dangling = before.filter((i) => i.tags.length === 0);

    // Step cache: kept (as gc roots) unless --all removes the entries old enough.
    let removedCacheEntries = 0;
    const cacheRoots: RootRef[] = [];
    for (const e of await listStepCache(store, signal)) {
      if (args.all && olderThan(e.mtimeMs)) {
        await store.withLock(() => rm(join(store.paths.meta, `${e.name}.json`), { force: true }), { signal });
        removedCacheEntries++;
      } else if (e.diffId) cacheRoots.push(e.diffId);
    }
    // Compressed copies of layers: of every layer without --all, of kept images' layers with it.
    const variants = await compressedVariants(store, signal);
    const taggedLayers = new Set(before.filter((i) => i.tags.length > 0).flatMap((i) => i.images.flatMap((image) => image.config.rootfs.diff_ids)));
    const variantRoots: RootRef[] = [...variants].flatMap(([diffId, list]) => (!args.all || taggedLayers.has(diffId) || cacheRoots.includes(diffId) ? list : []));

    // Snapshot bytes are not counted by gc; measure the ones it may take.
    // A tagged image's flattened chains stay too: a pull makes them for the builds to come.
    const { snapshotNamesFor } = await import('../../snapshot/index.js');
    const taggedChains = before.filter((i) => i.tags.length > 0).flatMap((i) => i.images.flatMap((image) => snapshotNamesFor(image.config.rootfs.diff_ids)));
    const keepSnaps = new Set<Digest>([...taggedLayers, ...taggedChains, ...cacheRoots.filter((r): r is Digest => typeof r === 'string')]);
    const snapSizes = new Map<Digest, number>();
    for (const id of await store.listSnapshots()) if (!keepSnaps.has(id)) snapSizes.set(id, await treeSize(store.snapshotPath(id), signal));

    const gc = await collectGarbage(store, {
      extraRoots: [...cacheRoots, ...variantRoots],
      // Snapshots of tagged images (their layers' and flattened chains') and of the remaining
      // build cache stay.
      keepSnapshots: [...keepSnaps],
      ...(untilMs !== undefined ? { graceMs: untilMs } : {}),
      signal,
    });
    let reclaimed = gc.freedBytes;
    for (const [id, size] of snapSizes) if (!(await store.hasSnapshot(id))) reclaimed += size;
    await removeOrphanMeta(store, signal);
    // A step's last-key record (why it missed) whose entry --all removed points nowhere now.
    if (removedCacheEntries > 0) await pruneLastKeyRecords(store, signal);

    if (args['cache-mounts']) {
      for (const m of await listCacheMounts(store)) {
        if (!olderThan(m.mtimeMs)) continue;
        reclaimed += await treeSize(m.path, signal);
        await store.removeTree(m.path, signal);
      }
    }

    const deleted: string[] = [];
    for (const d of dangling) if (!(await store.blobs.hasBlob(d.image.manifestDescriptor.digest))) deleted.push(d.image.configDescriptor.digest);
    if (deleted.length > 0) {
      ctx.io.stdout.write('Deleted Images:\n');
      for (const id of deleted) ctx.io.stdout.write(`deleted: ${id}\n`);
      ctx.io.stdout.write('\n');
    }
    if (removedCacheEntries > 0 || gc.removedSnapshots > 0) {
      ctx.io.stdout.write(`Deleted build cache entries: ${removedCacheEntries}, snapshots: ${gc.removedSnapshots}\n\n`);
    }
    if (gc.keptYoung > 0) {
      ctx.logger().info({ keptYoung: gc.keptYoung }, 'prune kept unreferenced data younger than the grace period');
    }
    ctx.io.stdout.write(`Total reclaimed space: ${humanSize(reclaimed)}\n`);
    return 0;
  },
});
