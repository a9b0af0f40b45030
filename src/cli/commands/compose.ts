import { parseCacheExport, parseCacheImport } from '../../remote-cache/index.js';
import fs from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import { runResourcesFromFlags } from './run-resource-flags.js';
import { defineCommand, repeatable, type CommandContext } from '../command.js';
import { TsbuildError, isAbortError, isTsbuildError } from '../../errors.js';
import { composeBuildPlan, loadComposeProject, type ComposeBuild, type ComposeProject } from '../../compose/index.js';
import { build, InFlightSteps, openSshSources, parseAddHost, type BuildEvent, type BuildReporter, type BuildRequest, type NamedContext } from '../../engine/index.js';
import { normalizeName } from '../../image/index.js';
import { formatPlatform, hostPlatform, parsePlatform, platformMatches } from '../../oci/index.js';
import type { RegistryClient } from '../../registry/index.js';
import { commandBuildEnv } from '../build-env.js';
import { resolveNamedContexts, type NamedContexts } from '../named-contexts.js';
import { createReporter, type ProgressMode } from '../../api/index.js';
import { parseBuildArgs, parseSecrets, runSyncFromEnv, snapshotterFromEnv, sourceDateEpoch } from '../../api/index.js';
import { registryClientFor, registryOptions } from './pull.js';

/**
 * Services built at once: enough to overlap one service's pulls and COPYs with another's RUNs
 * on a small machine. Known debt: services that reach the same step at the same moment both
 * run it; the step cache shares a step only once one of them has recorded it.
 */
const PARALLEL_BUILDS = 3;

export const composeCommand = defineCommand({
  builder: (y) =>
    registryOptions(y)
      .positional('action', { choices: ['config', 'build', 'push'] as const, demandOption: true, describe: 'config: print the resolved project; build: build the services; push: push their images' })
      .positional('service', { type: 'string', array: true, default: [] as string[], describe: 'Services to build or push (default: all)' })
      .option('file', { alias: 'f', type: 'string', default: [] as string[], coerce: repeatable, describe: 'Compose file (repeatable, merged in order; default: COMPOSE_FILE, else compose.yaml and its override file)' })
      .option('project-name', { alias: 'p', type: 'string', describe: 'Project name (default: COMPOSE_PROJECT_NAME, the name: key, else the directory name)' })
      .option('project-directory', { type: 'string', describe: 'Directory relative paths and .env are resolved from (default: the first file\'s directory)' })
      .option('env-file', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Read variables from this file instead of the project\'s .env (repeatable)' })
      .option('profile', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Enable services of this profile (repeatable; default: COMPOSE_PROFILES)' })
      .option('format', { choices: ['yaml', 'json'] as const, default: 'yaml' as const, describe: 'config: output format' })
      .option('services', { type: 'boolean', default: false, describe: 'config: print the service names, one a line' })
      .option('images', { type: 'boolean', default: false, describe: 'config: print the image names, one a line' })
      .option('no-cache', { type: 'boolean', default: false, describe: 'build: do not use the step cache' })
      .option('pull', { type: 'boolean', default: false, describe: 'build: always pull base images' })
      .option('build-arg', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'build: NAME=VALUE for every service (over the compose file\'s args)' })
      .option('push', { type: 'boolean', default: false, describe: 'build: push the images after they are built' })
      .option('print', { type: 'boolean', default: false, describe: 'build: print the build plan (one request per service, in build order) as JSON and build nothing' })
      .option('with-dependencies', { type: 'boolean', default: false, describe: 'build: also build what the named services depend on' })
      .option('progress', { choices: ['auto', 'plain', 'tty', 'json', 'quiet'] as const, default: 'auto' as const, describe: 'build: progress output on stderr' })
      .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'build, push: no progress output' }),
  run: async (args, ctx) => {
    const io = ctx.io;
    const named = (args.service ?? []).map(String);
    const listServices = args.services;
    const project = loadComposeProject({
      cwd: io.cwd,
      env: io.env,
      files: args.file,
      ...(args['project-name'] !== undefined ? { projectName: args['project-name'] } : {}),
      ...(args['project-directory'] !== undefined ? { projectDirectory: args['project-directory'] } : {}),
      envFiles: args['env-file'],
      profiles: args.profile,
      services: named,
    });
    if (args.action === 'config') return printConfig(project, { format: args.format, services: listServices, images: args.images }, io.stdout);
    let registry: Promise<RegistryClient> | undefined;
    const client = () => (registry ??= registryClientFor(args, ctx));
    try {
      if (args.action === 'push') return await pushServices(project, named, ctx, client, args.quiet);
      if (args.print) {
        io.stdout.write(`${JSON.stringify(composeBuildPlan(project, { only: named, withDependencies: args['with-dependencies'] }), null, 2)}\n`);
        return 0;
      }
      return await buildServices(project, named, ctx, client, {
        noCache: args['no-cache'],
        pull: args.pull,
        buildArgs: parseBuildArgs(args['build-arg'], io.env),
        push: args.push,
        withDependencies: args['with-dependencies'],
        progress: args.quiet ? 'quiet' : args.progress,
      });
    } finally {
      if (registry) await (await registry.catch(() => undefined))?.close();
    }
  },
});

function printConfig(project: ComposeProject, opts: { format: 'yaml' | 'json'; services: boolean; images: boolean }, out: NodeJS.WritableStream): number {
  const services = project.model.services as Record<string, Record<string, unknown>>;
  if (opts.services) {
    out.write(Object.keys(services).map((s) => `${s}\n`).join(''));
    return 0;
  }
  if (opts.images) {
    out.write(Object.entries(services).map(([name, s]) => `${typeof s.image === 'string' ? s.image : `${project.name}-${name}`}\n`).join(''));
    return 0;
  }
  // `$` is written as `$$`, as docker compose does, so the output loads again unchanged; YAML
  // 1.1 quoting keeps `yes`/`no`/`on` strings strings for 1.1 readers (compose v1, PyYAML).
  const model = escapeDollars(project.model);
  out.write(opts.format === 'json' ? `${JSON.stringify(model, null, 4)}\n` : stringify(model, { lineWidth: 0, version: '1.1' }));
  return 0;
}

function escapeDollars(v: unknown): unknown {
  if (typeof v === 'string') return v.replaceAll('$', '$$$$');
  if (Array.isArray(v)) return v.map(escapeDollars);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, escapeDollars(x)]));
  return v;
}

interface BuildFlags {
  readonly noCache: boolean;
  readonly pull: boolean;
  readonly buildArgs: ReadonlyMap<string, string>;
  readonly push: boolean;
  readonly withDependencies: boolean;
  readonly progress: ProgressMode;
}

/**
 * Every selected service's build in one process: one store, one reporter, at most
 * PARALLEL_BUILDS at once, each after the services whose images it uses. The first failure
 * aborts the others and is reported with its service's name.
 */
async function buildServices(project: ComposeProject, named: readonly string[], ctx: CommandContext, registry: () => Promise<RegistryClient>, flags: BuildFlags): Promise<number> {
  const io = ctx.io;
  const plan = composeBuildPlan(project, { only: named, withDependencies: flags.withDependencies });
  const report = serviceReporter(createReporter(flags.progress, io.stderr));
  for (const w of plan.warnings) report('', { type: 'warning', message: w });
  if (plan.builds.length === 0) {
    report('', { type: 'info', message: 'no service to build (none has a build section)' });
    return 0;
  }
  const failFast = new AbortController();
  const signal = AbortSignal.any([io.signal, failFast.signal]);
  // One env for every service: one store, and one set of steps in flight, so a step two
  // services reach at the same moment runs once.
  const env = { ...(await commandBuildEnv(ctx, { report: () => undefined, registry, signal })), inFlight: new InFlightSteps() };
  const builtRefs = new Map<string, string>();
  const done = new Map<string, Promise<void>>();
  let running = 0;
  const waiting: Array<() => void> = [];
  const slot = async (): Promise<void> => {
    if (running < PARALLEL_BUILDS) {
      running++;
      return;
    }
    await new Promise<void>((resolve) => waiting.push(resolve));
  };
  const release = (): void => {
    const next = waiting.shift();
    if (next) next();
    else running--;
  };
  let firstError: { service: string; err: unknown } | undefined;

  const runOne = async (b: ComposeBuild): Promise<void> => {
    await Promise.all(b.needs.map((n) => done.get(plan.sameAs.get(n) ?? n)));
    await slot();
    try {
      signal.throwIfAborted();
      const req = await serviceRequest(project, b, ctx, flags, (e) => report(b.service, e));
      const contexts = await serviceContexts(b, builtRefs, plan.sameAs, io);
      try {
        const ssh = await openSshSources(b.ssh, io.env, project.workingDir);
        try {
          await build({ ...req, ...(ssh.sockets.size > 0 ? { sshSockets: ssh.sockets } : {}), ...(contexts.contexts.size > 0 ? { namedContexts: contexts.contexts } : {}) }, { ...env, report: (e) => report(b.service, e) });
        } finally {
          await ssh.close();
        }
      } finally {
        await contexts.cleanup();
      }
      builtRefs.set(b.service, req.tags[0]!);
      report(b.service, { type: 'info', message: `Built ${req.tags[0]}` });
    } catch (err) {
      if (!firstError && !(isAbortError(err) && failFast.signal.aborted)) {
        firstError = { service: b.service, err };
        failFast.abort();
      }
      throw err;
    } finally {
      release();
    }
  };
  for (const b of plan.builds) done.set(b.service, runOne(b));
  await Promise.allSettled(done.values());
  if (firstError) throw forService(firstError.service, firstError.err);
  const services = [...plan.builds.map((b) => b.service), ...plan.sameAs.keys()].sort();
  if (flags.progress !== 'quiet') for (const s of services) io.stdout.write(`${s} ${builtRefs.get(plan.sameAs.get(s) ?? s)}\n`);
  return 0;
}

/** The first failure, its service named; codes, hints and Dockerfile locations are kept. */
function forService(service: string, err: unknown): unknown {
  if (isTsbuildError(err)) {
    return new TsbuildError(err.code, `service ${JSON.stringify(service)}: ${err.message}`, {
      ...(err.hint !== undefined ? { hint: err.hint } : {}),
      ...(err.location !== undefined ? { location: err.location } : {}),
      exitCode: err.exitCode,
      cause: err,
    });
  }
  return err;
}

/**
 * Step ids are per build; across services they are renumbered so every line of the shared
 * display is unique, and every step, warning and note is prefixed with its service's name.
 */
function serviceReporter(inner: BuildReporter): (service: string, e: BuildEvent) => void {
  const ids = new Map<string, number>();
  let next = 1;
  const idFor = (service: string, id: number): number => {
    const key = `${service}\u0000${id}`;
    let n = ids.get(key);
    if (n === undefined) ids.set(key, (n = next++));
    return n;
  };
  const tag = (service: string, text: string) => (service ? `[${service}] ${text}` : text);
  return (service, e) => {
    switch (e.type) {
      case 'step-start':
        return inner({ ...e, id: idFor(service, e.id), name: tag(service, e.name) });
      case 'step-cached':
        return inner({ ...e, id: idFor(service, e.id), name: tag(service, e.name) });
      case 'step-miss':
      case 'step-done':
      case 'step-error':
      case 'step-log':
        return inner({ ...e, id: idFor(service, e.id) });
      case 'warning':
      case 'info':
        return inner({ ...e, message: tag(service, e.message) });
      default:
        e satisfies never;
    }
  };
}

/**
 * A service's `additional_contexts` as the engine's named contexts, the way `--build-context`
 * takes them: `service:NAME` is the image that service's build just made; a path (made
 * absolute by the loader, relative to the service's context), `docker-image://REF`, a git or
 * tarball URL as `tsbuild build --build-context` has them (fetched ones removed by cleanup).
 */
async function serviceContexts(b: ComposeBuild, builtRefs: ReadonlyMap<string, string>, sameAs: ReadonlyMap<string, string>, io: CommandContext['io']): Promise<NamedContexts> {
  const values: string[] = [];
  const services = new Map<string, NamedContext>();
  for (const [name, ref] of Object.entries(b.additionalContexts)) {
    if (ref.startsWith('service:')) {
      const dep = ref.slice('service:'.length);
      services.set(name, { kind: 'image', ref: builtRefs.get(dep) ?? builtRefs.get(sameAs.get(dep) ?? dep)!, value: ref });
    } else values.push(`${name}=${ref}`);
  }
  const named = await resolveNamedContexts(values, b.context, { signal: io.signal, toolPath: io.env.PATH, what: `service ${JSON.stringify(b.service)}: additional context` });
  return { contexts: new Map([...named.contexts, ...services]), cleanup: () => named.cleanup() };
}

/** A service's build as an engine request, the way `tsbuild build` makes one from flags. */
async function serviceRequest(
  project: ComposeProject,
  b: ComposeBuild,
  ctx: CommandContext,
  flags: BuildFlags,
  warn: (e: BuildEvent) => void,
): Promise<BuildRequest> {
  const io = ctx.io;
  const where = `service ${JSON.stringify(b.service)}`;
  // One platform per service: a foreign one is built (its RUN steps emulated); several would
  // make an index, which compose push and the services built on this one do not handle yet.
  const platforms = b.platforms.map((p) => parsePlatform(p));
  if (platforms.length > 1) {
    throw new TsbuildError('UNSUPPORTED', `${where}: build.platforms names ${platforms.length} platforms (${platforms.map(formatPlatform).join(', ')}); compose builds one platform per service`, {
      hint: 'keep one platform here, or build the image with `tsbuild build --platform A,B`',
    });
  }
  // build.cache_from / build.cache_to: buildx's grammar, as --cache-from / --cache-to; a local directory is relative to the project.
  const cacheFrom = b.cacheFrom.map((c) => parseCacheImport(c, project.workingDir));
  const cacheTo = b.cacheTo.map((c) => parseCacheExport(c, project.workingDir));
  if (b.network !== undefined && !['host', 'none', 'default'].includes(b.network)) warn({ type: 'warning', message: `build.network ${b.network} is not a network here: RUN steps use the host's` });

  let text: Buffer;
  try {
    text = b.dockerfileInline !== undefined ? Buffer.from(b.dockerfileInline) : await fs.readFile(b.dockerfile!);
  } catch {
    throw new TsbuildError('DOCKERFILE_NOT_FOUND', `${where}: cannot read the Dockerfile ${b.dockerfile}`);
  }
  const buildArgs = new Map<string, string>();
  for (const [k, v] of Object.entries(b.args)) {
    const value = v ?? project.variables.get(k);
    if (value !== undefined) buildArgs.set(k, value);
  }
  for (const [k, v] of flags.buildArgs) buildArgs.set(k, v);
  const secretFlags = b.secrets.map((s) => ('file' in s ? `id=${s.id},src=${s.file}` : `id=${s.id},env=${s.env}`));
  const tags = [b.image, ...b.tags].map((t) => normalizeName(t));
  const epoch = sourceDateEpoch(io.env);
  const name = b.dockerfile ? path.relative(io.cwd, b.dockerfile) || 'Dockerfile' : `${b.service}:dockerfile_inline`;
  return {
    contextDir: b.context,
    dockerfile: { name, ...(b.dockerfile ? { path: b.dockerfile } : {}), text },
    tags,
    ...(b.target ? { target: b.target } : {}),
    buildArgs,
    labels: b.labels,
    noCache: flags.noCache || b.noCache,
    pull: flags.pull || b.pull ? 'always' : 'missing',
    push: flags.push,
    outputs: [{ type: 'image' }],
    ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
    secrets: await parseSecrets(secretFlags, io.env, project.workingDir),
    network: b.network === 'none' ? 'none' : 'host',
    ...(b.extraHosts.length > 0 ? { extraHosts: b.extraHosts.map(parseAddHost) } : {}),
    // build.shm_size: bytes, or docker's size grammar ("64m", "1gb"), as --shm-size takes it.
    ...(b.shmSize !== undefined ? await runResourcesFromFlags({ shmSize: String(b.shmSize), ulimit: [], allow: [] }) : {}),
    snapshotter: snapshotterFromEnv(io.env),
    runSync: runSyncFromEnv(io.env),
    ...(platforms.length === 1 && !platformMatches(platforms[0]!, hostPlatform()) ? { platforms } : {}),
    ...(cacheFrom.length > 0 ? { cacheFrom } : {}),
    ...(cacheTo.length > 0 ? { cacheTo } : {}),
  };
}

/** `compose push`: every selected service's image (the image name and build.tags) from the local store. */
async function pushServices(project: ComposeProject, named: readonly string[], ctx: CommandContext, registry: () => Promise<RegistryClient>, quiet: boolean): Promise<number> {
  const plan = composeBuildPlan(project, { only: named });
  const services = project.model.services as Record<string, Record<string, unknown>>;
  // Without names, the services this project builds; a named service without a build section
  // pushes its image if the store has it.
  const targets = new Set(named.length > 0 ? named : plan.builds.map((b) => b.service));
  const store = await ctx.store();
  const { getLocalImage } = await import('../../image/index.js');
  const { pushImage } = await import('../../registry/index.js');
  const { parseReference } = await import('../../oci/index.js');
  const client = await registry();
  for (const name of targets) {
    const b = plan.builds.find((x) => x.service === name);
    const svc = services[name]!;
    // Services without a build section push only when they name an image (compose does the same).
    const refs = b ? [b.image, ...b.tags] : typeof svc.image === 'string' ? [svc.image] : [];
    for (const ref of refs) {
      const full = normalizeName(ref);
      const image = await getLocalImage(store, full, { signal: ctx.io.signal }).catch((err: unknown) => {
        throw forService(name, err);
      });
      const pushed = await pushImage(client, store, image, parseReference(full), { compression: 'gzip', signal: ctx.io.signal });
      if (!quiet) ctx.io.stderr.write(`[${name}] ${full}: digest: ${pushed.digest}\n`);
      ctx.io.stdout.write(`${name} ${full}@${pushed.digest}\n`);
    }
  }
  return 0;
}
