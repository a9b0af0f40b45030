import fs from 'node:fs/promises';
import { defineCommand, repeatable } from '../command.js';
import { TsbuildError } from '../../errors.js';
import { importRootfsTar, normalizeName } from '../../image/index.js';
import { hostPlatform, parsePlatform } from '../../oci/index.js';
import { createdTime } from '../../api/index.js';

export const importCommand = defineCommand({
  builder: (y) =>
    y
      .positional('file', { type: 'string', demandOption: true, describe: 'Root filesystem tarball' })
      .positional('name', { type: 'string', demandOption: true, describe: 'Name of the new image, e.g. busybox:latest' })
      .option('cmd', { type: 'string', coerce: repeatable, describe: 'CMD of the new image (exec form words)' })
      .option('env', { type: 'string', coerce: repeatable, describe: 'ENV entries NAME=VALUE' })
      .option('message', { alias: 'm', type: 'string', describe: 'Comment for the history entry' })
      .option('platform', { type: 'string', describe: "Platform the config names (os/arch[/variant], default this machine's); the files are taken as they are" }),
  run: async (args, ctx) => {
    const name = normalizeName(args.name);
    const platform = args.platform !== undefined ? parsePlatform(args.platform) : hostPlatform();
    try {
      await fs.access(args.file);
    } catch {
      throw new TsbuildError('CONTEXT_NOT_FOUND', `cannot read ${args.file}: no such file`);
    }
    const store = await ctx.store();
    const created = createdTime(ctx.io.env);
    const sealed = await importRootfsTar(store, args.file, {
      platform,
      created,
      config: {
        ...(args.cmd ? { Cmd: args.cmd } : {}),
        ...(args.env ? { Env: args.env } : {}),
      },
      ...(args.message ? { comment: args.message } : {}),
      signal: ctx.io.signal,
    });
    await store.setTag(name, sealed.manifestDescriptor, { signal: ctx.io.signal });
    ctx.io.stdout.write(`${sealed.configDescriptor.digest}\n`);
    return 0;
  },
});
