import os from 'node:os';
import { defineCommand } from '../command.js';
import { TsbuildError } from '../../errors.js';
import { normalizeRegistry, parseReference } from '../../oci/index.js';
import { registryOptions } from './pull.js';

/** `https://host:5000/v1/` or `host:5000` -> `host:5000`; `index.docker.io` -> `docker.io`. */
export function registryArgument(text: string): string {
  let t = text.trim().replace(/^[a-z]+:\/\//i, '');
  const slash = t.indexOf('/');
  if (slash !== -1) t = t.slice(0, slash);
  if (t === '') throw new TsbuildError('USAGE', `invalid registry ${JSON.stringify(text)}`);
  // Check the host part with the reference grammar.
  parseReference(`${t}/x`);
  return normalizeRegistry(t === 'registry-1.docker.io' ? 'docker.io' : t);
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
  return Buffer.concat(chunks).toString('utf8');
}

export const loginCommand = defineCommand({
  builder: (y) =>
    registryOptions(y)
      .positional('registry', { type: 'string', demandOption: true, describe: 'Registry host[:port]' })
      .option('username', { alias: 'u', type: 'string', describe: 'User name' })
      .option('password', { alias: 'p', type: 'string', describe: 'Password (prefer --password-stdin: arguments are visible to other users)' })
      .option('password-stdin', { type: 'boolean', default: false, describe: 'Read the password from stdin' }),
  run: async (args, ctx) => {
    const registry = registryArgument(args.registry);
    const username = args.username;
    if (username === undefined || username === '') throw new TsbuildError('USAGE', 'login needs a user name: -u USER');
    if (args['password-stdin'] && args.password !== undefined) throw new TsbuildError('USAGE', '--password and --password-stdin are mutually exclusive');
    let password = args.password;
    if (args['password-stdin']) password = (await readAll(ctx.io.stdin)).replace(/\r?\n$/, '');
    if (password === undefined || password === '') throw new TsbuildError('USAGE', 'login needs a password: --password-stdin (recommended) or -p');
    if (args.password !== undefined) ctx.io.stderr.write('WARNING! Using --password via the CLI is insecure. Use --password-stdin.\n');
    const { dockerConfigPath, registryClientFromEnvironment, saveCredential, staticCredentials } = await import('../../registry/index.js');
    const client = await registryClientFromEnvironment({
      env: ctx.io.env,
      home: ctx.io.env.HOME || os.homedir(),
      insecureRegistries: args['insecure-registry'],
      caFiles: args['tls-ca-file'],
      logger: ctx.logger(),
      signal: ctx.io.signal,
      credentials: staticCredentials({ username, password }, registry),
    });
    try {
      await client.checkCredentials(registry, { signal: ctx.io.signal });
    } finally {
      await client.close();
    }
    const file = dockerConfigPath(ctx.io.env, ctx.io.env.HOME || os.homedir());
    await saveCredential(file, registry, { username, password }, { signal: ctx.io.signal });
    ctx.io.stdout.write('Login Succeeded\n');
    return 0;
  },
});
