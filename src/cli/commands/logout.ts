import os from 'node:os';
import { defineCommand } from '../command.js';
import { TsbuildError } from '../../errors.js';
import { registryArgument } from './login.js';

export const logoutCommand = defineCommand({
  builder: (y) => y.positional('registry', { type: 'string', demandOption: true, describe: 'Registry host[:port]' }),
  run: async (args, ctx) => {
    const registry = registryArgument(args.registry);
    let removed = false;
    const { authFilesFromEnv, removeCredential } = await import('../../registry/index.js');
    for (const file of authFilesFromEnv(ctx.io.env, ctx.io.env.HOME || os.homedir())) {
      if (await removeCredential(file, registry, { signal: ctx.io.signal })) removed = true;
    }
    if (!removed) throw new TsbuildError('USAGE', `not logged in to ${registry}`, { exitCode: 1 });
    ctx.io.stdout.write(`Removed login credentials for ${registry}\n`);
    return 0;
  },
});
