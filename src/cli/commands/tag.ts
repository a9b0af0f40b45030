import { defineCommand } from '../command.js';
import { normalizeName, resolveImageArg } from '../../image/index.js';

export const tagCommand = defineCommand({
  builder: (y) =>
    y
      .positional('source', { type: 'string', demandOption: true, describe: 'Image name or ID' })
      .positional('target', { type: 'string', demandOption: true, describe: 'New name, e.g. localhost:5000/app:v2' }),
  run: async (args, ctx) => {
    const target = normalizeName(args.target);
    const store = await ctx.store();
    // A tag names what the source tag names (an index stays an index); an ID names its manifest.
    let source;
    try {
      source = await store.getTag(normalizeName(args.source), { signal: ctx.io.signal });
    } catch {
      source = undefined;
    }
    let desc = source;
    if (desc === undefined) {
      // By ID: an image ID names its manifest, an index digest (prefix) the index.
      const found = await resolveImageArg(store, args.source, { signal: ctx.io.signal, asStored: true });
      desc = found.index !== undefined ? found.index.descriptor : found.image.manifestDescriptor;
    }
    await store.setTag(target, desc, { signal: ctx.io.signal });
    return 0;
  },
});
