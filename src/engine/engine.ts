import { setMaxListeners } from 'node:events';
import path from 'node:path';
import type { Logger } from 'pino';
import type { CacheKey, CacheSource } from '../cache/index.js';
import type { ExportEntry } from '../remote-cache/index.js';
import { IgnoreMatcher, readDockerignore, walkContextSync } from '../context/index.js';
import type { StoredImage, StoredLayer } from '../image/index.js';
import { isAbortError } from '../errors.js';
import { formatPlatform, type Descriptor, type Digest, type Platform } from '../oci/index.js';
import type { RegistryClient } from '../registry/index.js';
import type { Store } from '../store/index.js';
import type { BuildReporter } from './events.js';
import { FileDigests } from './file-digests.js';
import { checkEmulation, checkPlatformOutputs } from './emulation.js';
import { InFlightSteps } from './in-flight.js';
import { deliverImage, deliverIndex, dropPushedOnly, pushOnly } from './outputs.js';
import { parseAndPlan } from './parse-plan.js';
import type { BuildRequest } from './request.js';
import { sealTarget } from './seal.js';
import { BuildSession } from './session.js';
import { runStages } from './stages.js';
import { sweepDeadRuns } from './housekeeping.js';
import type { BuildInputs } from './step.js';

export interface BuildEnv {
  readonly store: Store;
  readonly signal: AbortSignal;
  readonly report: BuildReporter;
  /** The build platform (the host's): the target when the request names none, and $BUILDPLATFORM. */
  readonly platform: Platform;
  /** Where binfmt_misc is read to tell which foreign platforms' RUN steps can run (default /proc/sys/fs/binfmt_misc). */
  readonly binfmtDir?: string | undefined;
  /** RFC 3339 time stamped on the image and its history (SOURCE_DATE_EPOCH when set). */
  readonly created: string;
  /** The structured log, created on first use (a cached build logs nothing and loads no pino). */
  readonly logger: () => Logger;
  /** The registry client for pulls and pushes, created on first use. */
  readonly registry?: () => Promise<RegistryClient>;
  /** The caller's PATH: where the sandbox looks for bwrap, runc and the other host tools. */
  readonly toolPath?: string;
  /** Where step results are also looked up, in order, after the local step cache. */
  readonly cacheSources?: readonly CacheSource[];
  /**
   * Steps executing now, shared by the builds given this object (a compose project's
   * services): a step two of them reach at once runs once (in-flight.ts).
   */
  readonly inFlight?: InFlightSteps;
}

export interface BuildResult {
  /** The image built (the first platform's, in a multi-platform build). */
  readonly image: StoredImage;
  readonly names: readonly string[];
  /** A multi-platform build's index, as the store keeps it under the tags. */
  readonly index?: Descriptor;
  /** buildx's metadata (what `--metadata-file` holds): the pushed manifest's digest after a push. */
  readonly metadata: Readonly<Record<string, unknown>>;
}

/**
 * `tsbuild build`: parse and plan, run the stages the target needs in dependency order, seal
 * the target's image and write it to every requested output. With several target platforms
 * (`--platform linux/amd64,linux/arm64`), one build per platform over one store and one set of
 * steps in flight, in parallel: a step whose key does not depend on the target (a stage
 * `FROM --platform=$BUILDPLATFORM`) runs once and the other builds take its result; the
 * images are then delivered as one OCI image index.
 */
export async function build(req: BuildRequest, env: BuildEnv): Promise<BuildResult> {
  // Step dirs of SIGKILLed tsbuilds (outside the store, so gc cannot see them) go during this
  // build, even when every step of it is cached: the sweep (a listing of the temp dir) runs
  // alongside the build, which does not depend on it, and is awaited before the build returns.
  const swept = sweepDeadRuns().catch(() => 0);
  try {
    return await buildWithImports(req, env);
  } finally {
    await swept;
  }
}

async function buildWithImports(req: BuildRequest, env: BuildEnv): Promise<BuildResult> {
  const targets = req.platforms !== undefined && req.platforms.length > 0 ? req.platforms : [env.platform];
  if (targets.length > 1) checkPlatformOutputs(req, targets);
  const warn = (message: string): void => env.report({ type: 'warning', message });
  // --cache-from sources: checked now (a local directory that is not a layout is a usage
  // error), read on the first lookup, started here so the fetch overlaps the context walk.
  const remote = req.cacheFrom && req.cacheFrom.length > 0 ? await import('../remote-cache/index.js') : undefined;
  let imports = remote ? await remote.openCacheImports(req.cacheFrom!, { store: env.store, registry: env.registry, warn, info: (message) => env.report({ type: 'info', message }) }) : [];
  for (const source of imports) source.prefetch(env.signal);
  if (req.cacheTo && req.cacheTo.length > 0) await (await import('../remote-cache/index.js')).checkCacheExports(req.cacheTo);
  for (;;) {
    try {
      if (targets.length > 1) return await buildPlatforms(req, env, targets, imports);
      return await buildOnce(req, env, { platform: targets[0]!, strict: req.platforms !== undefined && req.platforms.length > 0 }, imports);
    } catch (e) {
      // A lazy hit's layer that cannot be fetched when needed: the hit cannot be taken back,
      // so the build runs again without that source (what ran is in the local step cache).
      const failed = remote?.lazyFetchSource(e);
      if (failed === undefined || env.signal.aborted || !imports.includes(failed)) throw e;
      warn(`${e instanceof Error ? e.message : String(e)}; building again without ${failed.name}`);
      imports = imports.filter((s) => s !== failed);
    }
  }
}

function sessionOptions(req: BuildRequest, env: BuildEnv, imports: readonly CacheSource[]) {
  const cacheSources = [...(env.cacheSources ?? []), ...imports];
  return { ...env, cacheSources, pull: req.pull, runtime: req.runtime, isolation: req.isolation, snapshotter: req.snapshotter, runSync: req.runSync, namedContexts: req.namedContexts };
}

async function buildOnce(req: BuildRequest, env: BuildEnv, target: { readonly platform: Platform; readonly strict: boolean }, imports: readonly CacheSource[]): Promise<BuildResult> {
  const session = new BuildSession({ ...sessionOptions(req, env, imports), platform: target.platform, strictPlatform: target.strict });
  let image: StoredImage | undefined;
  try {
    const digests = new FileDigests(env.store, req.contextDir);
    image = await buildTarget(req, env, session, digests, true);
    const metadata = await deliverImage(image, req, session, env.registry);
    await digests.save();
    if (req.cacheTo && req.cacheTo.length > 0) await exportCaches(req.cacheTo, [{ image, session }], env, req.cacheFrom ?? []);
    return { image, names: req.tags, metadata };
  } finally {
    await session.close();
    // An image only pushed was held by the lease alone: its manifest (whose lazy layers may
    // not be in the store) does not stay behind as an untagged image.
    if (image !== undefined && pushOnly(req)) await dropPushedOnly(env.store, [image.manifestDescriptor.digest, image.configDescriptor.digest]);
  }
}

/**
 * One target's image: planned for `session.platform` (the build platform is the host's),
 * checked for emulation before any step runs, built, sealed and held in the session's lease.
 * `checks`: report the plan's warnings (once per build, not once per platform).
 */
async function buildTarget(req: BuildRequest, env: BuildEnv, session: BuildSession, digests: FileDigests, checks: boolean): Promise<StoredImage> {
  const { plan, lex, escape } = await parseAndPlan(req, {
    platform: session.platform,
    buildPlatform: env.platform,
    report: checks ? env.report : (e) => (e.type === 'warning' ? undefined : env.report(e)),
    store: env.store,
    signal: session.signal,
  });
  await checkEmulation(plan, session.platform, { binfmtDir: env.binfmtDir });
  const inputs = await buildInputs(req, env, session, lex, digests);
  await runStages(plan, session, { inputs, escape, noCache: req.noCache, noCacheFilter: req.noCacheFilter ?? [] });
  const final = session.stageState(plan.target);
  const inlineCache = req.cacheTo?.some((c) => c.type === 'inline') ? await inlineCacheOf(session, final.config.rootfs.diff_ids) : undefined;
  const image = await sealTarget(session, final, { created: env.created, labels: req.labels, annotations: req.annotations?.manifest, sourceDateEpoch: req.sourceDateEpoch, inlineCache });
  await session.holdImage(image.manifestDescriptor);
  // The cache hits' layers, written with the image; lazy ones fetched unless the image is only
  // pushed (then a layer the registry can mount from its cache is never downloaded).
  await session.claim(final.layers, { fetch: !pushOnly(req) });
  return image;
}

/**
 * Several platforms: every target's build at once (each runs its stages in parallel too; RUN
 * steps wait on the sandbox and the CPU, not on each other), one progress with each step
 * named by its platform, the first failure stopping the others.
 */
async function buildPlatforms(req: BuildRequest, env: BuildEnv, targets: readonly Platform[], imports: readonly CacheSource[]): Promise<BuildResult> {
  const failFast = new AbortController();
  const signal = AbortSignal.any([env.signal, failFast.signal]);
  setMaxListeners(0, signal); // every session's work listens on it (BuildSession's constructor says why)
  let ids = 0;
  const inFlight = env.inFlight ?? new InFlightSteps();
  const digests = new FileDigests(env.store, req.contextDir);
  let images: Array<{ readonly image: StoredImage; readonly platform: Platform }> | undefined;
  let index: Descriptor | undefined;
  const sessions = targets.map(
    (platform) =>
      new BuildSession({ ...sessionOptions(req, env, imports), signal, platform, strictPlatform: true, inFlight, stepPrefix: formatPlatform(platform), stepIds: () => ++ids }),
  );
  try {
    const results = await Promise.allSettled(
      sessions.map((session, i) =>
        buildTarget(req, env, session, digests, i === 0).catch((e: unknown) => {
          failFast.abort();
          throw e;
        }),
      ),
    );
    // The first real failure, not the aborts it caused in the other platforms' builds.
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed.length > 0) throw (failed.find((r) => !isAbortError(r.reason)) ?? failed[0]!).reason;
    images = results.map((r, i) => ({ image: (r as PromiseFulfilledResult<StoredImage>).value, platform: targets[i]! }));
    // A layer a push needs the bytes of is claimed by the session whose lazy hit it is (a
    // claim of a layer a session does not hold lazily fetches nothing).
    const claim = async (layers: readonly StoredLayer[]): Promise<void> => {
      for (const s of sessions) await s.claim(layers);
    };
    const delivered = await deliverIndex(images, req, sessions[0]!, env.registry, claim);
    index = delivered.index;
    await digests.save(); // once, for every platform's COPY steps
    // One export for every platform: each step key holds its stage's platform, so the entries
    // of all the sessions go into one document (and one manifest) per --cache-to.
    if (req.cacheTo && req.cacheTo.length > 0) await exportCaches(req.cacheTo, images.map(({ image }, i) => ({ image, session: sessions[i]! })), env, req.cacheFrom ?? []);
    return { image: images[0]!.image, names: req.tags, index, metadata: delivered.metadata };
  } finally {
    for (const s of sessions) await s.close();
    // As for one platform: an index only pushed leaves no index or image behind in the store.
    if (index !== undefined && images !== undefined && pushOnly(req)) await dropPushedOnly(env.store, [index.digest, ...images.flatMap(({ image }) => [image.manifestDescriptor.digest, image.configDescriptor.digest])]);
  }
}

/** The request's files and values as the steps read them: the context (.dockerignore applied), secrets, the epoch. */
async function buildInputs(req: BuildRequest, env: BuildEnv, session: BuildSession, lex: BuildInputs['lex'], digests: FileDigests): Promise<BuildInputs> {
  const ignore = await readDockerignore(req.contextDir, req.dockerfile.path);
  const matcher = new IgnoreMatcher(ignore.patterns);
  return {
    file: req.dockerfile.name,
    lex,
    contextDir: req.contextDir,
    contextRoot: {
      dir: req.contextDir,
      kind: 'context',
      label: 'build context',
      filter: matcher,
      filterFile: ignore.file ? path.basename(ignore.file) : '.dockerignore',
      walk: () => walkContextSync(req.contextDir, matcher, { signal: session.signal }),
    },
    digests,
    created: env.created,
    sourceDateEpoch: req.sourceDateEpoch,
    secrets: req.secrets ?? new Map(),
    ...(req.sshSockets ? { sshSockets: req.sshSockets } : {}),
    ...(req.extraHosts && req.extraHosts.length > 0 ? { extraHosts: req.extraHosts } : {}),
    ...(req.runResources ? { runResources: req.runResources } : {}),
    defaultNetwork: req.network ?? 'host',
  };
}

/** `--cache-to type=inline`: the config field naming the keys of the image's steps. */
async function inlineCacheOf(session: BuildSession, diffIds: readonly Digest[]): Promise<{ field: string; value: unknown }> {
  const { INLINE_CACHE_FIELD, inlineCacheValue } = await import('../remote-cache/index.js');
  const used = new Map<CacheKey, { diffId: Digest; size: number } | undefined>();
  for (const [key, r] of session.usedSteps()) used.set(key, r.kind === 'layer' ? { diffId: r.diffId, size: r.size } : undefined);
  return { field: INLINE_CACHE_FIELD, value: inlineCacheValue(used, diffIds) };
}

/**
 * `--cache-to`: each export a progress step. mode=min exports the steps whose layers are in the
 * image (and the steps that made no layer), mode=max every step of the build. A failed export
 * fails the build unless it says ignore-error=true (then it is a warning). A multi-platform
 * build gives one build (session and image) per platform: their entries go into one export
 * (each key holds its stage's platform, so they never collide; a step two platforms share has
 * one key and one entry), reported and bounded once.
 */
async function exportCaches(
  specs: NonNullable<BuildRequest['cacheTo']>,
  builds: ReadonlyArray<{ readonly image: StoredImage; readonly session: BuildSession }>,
  env: BuildEnv,
  imports: NonNullable<BuildRequest['cacheFrom']>,
): Promise<void> {
  const { exportBuildCache, cacheSourceName } = await import('../remote-cache/index.js');
  // Warnings and the cache mounts' lease go through the first platform's session; the export
  // steps are the build's, named by no platform.
  const lead = builds[0]!.session;
  const report = env.report;
  const inImage = new Set(builds.flatMap(({ image }) => image.config.rootfs.diff_ids));
  // The images' layers (a registry export records where those no step made, the base images', live).
  const imageLayers = builds.flatMap(({ image }) => image.manifest.layers.map((l) => ({ diffId: l.digest, size: l.size })));
  const explainSteps = new Map<string, CacheKey>();
  for (const { session } of builds) for (const [identity, key] of session.stepKeys) explainSteps.set(identity, key);
  // Cache mounts (mounts=), each packed (or its unchanged blob found) once for every export that names it.
  const packed = new Map<string, Promise<{ readonly layer: StoredLayer; readonly reused: boolean } | undefined>>();
  const packMounts = async (selection: 'all' | readonly string[] | undefined, log: (text: string) => void): Promise<Map<string, StoredLayer> | undefined> => {
    if (selection === undefined) return undefined;
    const { cacheMountBlob } = await import('./cache-mount-blob.js');
    const out = new Map<string, StoredLayer>();
    const ids = selection === 'all' ? [...new Set(builds.flatMap(({ session }) => [...session.cacheMounts.keys()]))] : selection;
    for (const id of ids) {
      let p = packed.get(id);
      if (p === undefined) {
        p = cacheMountBlob(lead, id);
        packed.set(id, p);
        const r = await p;
        if (r === undefined && selection !== 'all') lead.warn(`cache mount ${JSON.stringify(id)} is empty or was never used on this machine: it is not exported`);
        if (r?.reused === true) log(`cache mount ${JSON.stringify(id)} unchanged since it was last packed or restored: blob ${r.layer.diffId} reused\n`);
      }
      const r = await p;
      if (r !== undefined) out.set(id, r.layer);
    }
    return out;
  };
  for (const spec of specs) {
    if (spec.type === 'inline') continue;
    const entries = new Map<CacheKey, ExportEntry>();
    const claims: Array<{ readonly session: BuildSession; readonly layers: StoredLayer[] }> = [];
    for (const { session } of builds) {
      const layers: StoredLayer[] = [];
      for (const [key, r] of session.usedSteps()) {
        if (entries.has(key)) continue; // a step the platforms share (a $BUILDPLATFORM stage)
        // Whatever a step record carries beyond its layer (the key's inputs) travels along; a
        // hit's are in its local record (or its source's entry), read here, never on the hit.
        // So do the copy aliases the build reached the key by (a fresh runner's COPY --from).
        const known = r.inputs ?? (await session.inputsOf(key));
        const aliases = session.aliasesOf(key);
        const extra = { ...(known !== undefined ? { inputs: known } : {}), ...(aliases !== undefined ? { aliases } : {}) };
        if (r.kind === 'empty') entries.set(key, { layer: undefined, ...extra });
        else if (spec.mode === 'max' || inImage.has(r.diffId)) {
          entries.set(key, { layer: { diffId: r.diffId, size: r.size }, ...extra });
          layers.push({ diffId: r.diffId, size: r.size });
        }
      }
      claims.push({ session, layers });
    }
    const name = cacheSourceName(spec);
    const id = lead.nextStepId();
    report({ type: 'step-start', id, name: `exporting cache to ${name.replace(/^(registry|local) cache /, '')}` });
    const t0 = Date.now();
    try {
      // Lazy hits the build never read (a stage no later step unpacked): an export to the
      // registry they came from finds their blobs there; any other needs their bytes, claimed
      // by the session whose hits they are.
      if (!(spec.type === 'registry' && sameRegistryAsImport(spec.ref, imports))) for (const c of claims) await c.session.claim(c.layers);
      const mounts = await packMounts(spec.mounts, (text) => report({ type: 'step-log', id, stream: 'stdout', text }));
      const r = await exportBuildCache(spec, entries, { store: lead.store, registry: env.registry, warn: (m) => lead.warn(m), signal: lead.signal, now: new Date(), explainSteps, mounts, imageLayers });
      const mountsText = mounts !== undefined ? `, ${r.mounts} cache mounts` : '';
      report({ type: 'step-log', id, stream: 'stdout', text: `${name}: ${r.written} steps written${mountsText}, ${r.entries} entries, ${r.layers} blobs, manifest ${r.digest}\n` });
      report({ type: 'step-done', id, durationMs: Date.now() - t0 });
    } catch (e) {
      if (!spec.ignoreError || lead.signal.aborted) {
        report({ type: 'step-error', id, message: e instanceof Error ? e.message : String(e) });
        throw e;
      }
      lead.warn(`${name}: the export failed and is ignored (ignore-error=true): ${e instanceof Error ? e.message : String(e)}`);
      report({ type: 'step-done', id, durationMs: Date.now() - t0 });
    }
  }
}

/** True when `ref` names the registry (host) of one of the registry imports. */
function sameRegistryAsImport(ref: string, imports: NonNullable<BuildRequest['cacheFrom']>): boolean {
  const host = (r: string): string => r.split('/')[0] ?? '';
  return imports.some((i) => i.type === 'registry' && i.ref.includes('/') && host(i.ref) === host(ref));
}
