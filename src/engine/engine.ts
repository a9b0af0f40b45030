import path from 'node:path';
import type { Logger } from 'pino';
import type { CacheSource } from '../cache/index.js';
import { IgnoreMatcher, readDockerignore, walkContext } from '../context/index.js';
import type { StoredImage } from '../image/index.js';
import type { Platform } from '../oci/index.js';
import type { RegistryClient } from '../registry/index.js';
import type { Store } from '../store/index.js';
import type { BuildReporter } from './events.js';
import { FileDigests } from './file-digests.js';
import type { InFlightSteps } from './in-flight.js';
import { deliverImage } from './outputs.js';
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
  readonly platform: Platform;
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
  readonly image: StoredImage;
  readonly names: readonly string[];
}

/**
 * `tsbuild build`: parse and plan, run the stages the target needs in dependency order, seal
 * the target's image and write it to every requested output.
 */
export async function build(req: BuildRequest, env: BuildEnv): Promise<BuildResult> {
  // Step dirs of SIGKILLed tsbuilds (outside the store, so gc cannot see them) go now, even
  // when every step of this build is cached.
  await sweepDeadRuns();
  const { plan, lex, escape } = await parseAndPlan(req, env);
  const session = new BuildSession({ ...env, pull: req.pull, runtime: req.runtime, isolation: req.isolation, snapshotter: req.snapshotter, namedContexts: req.namedContexts });
  try {
    const inputs = await buildInputs(req, env, session, lex);
    await runStages(plan, session, { inputs, escape, noCache: req.noCache, noCacheFilter: req.noCacheFilter ?? [] });
    const image = await sealTarget(session, session.stageState(plan.target), { created: env.created, labels: req.labels, annotations: req.annotations?.manifest, sourceDateEpoch: req.sourceDateEpoch });
    await session.holdImage(image.manifestDescriptor);
    await session.claim(); // the cache hits' layers, written with the image
    await deliverImage(image, req, session, env.registry);
    await inputs.digests.save();
    return { image, names: req.tags };
  } finally {
    await session.close();
  }
}

/** The request's files and values as the steps read them: the context (.dockerignore applied), secrets, the epoch. */
async function buildInputs(req: BuildRequest, env: BuildEnv, session: BuildSession, lex: BuildInputs['lex']): Promise<BuildInputs> {
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
      walk: () => walkContext(req.contextDir, matcher, { signal: session.signal }),
    },
    digests: new FileDigests(env.store, req.contextDir),
    created: env.created,
    sourceDateEpoch: req.sourceDateEpoch,
    secrets: req.secrets ?? new Map(),
    ...(req.sshSockets ? { sshSockets: req.sshSockets } : {}),
    ...(req.extraHosts && req.extraHosts.length > 0 ? { extraHosts: req.extraHosts } : {}),
    ...(req.runResources ? { runResources: req.runResources } : {}),
    defaultNetwork: req.network ?? 'host',
  };
}
