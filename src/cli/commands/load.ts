import fs from 'node:fs/promises';
import { defineCommand } from '../command.js';
import { TsbuildError } from '../../errors.js';
import { loadArchive } from '../../store/archive-import.js';
import { familiar } from '../../store/archive-export.js';

export const loadCommand = defineCommand({
  builder: (y) => y.option('input', { alias: 'i', type: 'string', demandOption: true, describe: 'Archive file (tar, optionally gzipped)' }),
  run: async (args, ctx) => {
    try {
      await fs.access(args.input);
    } catch {
      throw new TsbuildError('ARCHIVE_INVALID', `cannot read ${args.input}: no such file`);
    }
    const store = await ctx.store();
    const images = await loadArchive(store, args.input, { signal: ctx.io.signal });
    for (const image of images) {
      if (image.names.length === 0) ctx.io.stdout.write(`Loaded image ID: ${image.image.configDescriptor.digest}\n`);
      for (const n of image.names) ctx.io.stdout.write(`Loaded image: ${familiar(n)}\n`);
    }
    return 0;
  },
});
