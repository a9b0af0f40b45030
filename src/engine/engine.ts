import path from 'node:path';
import type { Logger } from 'pino';
import { TsbuildError, isAbortError, type SourceLocation } from '../errors.js';
import { IgnoreMatcher, readDockerignore, walkContext } from '../context/index.js';
import { directiveWarnings, parseDockerfile, toInstructions, splitStages, ShellLex, type Instruction, type Stage } from '../dockerfile/index.js';
import { DEFAULT_PATH_ENV } from '../plan/index.js';
import { sealImage } from '../image/seal.js';
import type { StoredImage } from '../image/index.js';
import type { ImageConfig, Platform } from '../oci/index.js';
import { formatPlatform, parsePlatform, platformMatches } from '../oci/index.js';
import { Lease, type Store } from '../store/index.js';
import { collectBuildChecks, reportBuildChecks } from './build-checks.js';
import { resolveImage, scratchState, stateFromImage, type ImageSource } from './base-image.js';
import { dispatchInstruction, type StageContext } from './dispatch.js';
import { lazySandbox } from './run-step.js';
import type { SandboxCapabilities } from '../sandbox/index.js';
import type { BuildReporter } from './events.js';
import { FileDigests } from './file-digests.js';
import { buildMetadata, writeOutputs } from './outputs.js';
import { writeResultFile } from './result-file.js';
import os from 'node:os';
import pLimit from 'p-limit';
import { initialStageScope, planBuild, type PlannedStage, type StageScope } from '../plan/index.js';
import type { BuildRequest } from './request.js';
import { checkRunSecurity } from './run-resources.js';
import type { SourceRoot } from './copy-sources.js';
import type { StageState } from './stage-state.js';
import { claimLeased, deferLayers, leaseLayers } from './lease-layers.js';
import { setLabels } from '../image/config-edit.js';
import { readLocalImage } from '../image/local-image.js';
import { OCI_IMAGE_MANIFEST, isDigest, parseReference } from '../oci/index.js';
import { cacheKeyFor } from '../cache/index.js';
import type { RegistryClient } from '../registry/index.js';

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
}

export interface BuildResult {
  readonly image: StoredImage;
  readonly names: readonly string[];
}

/**
 * `tsbuild build`: parse, plan, run the stages the target needs in dependency order, seal
 * the target's image and write it to every requested output.
 */
export async function build(req: BuildRequest, outerEnv: BuildEnv): Promise<BuildResult> {
  // One failing stage stops its siblings that run in parallel (fail fast, as BuildKit does).
  const failFast = new AbortController();
  const env: BuildEnv = { ...outerEnv, signal: AbortSignal.any([outerEnv.signal, failFast.signal]) };
  const file = req.dockerfile.name;
  // Step dirs of SIGKILLed tsbuilds (outside the store, so gc cannot see them) go now, even
  // when every step of this build is cached.
  await (await import('../sandbox/step-dir.js')).sweepDeadStepDirs();
  const parsed = parseDockerfile(req.dockerfile.text, { file });
  for (const message of directiveWarnings(parsed)) env.report({ type: 'warning', message });
  const instructions = toInstructions(parsed);
  const split = splitStages(instructions);
  if (split.stages.length === 0) {
    throw new TsbuildError('DOCKERFILE_INSTRUCTION', 'the Dockerfile has no FROM instruction', {
      location: { file, startLine: 1, endLine: 1 },
      hint: 'start a stage with FROM IMAGE (or FROM scratch)',
    });
  }
  const lex = new ShellLex(parsed.directives.escape);
  const plan = planBuild(split, {
    ...(req.target !== undefined ? { target: req.target } : {}),
    buildArgs: req.buildArgs,
    targetPlatform: env.platform,
    buildPlatform: env.platform,
    escapeToken: parsed.directives.escape,
  });
  // Every step runs on the host's platform (no emulation yet). A stage that asks for another
  // one would otherwise be built for the host and labelled as such: a silently wrong image.
  for (const ps of plan.stages) {
    if (ps.platform === undefined || platformMatches(parsePlatform(ps.platform), env.platform)) continue;
    throw new TsbuildError('UNSUPPORTED', `FROM --platform=${ps.platform}: building for another platform than ${formatPlatform(env.platform)} needs emulation, which tsbuild does not have yet`, {
      location: ps.stage.from.location,
      hint: 'drop --platform, or use --platform=$BUILDPLATFORM',
    });
  }
  // Entitlements are checked before any step runs, as BuildKit's solver does (ONBUILD RUNs: in runRun).
  for (const ps of plan.stages) for (const ins of ps.stage.instructions) if (ins.kind === 'RUN') checkRunSecurity(ins.security, req.runResources?.allow, ins.location);
  // BuildKit's build checks as warnings (dispatch-time ones over the stages this build runs).
  const dispatched = new Set(plan.stages.map((s) => s.stage.index));
  const checkInputs = { parsed, instructions, buildArgs: req.buildArgs, platform: env.platform, store: env.store, contextDir: req.contextDir, dispatched };
  reportBuildChecks(await collectBuildChecks({ ...checkInputs, dockerfilePath: req.dockerfile.path, target: req.target, signal: env.signal }), env.report, file);
  for (const name of plan.unusedBuildArgs) {
    env.report({ type: 'warning', message: `build argument ${JSON.stringify(name)} was not consumed by any ARG in the stages built` });
  }

  const ignore = await readDockerignore(req.contextDir, req.dockerfile.path);
  const matcher = new IgnoreMatcher(ignore.patterns);
  const contextRoot: SourceRoot = {
    dir: req.contextDir,
    kind: 'context',
    label: 'build context',
    filter: matcher,
    filterFile: ignore.file ? path.basename(ignore.file) : '.dockerignore',
    walk: () => walkContext(req.contextDir, matcher, { signal: env.signal }),
  };

  const digests = new FileDigests(env.store, req.contextDir);
  const states = new Map<number, StageState>();
  const scopes = new Map<number, StageScope>();
  const tempDirs: string[] = [];
  const materialized = new Map<string, Promise<SourceRoot>>();
  const rootlessDirs: Array<{ dir: string; caps: SandboxCapabilities }> = [];
  let stepId = 0;

  const materialize = (key: string, label: string, diffIds: readonly StageState['layers'][number]['diffId'][]): Promise<SourceRoot> => {
    let p = materialized.get(key);
    if (!p) {
      p = (async () => {
        // The stage's layers may be cache hits, deferred into the lease: held from here on.
        await claimLeased(lease, env.store, env.signal);
        const dir = await env.store.makeTempDir('from');
        // The sandbox and layer code load on first use: a fully cached build needs neither.
        const [{ hostToContainer, probeSandbox }, { unpackInNamespace }, { materializeRootfs }] = await Promise.all([
          import('../sandbox/index.js'),
          import('./rootless.js'),
          import('./rootfs-output.js'),
        ]);
        const caps = process.getuid?.() === 0 ? undefined : await probeSandbox({ signal: env.signal }).catch(() => undefined);
        if (caps && caps.userNamespaces.ok && caps.idMapping.kind !== 'identity') {
          // As an ordinary user the stage is unpacked in the user namespace, so its owners are
          // real there; on the host they show as subordinate IDs, mapped back for COPY --from.
          rootlessDirs.push({ dir, caps });
          for (const d of diffIds) await unpackInNamespace(caps, env.store, d, dir, env.signal);
          const map = caps.idMapping;
          return {
            dir,
            kind: 'stage',
            label,
            mapOwner: (uid: number, gid: number) => ({ uid: hostToContainer(map.uids, uid) ?? 0, gid: hostToContainer(map.gids, gid) ?? 0 }),
          } satisfies SourceRoot;
        }
        tempDirs.push(dir);
        await materializeRootfs(env.store, diffIds, dir, { signal: env.signal });
        return { dir, kind: 'stage', label } satisfies SourceRoot;
      })();
      materialized.set(key, p);
    }
    return p;
  };

  const total = plan.stages.length;
  const images: ImageSource = {
    store: env.store,
    platform: env.platform,
    pull: req.pull ?? 'missing',
    registry: () => {
      if (!env.registry) throw new TsbuildError('UNSUPPORTED', 'this build has no registry access configured');
      return env.registry();
    },
    signal: env.signal,
  };
  // What this build uses and makes (base layers, step layers and their snapshots, the sealed
  // image until it is tagged) stays out of a concurrent rmi's and prune's reach (store/lease.ts).
  // Layers found in the store (a base image, cache hits) are deferred into it, and written with
  // the next layer a step makes, the next claim (before a step reads the layers it builds on)
  // or the image at the end: a fully cached build writes its lease once (lease-layers.ts).
  const lease = new Lease(env.store);
  const hold = async (s: StageState, what: string, found: boolean): Promise<void> => {
    if (found) deferLayers(lease, s.layers, what);
    else await leaseLayers(lease, env.store, s.layers, what, env.signal);
  };
  const claim = (): Promise<void> => claimLeased(lease, env.store, env.signal);
  const sandbox = lazySandbox({
    signal: env.signal,
    warn: (message) => env.report({ type: 'warning', message }),
    runtime: req.runtime,
    isolation: req.isolation,
    snapshotter: req.snapshotter,
    path: env.toolPath,
  });
  try {
    const runStage = async (ps: PlannedStage): Promise<void> => {
      const stage = ps.stage;
      const stageLabel = stage.name ?? `stage-${stage.index}`;
      let state: StageState;
      const id = ++stepId;
      const fromText = `FROM ${ps.base.kind === 'image' ? ps.base.ref : ps.base.kind === 'stage' ? `stage ${ps.base.index}` : 'scratch'}`;
      env.report({ type: 'step-start', id, name: `[${total > 1 ? `${stageLabel} ` : ''}1/${stage.instructions.length + 1}] ${fromText}`, location: stage.from.location });
      const t0 = Date.now();
      switch (ps.base.kind) {
        case 'scratch':
          state = scratchState(env.platform);
          break;
        case 'stage': {
          const from = states.get(ps.base.index);
          if (!from) throw new Error(`internal: stage ${ps.base.index} not built before ${stage.index}`);
          state = { ...from, cmdSet: false };
          break;
        }
        case 'image':
          state = await stateFromImage(images, ps.base.ref, stage.from.location);
          break;
      }
      await hold(state, fromText, true);
      // An image without PATH gets the default one, as BuildKit does (scratch included).
      if (!(state.config.config?.Env ?? []).some((e) => e.startsWith('PATH='))) {
        state = { ...state, config: { ...state.config, config: { ...(state.config.config ?? {}), Env: [`PATH=${DEFAULT_PATH_ENV}`, ...(state.config.config?.Env ?? [])] } } };
      }
      env.report({ type: 'step-done', id, durationMs: Date.now() - t0 });

      const ctx: StageContext = {
        file,
        lex,
        store: env.store,
        platform: formatPlatform(env.platform),
        noCache: req.noCache || (stage.name !== undefined && (req.noCacheFilter ?? []).includes(stage.name)) || (req.noCacheFilter ?? []).includes(String(stage.index)),
        created: env.created,
        sourceDateEpoch: req.sourceDateEpoch,
        digests,
        signal: env.signal,
        contextRoot,
        claim,
        fromRoot: async (source, location: SourceLocation) => {
          if (source.kind === 'scratch' || source.kind === 'context') {
            const dir = await env.store.makeTempDir('scratch');
            tempDirs.push(dir);
            return { root: { dir, kind: 'stage', label: 'scratch' }, key: 'scratch' };
          }
          if (source.kind === 'stage') {
            const s = states.get(source.index);
            if (!s) throw new TsbuildError('STAGE_NOT_FOUND', `stage ${source.index} is not built before this step`, { location });
            return { root: await materialize(`stage:${s.key}`, `stage ${source.index}`, s.layers.map((l) => l.diffId)), key: s.key };
          }
          const ref = source.ref;
          const image = await resolveImage(images, ref, location);
          await leaseLayers(lease, env.store, image.config.rootfs.diff_ids.map((diffId) => ({ diffId, size: 0 })), `image ${ref}`, env.signal);
          return { root: await materialize(`image:${image.manifestDescriptor.digest}`, `image ${ref}`, image.config.rootfs.diff_ids), key: `image:${image.manifestDescriptor.digest}` };
        },
        sandbox,
        defaultNetwork: req.network ?? 'host',
        mountEnv: {
          store: env.store,
          contextDir: req.contextDir,
          secrets: req.secrets ?? new Map(),
          ...(req.sshSockets ? { sshSockets: req.sshSockets } : {}),
          ...(req.extraHosts && req.extraHosts.length > 0 ? { extraHosts: req.extraHosts } : {}),
          ...(req.runResources ? { runResources: req.runResources } : {}),
          sourceDir: async (from, location) => {
            const r = await ctx.fromRoot(from, location);
            return { dir: r.root.dir, key: r.key };
          },
          tempDir: async () => {
            const d = await env.store.makeTempDir('mount');
            tempDirs.push(d);
            return d;
          },
          digestTree: async (dir) => (await import('./tree-digest.js')).digestTree(dir, digests, env.signal),
          signal: env.signal,
        },
        tempDir: async () => {
          const d = await env.store.makeTempDir('heredoc');
          tempDirs.push(d);
          return d;
        },
      };

      // ONBUILD triggers of the base run first, then are cleared (reference: ONBUILD).
      const triggers = state.config.config?.OnBuild ?? [];
      let scope = initialStageScope(plan, ps, ps.base.kind === 'stage' ? scopes.get(ps.base.index) : undefined);
      if (triggers.length > 0) {
        state = { ...state, config: { ...state.config, config: { ...(state.config.config ?? {}), OnBuild: null } } };
        for (const trigger of triggers) {
          const ins = parseTrigger(trigger, stage.from.location, parsed.directives.escape);
          ({ state, scope } = await runStep(ins, `ONBUILD ${trigger}`));
        }
      }

      for (const [i, ins] of stage.instructions.entries()) {
        const name = `[${total > 1 ? `${stageLabel} ` : ''}${i + 2}/${stage.instructions.length + 1}] ${ins.original.replace(/\s+/g, ' ').trim()}`;
        ({ state, scope } = await runStep(ins, name));
      }
      states.set(stage.index, state);
      scopes.set(stage.index, scope);

      async function runStep(ins: Instruction, name: string): Promise<{ state: StageState; scope: typeof scope }> {
        const sid = ++stepId;
        env.report({ type: 'step-start', id: sid, name, location: ins.location });
        const started = Date.now();
        try {
          const r = await dispatchInstruction(ins, state, scope, ctx, (stream, text) => env.report({ type: 'step-log', id: sid, stream, text }));
          // A step that made no layer (a cache hit, a config-only step) adds nothing new to protect.
          await hold(r.state, name, r.cached || r.state.layers.length === state.layers.length);
          env.report(r.cached ? { type: 'step-cached', id: sid, name } : { type: 'step-done', id: sid, durationMs: Date.now() - started });
          return { state: r.state, scope: r.scope };
        } catch (e) {
          env.report({ type: 'step-error', id: sid, message: e instanceof Error ? e.message : String(e) });
          throw e;
        }
      }
    };

    // Independent stages run in parallel, each as soon as the stages it needs are done.
    const limit = pLimit(Math.max(1, Math.min(4, os.availableParallelism())));
    const byIndex = new Map(plan.stages.map((ps) => [ps.stage.index, ps]));
    const started = new Map<number, Promise<void>>();
    const schedule = (ps: PlannedStage): Promise<void> => {
      let p = started.get(ps.stage.index);
      if (!p) {
        p = (async () => {
          await Promise.all(ps.dependsOn.filter((d) => byIndex.has(d)).map((d) => schedule(byIndex.get(d)!)));
          env.signal.throwIfAborted();
          await limit(() => runStage(ps));
        })();
        p.catch(() => failFast.abort());
        started.set(ps.stage.index, p);
      }
      return p;
    };
    const results = await Promise.allSettled(plan.stages.map(schedule));
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !(outerEnv.signal.aborted === false && isAbortError(r.reason)));
    if (failure) throw failure.reason;
    const anyFailure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (anyFailure) throw anyFailure.reason;

    const final = states.get(plan.target);
    if (!final) throw new Error('internal: target stage missing');
    let config: ImageConfig = { ...final.config, created: env.created };
    if (Object.keys(req.labels).length > 0) config = setLabels(config, Object.entries(req.labels));
    const image = await sealOrReuse(env, config, final, req);
    await lease.hold({ roots: [image.manifestDescriptor] }, { signal: env.signal });
    await claim(); // the cache hits' layers, written with the image
    for (const d of [image.manifestDescriptor.digest, image.configDescriptor.digest]) {
      if (!(await env.store.blobs.hasBlob(d))) throw new TsbuildError('BLOB_NOT_FOUND', `the built image's ${d} was removed from the store meanwhile (by prune)`, { hint: 'run the build again' });
    }
    let delivered = await writeOutputs(image, req.tags, req.outputs, {
      store: env.store,
      signal: env.signal,
      sourceDateEpoch: req.sourceDateEpoch,
      warn: (message) => env.report({ type: 'warning', message }),
      descriptorAnnotations: req.annotations?.manifestDescriptor,
    });
    if (req.push && req.tags.length > 0) {
      if (!env.registry) throw new TsbuildError('UNSUPPORTED', 'this build has no registry access configured');
      const client = await env.registry();
      const { pushImage } = await import('../registry/index.js');
      const local = await readLocalImage(env.store, image.manifestDescriptor, { signal: env.signal });
      for (const name of req.tags) {
        const id = ++stepId;
        env.report({ type: 'step-start', id, name: `pushing ${name}` });
        const t0 = Date.now();
        const pushed = await pushImage(client, env.store, local, parseReference(name), { signal: env.signal });
        delivered = { mediaType: OCI_IMAGE_MANIFEST, digest: pushed.digest, size: pushed.size };
        env.report({ type: 'step-log', id, stream: 'stdout', text: `${pushed.reference}: digest: ${pushed.digest}\n` });
        env.report({ type: 'step-done', id, durationMs: Date.now() - t0 });
      }
    }
    // Replaced, never written through a symlink planted at the path (result-file.ts).
    if (req.iidFile) await writeResultFile(req.iidFile, image.configDescriptor.digest, '--iidfile');
    if (req.metadataFile) await writeResultFile(req.metadataFile, `${JSON.stringify(buildMetadata(image, req.tags, delivered), null, 2)}\n`, '--metadata-file');
    await digests.save();
    return { image, names: req.tags };
  } finally {
    await lease.release().catch(() => undefined);
    for (const d of tempDirs) await env.store.removeTree(d).catch(() => undefined);
    if (rootlessDirs.length > 0) {
      const { userNamespaceRemoveTree } = await import('../sandbox/index.js');
      for (const { dir, caps } of rootlessDirs) await userNamespaceRemoveTree(caps)(dir).catch(() => undefined);
    }
  }
}

/**
 * Seals the target image, or reuses the image an earlier build sealed from the same steps
 * with the same layers, so an unchanged rebuild gives the same image ID (as buildah and
 * docker do) instead of a new one that differs only in its time stamps.
 */
async function sealOrReuse(env: BuildEnv, config: ImageConfig, final: StageState, req: BuildRequest): Promise<StoredImage> {
  const key = cacheKeyFor({
    parent: final.key,
    kind: 'SEAL',
    instruction: JSON.stringify([req.labels, req.annotations?.manifest ?? {}]),
    inputs: [...final.layers.map((l) => l.diffId), `epoch:${req.sourceDateEpoch ?? ''}`],
    platform: formatPlatform(env.platform),
  });
  const meta = `image.${key.slice(7)}`;
  const known = (await env.store.readMeta(meta)) as { mediaType?: string; digest?: string; size?: number } | undefined;
  if (known?.digest && isDigest(known.digest) && typeof known.size === 'number' && (await env.store.blobs.hasBlob(known.digest))) {
    const local = await readLocalImage(env.store, { mediaType: known.mediaType ?? OCI_IMAGE_MANIFEST, digest: known.digest, size: known.size }, { signal: env.signal }).catch(() => undefined);
    if (local && local.manifest.layers.every((l, i) => l.digest === final.layers[i]?.diffId) && (await Promise.all(local.manifest.layers.map((l) => env.store.blobs.hasBlob(l.digest)))).every(Boolean)) {
      return { manifest: local.manifest, config: local.config, configDescriptor: local.manifest.config, manifestDescriptor: local.manifestDescriptor };
    }
  }
  const image = await sealImage(env.store, config, final.layers, { signal: env.signal, annotations: req.annotations?.manifest });
  await env.store.writeMeta(meta, image.manifestDescriptor);
  return image;
}

function parseTrigger(trigger: string, location: SourceLocation, escape: '\\' | '`'): Instruction {
  const p = parseDockerfile(`${escape === '`' ? '# escape=`\n' : ''}${trigger}\n`, { file: `${location.file} (ONBUILD of the base image)` });
  const list = toInstructions(p);
  if (list.length !== 1) throw new TsbuildError('DOCKERFILE_INSTRUCTION', `invalid ONBUILD trigger ${JSON.stringify(trigger)} in the base image`, { location });
  return { ...list[0]!, location } as Instruction;
}

export type { Stage };
