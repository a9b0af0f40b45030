import path from 'node:path';
import { defineCommand } from '../command.js';
import { TsbuildError } from '../../errors.js';
import { getLocalImage } from '../../image/index.js';
import { exportDockerArchive, exportOciArchive, type ExportImage } from '../../store/archive-export.js';

export const saveCommand = defineCommand({
  builder: (y) =>
    y
      .positional('images', { type: 'string', array: true, demandOption: true, describe: 'Image names or IDs' })
      .option('output', { alias: 'o', type: 'string', describe: 'Archive file to write (default: stdout)' })
      .option('format', { choices: ['docker', 'oci'] as const, default: 'docker' as const, describe: 'Archive format' }),
  run: async (args, ctx) => {
    const dest = args.output ? path.resolve(ctx.io.cwd, args.output) : '-';
    if (dest === '-' && (ctx.io.stdout as { isTTY?: boolean }).isTTY) {
      throw new TsbuildError('USAGE', 'refusing to write an archive to a terminal; use -o FILE or redirect stdout');
    }
    const store = await ctx.store();
    const images: ExportImage[] = [];
    for (const name of args.images) {
      const image = await getLocalImage(store, name, { signal: ctx.io.signal });
      images.push({ ...image, names: image.name ? [image.name] : [] });
    }
    if (args.format === 'oci') await exportOciArchive(store, images, dest, { compression: 'gzip', signal: ctx.io.signal });
    else await exportDockerArchive(store, images, dest, { signal: ctx.io.signal });
    return 0;
  },
});
