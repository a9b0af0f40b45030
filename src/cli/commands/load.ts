import fs from 'node:fs/promises';
import { defineCommand } from '../command.js';
import { TsbuildError } from '../../errors.js';
import { loadArchive } from '../../store/archive-import.js';
import { familiar } from '../../store/archive-export.js';
import { formatPlatform, parsePlatform } from '../../oci/index.js';

export const loadCommand = defineCommand({
  builder: (y) =>
    y
      .option('input', { alias: 'i', type: 'string', demandOption: true, describe: 'Archive file (tar, optionally gzipped)' })
      .option('platform', { type: 'string', describe: 'Of a multi-platform image in the archive, load only the image for this platform (default: every image, kept as one multi-platform image)' }),
  run: async (args, ctx) => {
    try {
      await fs.access(args.input);
    } catch {
      throw new TsbuildError('ARCHIVE_INVALID', `cannot read ${args.input}: no such file`);
    }
    const platform = args.platform !== undefined ? parsePlatform(args.platform) : undefined;
    const store = await ctx.store();
    const images = await loadArchive(store, args.input, { signal: ctx.io.signal, ...(platform !== undefined ? { platform } : {}) });
    for (const image of images) {
      if (image.names.length === 0) ctx.io.stdout.write(`Loaded image ID: ${image.index?.descriptor.digest ?? image.image.configDescriptor.digest}\n`);
      const platforms = image.index !== undefined ? ` (${image.index.images.map((i) => formatPlatform(i.platform)).join(', ')})` : '';
      for (const n of image.names) ctx.io.stdout.write(`Loaded image: ${familiar(n)}${platforms}\n`);
    }
    return 0;
  },
});
