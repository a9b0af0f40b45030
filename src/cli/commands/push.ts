import { defineCommand } from '../command.js';
import { TsbuildError } from '../../errors.js';
import { normalizeName, resolveImageArg, storeImageForPlatform } from '../../image/index.js';
import { parsePlatform, parseReference } from '../../oci/index.js';
import type { PushProgress } from '../../registry/index.js';
import { registryClientFor, registryOptions, short } from './pull.js';

export const pushCommand = defineCommand({
  builder: (y) =>
    registryOptions(y)
      .positional('image', { type: 'string', demandOption: true, describe: 'Image in the local store (name or ID)' })
      .positional('destination', { type: 'string', describe: 'Where to push (default: the image name)' })
      .option('compression', { choices: ['gzip', 'zstd', 'uncompressed'] as const, default: 'gzip' as const, describe: 'Layer compression on the wire (zstd: OCI zstd layers, made by the zstd program)' })
      .option('compression-level', { type: 'number', describe: 'Level for layers compressed for this push: gzip 1-9 (default 4), zstd 1-22 (default 3); lower is faster, other digests' })
      .option('chunk-size', { type: 'number', describe: 'Upload in chunks of this many bytes (for registries that cap request size)' })
      .option('max-concurrent-uploads', { type: 'number', default: 4, describe: 'Blobs uploaded at once' })
      .option('platform', { type: 'string', describe: 'Of a multi-platform image, push only the image for this platform (default: every image, then the index)' })
      .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No progress output' }),
  run: async (args, ctx) => {
    const concurrency = args['max-concurrent-uploads'];
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new TsbuildError('USAGE', '--max-concurrent-uploads must be a positive integer');
    const chunkSize = args['chunk-size'];
    if (chunkSize !== undefined && (!Number.isInteger(chunkSize) || chunkSize < 1)) throw new TsbuildError('USAGE', '--chunk-size must be a positive number of bytes');
    const level = args['compression-level'];
    const max = args.compression === 'zstd' ? 22 : 9;
    if (level !== undefined && (!Number.isInteger(level) || level < 1 || level > max)) throw new TsbuildError('USAGE', `--compression-level must be 1 to ${max} for ${args.compression}`);
    const platform = args.platform !== undefined ? parsePlatform(args.platform) : undefined;
    // Named on the command line: the registry is asked for its endpoint (GET /v2/) while the
    // store is opened and the image read, not after.
    const named = args.destination !== undefined ? parseReference(args.destination) : undefined;
    let client = named !== undefined ? await registryClientFor(args, ctx) : undefined;
    // Called off if the push fails before it starts (no such image): closing the client waits
    // for requests under way, and a registry that does not answer would hold the error back.
    const early = new AbortController();
    let pushing = false;
    try {
      if (named !== undefined) client?.prepare(named.registry, { signal: AbortSignal.any([ctx.io.signal, early.signal]) });
      const store = await ctx.store();
      const found = await resolveImageArg(store, args.image, { signal: ctx.io.signal });
      let name: string | undefined;
      try {
        name = found.tags.find((t) => t === normalizeName(args.image));
      } catch {
        name = undefined;
      }
      // A multi-platform image goes whole (its images, then its index) unless --platform picks one.
      const index = platform === undefined && found.index !== undefined ? { ...found.index, ...(name !== undefined ? { name } : {}) } : undefined;
      const image = platform !== undefined ? storeImageForPlatform(found, platform, args.image).image : found.image;
      const destText = args.destination ?? name;
      if (destText === undefined) {
        throw new TsbuildError('USAGE', `image ${args.image} has no name to push to`, { hint: 'name the destination: tsbuild push IMAGE REGISTRY/REPOSITORY:TAG' });
      }
      const dest = named ?? parseReference(destText);
      client ??= await registryClientFor(args, ctx);
      const err = ctx.io.stderr;
      const onProgress = args.quiet
        ? undefined
        : (p: PushProgress): void => {
            if (p.type === 'layer') {
              const label = { preparing: 'Compressing', exists: 'Layer already exists', mounted: 'Mounted from another repository', uploading: 'Pushing', uploaded: 'Pushed' }[p.status];
              err.write(`${short(p.digest)}: ${label}\n`);
            } else if (p.type === 'config') {
              err.write(`${short(p.digest)}: ${p.status === 'exists' ? 'Config already exists' : 'Config pushed'}\n`);
            } else {
              err.write(`${p.reference}: digest: ${p.digest}\n`);
            }
          };
      const { pushImage, pushIndex } = await import('../../registry/index.js');
      const options = {
        compression: args.compression,
        signal: ctx.io.signal,
        concurrency,
        ...(chunkSize !== undefined ? { chunkSize } : {}),
        ...(level !== undefined ? { level } : {}),
        ...(onProgress ? { onProgress } : {}),
      };
      pushing = true;
      const pushed = index !== undefined ? await pushIndex(client, store, index, dest, options) : await pushImage(client, store, image, dest, options);
      ctx.io.stdout.write(`${pushed.digest}\n`);
      return 0;
    } finally {
      if (!pushing) early.abort();
      await client?.close();
    }
  },
});
