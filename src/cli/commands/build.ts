import path from 'node:path';
import { defineCommand, repeatable } from '../command.js';
import { TsbuildError } from '../../errors.js';
import { openSshSources, parseAddHost } from '../../engine/index.js';
import { runResourcesFromFlags } from './run-resource-flags.js';
import type { BuildRequest, OutputSpec } from '../../engine/request.js';
import { normalizeName } from '../../image/local-image.js';
import { checkPlatforms, sourceDateEpoch, parseBuildArgs, parseLabels, parseOutputFlag, parseSecrets, readDockerfile, resolveContextDir, runBuild, snapshotterFromEnv, withDefaultOutputs } from '../../api/index.js';
import { createReporter, type ProgressMode } from '../progress.js';
import { registryClientFor, registryOptions } from './pull.js';
import { commandBuildEnv } from '../build-env.js';


async function readStdin(stdin: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
  return Buffer.concat(chunks);
}

export const buildCommand = defineCommand({
  builder: (y) =>
    registryOptions(y)
      .positional('context', { type: 'string', default: '.', describe: 'Build context directory' })
      .option('file', { alias: 'f', type: 'string', describe: 'Dockerfile (default: CONTEXT/Dockerfile; "-" reads stdin)' })
      .option('tag', { alias: 't', type: 'string', default: [] as string[], coerce: repeatable, describe: 'Name the image (repeatable)' })
      .option('target', { type: 'string', describe: 'Build this stage (and what it needs) only' })
      .option('build-arg', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Build argument NAME=VALUE, or NAME to take it from the environment' })
      .option('label', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Set a label KEY=VALUE on the image' })
      .option('no-cache', { type: 'boolean', default: false, describe: 'Do not use the step cache' })
      .option('no-cache-filter', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Do not use the cache for these stages (repeatable, or comma-separated)' })
      .option('output', { alias: 'o', type: 'string', default: [] as string[], coerce: repeatable, describe: 'type=image|oci|oci-layout|docker|local|tar[,dest=PATH][,compression=gzip|zstd|uncompressed]; type=local leaves out device nodes and setuid/setgid bits unless preserve-special=true' })
      .option('iidfile', { type: 'string', describe: 'Write the image ID to this file' })
      .option('metadata-file', { type: 'string', describe: 'Write build metadata (digests) as JSON to this file' })
      .option('platform', { type: 'string', describe: 'Target platform (only the host platform is supported)' })
      .option('secret', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR' })
      .option('ssh', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'SSH agent for RUN --mount=type=ssh: default (uses $SSH_AUTH_SOCK), ID=SOCKET or ID=KEYFILE[,KEYFILE]' })
      .option('add-host', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Add NAME:IP to /etc/hosts of RUN steps (repeatable)' })
      .option('shm-size', { type: 'string', coerce: (v: unknown) => (v === undefined ? undefined : repeatable(v).at(-1)), describe: 'Size of /dev/shm of RUN steps, e.g. 64m, 1g or bytes (default 64m; the last one given wins)' })
      .option('ulimit', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Resource limit of RUN steps NAME=SOFT[:HARD], docker\'s names (nofile, nproc, core, ...; repeatable)' })
      .option('allow', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Grant an entitlement: security.insecure (for RUN --security=insecure), network.host' })
      .option('network', { choices: ['host', 'none', 'default'] as const, default: 'default' as const, describe: 'Network of RUN steps (default: the host\'s)' })
      .option('runtime', { choices: ['bwrap', 'runc'] as const, default: 'bwrap' as const, describe: 'Sandbox of RUN steps' })
      .option('isolation', {
        choices: ['auto', 'sandbox', 'chroot', 'none'] as const,
        default: 'auto' as const,
        describe: 'How RUN steps are isolated: sandbox (bwrap/runc), chroot (root), none (no isolation); auto steps down to chroot with a warning where namespaces are blocked',
      })
      .option('pull', {
        type: 'string',
        describe: 'Base images: missing (default: the store first), always, never; --pull alone means always',
        coerce: (v: unknown) => {
          const s = v === true || v === '' || v === 'true' ? 'always' : v === false || v === 'false' ? 'missing' : String(v);
          if (!['missing', 'always', 'never'].includes(s)) throw new TsbuildError('USAGE', `--pull must be missing, always or never, not ${JSON.stringify(s)}`);
          return s as 'missing' | 'always' | 'never';
        },
      })
      .option('push', { type: 'boolean', default: false, describe: 'Push every tag to its registry after the build' })
      .option('progress', { choices: ['auto', 'plain', 'tty', 'json', 'quiet'] as const, default: 'auto' as const, describe: 'Progress output on stderr' })
      .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Print only the image ID' }),
  run: async (args, ctx) => {
    const io = ctx.io;
    const contextDir = await resolveContextDir(args.context, io.cwd);
    const dockerfile = await readDockerfile({ contextDir, file: args.file, cwd: io.cwd, readStdin: () => readStdin(io.stdin) });
    if (args.platform) checkPlatforms([args.platform]);
    const tags = args.tag.map((t) => normalizeName(t));
    const outputs: OutputSpec[] = withDefaultOutputs(tags, args.output.map((o) => parseOutputFlag(o, io.cwd)));
    const epoch = sourceDateEpoch(io.env);
    const req: BuildRequest = {
      contextDir,
      dockerfile,
      tags,
      ...(args.target ? { target: args.target } : {}),
      buildArgs: parseBuildArgs(args['build-arg'], io.env),
      labels: parseLabels(args.label),
      noCache: args['no-cache'],
      pull: args.pull ?? 'missing',
      push: args.push,
      noCacheFilter: args['no-cache-filter'].flatMap((s) => s.split(',')).map((s) => s.trim().toLowerCase()).filter(Boolean),
      outputs,
      ...(args.iidfile ? { iidFile: path.resolve(io.cwd, args.iidfile) } : {}),
      ...(args['metadata-file'] ? { metadataFile: path.resolve(io.cwd, args['metadata-file']) } : {}),
      ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
      secrets: await parseSecrets(args.secret, io.env, io.cwd),
      network: args.network === 'none' ? 'none' : 'host',
      ...(args['add-host'].length > 0 ? { extraHosts: args['add-host'].map(parseAddHost) } : {}),
      ...(await runResourcesFromFlags({ shmSize: args['shm-size'], ulimit: args.ulimit, allow: args.allow })),
      runtime: args.runtime,
      isolation: args.isolation,
      snapshotter: snapshotterFromEnv(io.env),
    };
    if (args.push && tags.length === 0) throw new TsbuildError('USAGE', '--push needs at least one -t NAME to push to');
    let registry: ReturnType<typeof registryClientFor> | undefined;
    const progress: ProgressMode = args.quiet ? 'quiet' : args.progress;
    const ssh = await openSshSources(args.ssh, io.env, io.cwd);
    let result: Awaited<ReturnType<typeof runBuild>>;
    try {
      const env = await commandBuildEnv(ctx, { report: createReporter(progress, io.stderr), registry: () => (registry ??= registryClientFor(args, ctx)) });
      result = await runBuild({ ...req, ...(ssh.sockets.size > 0 ? { sshSockets: ssh.sockets } : {}) }, env);
    } finally {
      await ssh.close();
    }
    io.stdout.write(`${result.imageId}\n`);
    return 0;
  },
});
