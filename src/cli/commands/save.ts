import path from 'node:path';
import { defineCommand } from '../command.js';
import { TsbuildError } from '../../errors.js';
import { normalizeName, platformList, resolveImageArg } from '../../image/index.js';
import { parsePlatform } from '../../oci/index.js';
import { exportDockerArchive, exportOciArchive, type ExportImage, type ExportIndex } from '../../store/archive-export.js';
import { imageForPlatform } from './inspect.js';

export const saveCommand = defineCommand({
  builder: (y) =>
    y
      .positional('images', { type: 'string', array: true, demandOption: true, describe: 'Image names or IDs' })
      .option('output', { alias: 'o', type: 'string', describe: 'Archive file to write (default: stdout)' })
      .option('format', { choices: ['docker', 'oci'] as const, default: 'docker' as const, describe: 'Archive format' })
      .option('platform', { type: 'string', describe: 'Of a multi-platform image, save only the image for this platform (needed for --format docker)' }),
  run: async (args, ctx) => {
    const dest = args.output ? path.resolve(ctx.io.cwd, args.output) : '-';
    if (dest === '-' && (ctx.io.stdout as { isTTY?: boolean }).isTTY) {
      throw new TsbuildError('USAGE', 'refusing to write an archive to a terminal; use -o FILE or redirect stdout');
    }
    const platform = args.platform !== undefined ? parsePlatform(args.platform) : undefined;
    const store = await ctx.store();
    const entries: Array<ExportImage | ExportIndex> = [];
    for (const arg of args.images) {
      const found = await resolveImageArg(store, arg, { signal: ctx.io.signal });
      let name: string | undefined;
      try {
        name = found.tags.find((t) => t === normalizeName(arg));
      } catch {
        name = undefined;
      }
      const names = name !== undefined ? [name] : [];
      const index = found.index;
      if (index !== undefined && platform === undefined && index.images.length > 1) {
        // A docker archive names one image per tag (manifest.json); buildx's docker exporter refuses the same.
        if (args.format === 'docker') {
          throw new TsbuildError('USAGE', `${arg} is a multi-platform image (${platformList(index)}); a docker archive holds one platform`, {
            hint: 'pick one with --platform (e.g. --platform linux/amd64), or write every platform with --format oci',
          });
        }
        entries.push({ kind: 'index', names, images: index.images.map((i) => ({ image: i.image, platform: i.platform, annotations: i.descriptor.annotations })), annotations: index.index.annotations });
        continue;
      }
      const image = platform !== undefined ? imageForPlatform(found, platform, arg).image : found.image;
      entries.push({ ...image, names });
    }
    if (args.format === 'oci') await exportOciArchive(store, entries, dest, { compression: 'gzip', signal: ctx.io.signal });
    else await exportDockerArchive(store, entries.filter((e): e is ExportImage => !('kind' in e)), dest, { signal: ctx.io.signal });
    return 0;
  },
});
