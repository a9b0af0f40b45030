import fs from 'node:fs/promises';
import path from 'node:path';
import type { Argv, ArgumentsCamelCase } from 'yargs';
import { defineCommand, repeatable, type CommandContext } from '../command.js';
import type { GlobalArgs } from '../global-options.js';
import { TsbuildError } from '../../errors.js';
import { checkDockerfile, openSshSources, parseAddHost } from '../../engine/index.js';
import { formatCheckReport } from '../format-checks.js';
import { contextKind, fetchRemoteContext, redactUrl } from '../../context/index.js';
import { STDIN_CONTEXT } from './index.js';
import { runResourcesFromFlags } from './run-resource-flags.js';
import type { BuildRequest, OutputSpec } from '../../engine/index.js';
import { normalizeName, parseAnnotations } from '../../image/index.js';
import { hostPlatform } from '../../oci/index.js';
import { parsePlatforms, sourceDateEpoch, parseBuildArgs, parseLabels, parseOutputFlag, parseSecrets, readDockerfile, resolveContextDir, runBuild, runSyncFromEnv, snapshotterFromEnv, withDefaultOutputs } from '../../api/index.js';
import { createReporter, type ProgressMode } from '../../api/index.js';
import { registryClientFor, registryOptions } from './pull.js';
import { parseCacheExport, parseCacheImport } from '../../remote-cache/index.js';
import { commandBuildEnv } from '../build-env.js';
import { resolveNamedContexts } from '../named-contexts.js';

async function readStdin(stdin: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c));
  return Buffer.concat(chunks);
}

const buildFlags = (y: Argv<GlobalArgs>) =>
  registryOptions(y)
    .positional('context', { type: 'string', default: '.', describe: 'Build context: a directory, a git URL (URL#REF:SUBDIR), a tarball URL, or - (a tar on stdin)' })
    .option('file', { alias: 'f', type: 'string', describe: 'Dockerfile (default: CONTEXT/Dockerfile; "-" reads stdin)' })
    .option('tag', { alias: 't', type: 'string', default: [] as string[], coerce: repeatable, describe: 'Name the image (repeatable)' })
    .option('target', { type: 'string', describe: 'Build this stage (and what it needs) only' })
    .option('build-arg', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Build argument NAME=VALUE, or NAME to take it from the environment' })
    .option('annotation', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Annotation [TYPE[,TYPE][[PLATFORM]]:]KEY=VALUE on the image manifest (TYPE manifest, the default) or its descriptor in OCI outputs (manifest-descriptor), as buildx' })
    .option('label', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Set a label KEY=VALUE on the image' })
    .option('no-cache', { type: 'boolean', default: false, describe: 'Do not use the step cache' })
    .option('cache-from', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Read build cache from type=registry,ref=REF | type=local,src=DIR | REF (an image pushed with inline cache); repeatable' })
    .option('cache-to', {
      type: 'string',
      default: [] as string[],
      coerce: repeatable,
      describe: 'Export build cache: type=registry,ref=REF | type=local,dest=DIR | type=inline, with [,mode=min|max][,compression=gzip|uncompressed][,ignore-error=true][,max-exports=N][,max-age=30d][,mounts=ID,...|all] (RUN --mount=type=cache dirs, registry and local); repeatable',
    })
    .option('no-cache-filter', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Do not use the cache for these stages (repeatable, or comma-separated)' })
    .option('output', { alias: 'o', type: 'string', default: [] as string[], coerce: repeatable, describe: 'type=image|registry|oci|oci-layout|docker|local|tar[,dest=PATH][,name=REF][,compression=gzip|zstd|uncompressed]; type=registry (or type=image,push=true) pushes to name= or the tags without keeping the image in the local store; type=local leaves out device nodes and setuid/setgid bits unless preserve-special=true' })
    .option('iidfile', { type: 'string', describe: 'Write the image ID to this file' })
    .option('metadata-file', { type: 'string', describe: 'Write build metadata (digests) as JSON to this file' })
    .option('platform', { type: 'string', coerce: repeatable, describe: 'Target platforms, comma-separated (linux/amd64,linux/arm64): one image each and an OCI image index' })
    .option('secret', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Secret for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR' })
    .option('ssh', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'SSH agent for RUN --mount=type=ssh: default (uses $SSH_AUTH_SOCK), ID=SOCKET or ID=KEYFILE[,KEYFILE]' })
    .option('build-context', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Named context NAME=DIR|docker-image://REF|GIT_URL|https://TARBALL for FROM NAME, COPY --from=NAME and RUN --mount from=NAME (repeatable)' })
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
    .option('push', { type: 'boolean', default: false, describe: 'Push every tag to its registry after the build (the image is also kept in the local store; -o type=registry pushes only)' })
    .option('progress', { choices: ['auto', 'plain', 'tty', 'json', 'quiet'] as const, default: 'auto' as const, describe: 'Progress output on stderr' })
    .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Print only the image ID' })
    .option('check', { type: 'boolean', default: false, describe: "Run BuildKit's build checks instead of building: print each finding, exit 1 if any (same as --call check)" })
    .option('call', { type: 'string', describe: 'build (default) or check' });
type BuildArgs = ArgumentsCamelCase<ReturnType<typeof buildFlags> extends Argv<infer A> ? A : never>;

export const buildCommand = defineCommand({
  builder: buildFlags,
  run: async (args, ctx) => {
    const io = ctx.io;
    if (args.context === STDIN_CONTEXT) args = { ...args, context: '-' };
    const kind = contextKind(args.context);
    if (kind === 'local') return buildInContext(args, ctx, { contextDir: await resolveContextDir(args.context, io.cwd) });
    if (kind === 'stdin' && args.file === '-') throw new TsbuildError('USAGE', 'the build context and the Dockerfile cannot both be read from stdin (-)');
    // A git repository, a tarball URL or a tar on stdin: fetched into a temporary directory
    // that is removed whatever happens, then built as a local context.
    const fetched = await fetchRemoteContext(args.context, kind, { signal: io.signal, stdin: io.stdin, toolPath: io.env.PATH });
    try {
      return await buildInContext(args, ctx, { contextDir: fetched.dir, remote: true, ...(fetched.dockerfile ? { dockerfileText: fetched.dockerfile } : {}) });
    } finally {
      await fetched.cleanup();
    }
  },
});

/** The Dockerfile of a build: -f, stdin, the fetched context's own, or CONTEXT/Dockerfile. */
async function dockerfileFor(args: BuildArgs, ctx: CommandContext, where: { contextDir: string; remote?: boolean; dockerfileText?: Buffer }): Promise<BuildRequest['dockerfile']> {
  const io = ctx.io;
  const contextDir = where.contextDir;
  if (args.file !== '-' && where.dockerfileText !== undefined && !args.file) return { name: 'Dockerfile', text: where.dockerfileText };
  if (args.file !== '-' && where.remote) {
    // In a fetched context, -f names a file inside it (buildx's rule for git contexts).
    const rel = args.file ?? 'Dockerfile';
    const p = path.resolve(contextDir, rel);
    if (p !== contextDir && !p.startsWith(contextDir + path.sep)) throw new TsbuildError('USAGE', `-f ${JSON.stringify(rel)} is outside the build context ${JSON.stringify(redactUrl(args.context))}`);
    const text = await fs.readFile(p).catch(() => {
      throw new TsbuildError('DOCKERFILE_NOT_FOUND', `cannot read the Dockerfile ${rel} in the build context ${redactUrl(args.context)}`, { hint: 'with a remote context, -f names a file inside it' });
    });
    return { name: rel, path: p, text };
  }
  return readDockerfile({ contextDir, file: args.file, cwd: io.cwd, readStdin: () => readStdin(io.stdin) });
}

/** The build (or the checks) in a local context directory; `remote` when it was fetched. */
async function buildInContext(args: BuildArgs, ctx: CommandContext, where: { contextDir: string; remote?: boolean; dockerfileText?: Buffer }): Promise<number> {
  const io = ctx.io;
  const contextDir = where.contextDir;
  const dockerfile = await dockerfileFor(args, ctx, where);
  const platforms = parsePlatforms(args.platform ?? []);
  const call = args.call ?? (args.check ? 'check' : 'build');
  if ((call !== 'build' && call !== 'check') || (args.check && call !== 'check')) {
    throw new TsbuildError('USAGE', `--call ${JSON.stringify(args.call)} is not supported${args.check ? ' with --check' : ''}: use --call build or --call check`);
  }
  if (call === 'check') {
    const { report, error } = await checkDockerfile(
      { dockerfile, contextDir, buildArgs: parseBuildArgs(args['build-arg'], io.env), ...(args.target ? { target: args.target } : {}) },
      { store: await ctx.store(), platform: hostPlatform(), signal: io.signal },
    );
    io.stdout.write(formatCheckReport(report, dockerfile.text.toString('utf8')));
    if (error !== undefined) throw error;
    return report.hits.length > 0 ? 1 : 0;
  }
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
    ...(args.annotation.length > 0 ? { annotations: parseAnnotations(args.annotation, hostPlatform()) } : {}),
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
    runSync: runSyncFromEnv(io.env),
    ...(platforms !== undefined ? { platforms } : {}),
    ...(args['cache-from'].length > 0 ? { cacheFrom: args['cache-from'].map((c) => parseCacheImport(c, io.cwd)) } : {}),
    ...(args['cache-to'].length > 0 ? { cacheTo: args['cache-to'].map((c) => parseCacheExport(c, io.cwd)) } : {}),
  };
  if (args.push && tags.length === 0) throw new TsbuildError('USAGE', '--push needs at least one -t NAME to push to');
  let registry: ReturnType<typeof registryClientFor> | undefined;
  const progress: ProgressMode = args.quiet ? 'quiet' : args.progress;
  const ssh = await openSshSources(args.ssh, io.env, io.cwd);
  let result: Awaited<ReturnType<typeof runBuild>>;
  try {
    // Fetched named contexts live in temporary directories removed whatever happens.
    const named = await resolveNamedContexts(args['build-context'], io.cwd, { signal: io.signal, toolPath: io.env.PATH });
    try {
      const env = await commandBuildEnv(ctx, { report: createReporter(progress, io.stderr), registry: () => (registry ??= registryClientFor(args, ctx)) });
      result = await runBuild({ ...req, ...(ssh.sockets.size > 0 ? { sshSockets: ssh.sockets } : {}), ...(named.contexts.size > 0 ? { namedContexts: named.contexts } : {}) }, env);
    } finally {
      await named.cleanup();
    }
  } finally {
    await ssh.close();
  }
  io.stdout.write(`${result.imageId}\n`);
  return 0;
}
