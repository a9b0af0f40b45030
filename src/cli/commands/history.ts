import { defineCommand } from '../command.js';
import { createdSince, humanSize, writeListing, type Listing } from '../format-output.js';
import { resolveImageArg, shortId, storeImageForPlatform } from '../../image/index.js';
import { parsePlatform } from '../../oci/index.js';

interface HistoryRow {
  readonly id: string;
  readonly created: string | undefined;
  readonly createdBy: string;
  readonly size: number;
  readonly comment: string;
}

/** docker's stringutils.Ellipsis: at most `max` characters, the last one an ellipsis. */
function ellipsis(s: string, max: number): string {
  const chars = [...s];
  return chars.length <= max ? s : `${chars.slice(0, max - 1).join('')}…`;
}

export const historyCommand = defineCommand({
  builder: (y) =>
    y
      .positional('image', { type: 'string', demandOption: true, describe: 'Image name or ID' })
      .option('human', { alias: 'H', type: 'boolean', default: true, describe: 'Sizes and dates in human readable form (-H=false for raw)' })
      .option('no-trunc', { type: 'boolean', default: false, describe: "Don't truncate output" })
      .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Only image IDs' })
      .option('format', { type: 'string', describe: 'table (default), json, or a Go template such as {{.CreatedBy}}' })
      .option('platform', { type: 'string', describe: 'Of a multi-platform image, the image for this platform (default: this machine\'s, else the first)' }),
  run: async (args, ctx) => {
    const store = await ctx.store();
    const platform = args.platform !== undefined ? parsePlatform(args.platform) : undefined;
    const found = await resolveImageArg(store, args.image, { signal: ctx.io.signal, asStored: true });
    const { image } = platform !== undefined ? storeImageForPlatform(found, platform, args.image) : found;
    const layers = image.manifest.layers;
    const history = image.config.history ?? [];
    const rows: HistoryRow[] = [];
    let layer = 0;
    for (const h of history) {
      const empty = h.empty_layer === true;
      const size = empty ? 0 : (layers[layer]?.size ?? 0);
      if (!empty) layer++;
      rows.push({ id: '<missing>', created: h.created, createdBy: h.created_by ?? '', size, comment: h.comment ?? '' });
    }
    // Layers the history does not account for (an image written by a tool that keeps none).
    for (; layer < layers.length; layer++) rows.push({ id: '<missing>', created: undefined, createdBy: '', size: layers[layer]?.size ?? 0, comment: '' });
    rows.reverse();
    // Only the image itself exists locally as an image; the steps below it were never images
    // of this store, which docker shows as <missing> too (BuildKit-built images).
    const top = rows[0];
    if (top) rows[0] = { ...top, id: args['no-trunc'] ? image.configDescriptor.digest : shortId(image.configDescriptor.digest) };

    if (args.quiet) {
      for (const r of rows) ctx.io.stdout.write(`${r.id}\n`);
      return 0;
    }
    const now = new Date();
    const human = args.human;
    const listing: Listing<HistoryRow> = {
      columns: ['ID', 'CreatedSince', 'CreatedBy', 'Size', 'Comment'],
      headers: { ID: 'IMAGE', CreatedSince: 'CREATED', CreatedAt: 'CREATED AT', CreatedBy: 'CREATED BY', Size: 'SIZE', Comment: 'COMMENT' },
      fields: (r) => {
        const by = r.createdBy.replace(/\t/g, ' ');
        const at = r.created && !Number.isNaN(Date.parse(r.created)) ? new Date(r.created).toISOString().replace(/\.\d+Z$/, 'Z') : '';
        return {
          ID: r.id,
          CreatedSince: human ? createdSince(r.created, now) : at,
          CreatedAt: at,
          CreatedBy: args['no-trunc'] ? by : ellipsis(by, 45),
          Size: human ? humanSize(r.size) : String(r.size),
          Comment: r.comment,
        };
      },
    };
    writeListing(ctx.io.stdout, rows, listing, args.format);
    return 0;
  },
});
