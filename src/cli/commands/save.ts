import path from 'node:path';
import { defineCommand } from '../command.js';
import { TsbuildError } from '../../errors.js';
import { exportEntryFor, normalizeName, resolveImageArg } from '../../image/index.js';
import { parsePlatform } from '../../oci/index.js';
import { exportDockerArchive, exportOciArchive, isExportIndex, type ExportImage, type ExportIndex } from '../../store/archive-export.js';

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
      entries.push(exportEntryFor(found, arg, names, { format: args.format, platform }));
    }
    if (args.format === 'oci') await exportOciArchive(store, entries, dest, { compression: 'gzip', signal: ctx.io.signal });
    else await exportDockerArchive(store, entries.filter((e): e is ExportImage => !isExportIndex(e)), dest, { signal: ctx.io.signal });
    return 0;
  },
});
