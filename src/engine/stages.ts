import os from 'node:os';
import pLimit from 'p-limit';
import { TsbuildError, isAbortError, type SourceLocation } from '../errors.js';
import { parseDockerfile, toInstructions, type Instruction } from '../dockerfile/index.js';
import { formatPlatform, parsePlatform, type Platform } from '../oci/index.js';
import { DEFAULT_PATH_ENV, initialStageScope, type BuildPlan, type PlannedStage } from '../plan/index.js';
import { scratchState } from './base-image.js';
import { dispatchInstruction, type StageProgress, type StageStepOptions } from './dispatch.js';
import type { BuildSession } from './session.js';
import type { StageState } from './stage-state.js';
import type { BuildInputs } from './step.js';

export interface StageOptions {
  readonly inputs: BuildInputs;
  /** Stage names or indexes whose steps never use the cache (--no-cache-filter). */
  readonly noCacheFilter: readonly string[];
  readonly noCache: boolean;
  readonly escape: '\\' | '`';
}

/**
 * Runs the plan's stages in dependency order: independent stages in parallel (at most 4), each
 * as soon as the stages it needs are done. The first failure stops the others (fail fast, as
 * BuildKit does) and is the one reported, unless the caller cancelled.
 */
export async function runStages(plan: BuildPlan, session: BuildSession, opts: StageOptions): Promise<void> {
  const limit = pLimit(Math.max(1, Math.min(4, os.availableParallelism())));
  const byIndex = new Map(plan.stages.map((ps) => [ps.stage.index, ps]));
  const started = new Map<number, Promise<void>>();
  const scopes = new Map<number, StageProgress['scope']>();
  // Base images pulled for a plan with RUN steps are unpacked while they download.
  if (plan.stages.some((ps) => ps.stage.instructions.some((i) => i.kind === 'RUN'))) await session.unpackPulledImages();
  const schedule = (ps: PlannedStage): Promise<void> => {
    let p = started.get(ps.stage.index);
    if (!p) {
      p = (async () => {
        await Promise.all(ps.dependsOn.filter((d) => byIndex.has(d)).map((d) => schedule(byIndex.get(d)!)));
        session.signal.throwIfAborted();
        await limit(async () => {
          const done = await runStage(plan, ps, session, opts, ps.base.kind === 'stage' ? scopes.get(ps.base.index) : undefined);
          session.stageDone(ps.stage.index, done.state);
          scopes.set(ps.stage.index, done.scope);
        });
      })();
      p.catch(() => session.failFast());
      started.set(ps.stage.index, p);
    }
    return p;
  };
  const results = await Promise.allSettled(plan.stages.map(schedule));
  // The stage that failed first, not the siblings it stopped (their errors are aborts).
  const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !(!session.cancelled && isAbortError(r.reason)));
  if (failure) throw failure.reason;
  const anyFailure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (anyFailure) throw anyFailure.reason;
}

/** One stage: its FROM, the ONBUILD triggers of its base, then its instructions. */
async function runStage(plan: BuildPlan, ps: PlannedStage, session: BuildSession, opts: StageOptions, baseScope: StageProgress['scope'] | undefined): Promise<StageProgress> {
  const stage = ps.stage;
  session.prefetchImages(ps.imageSources);
  const total = plan.stages.length;
  const label = `[${total > 1 ? `${stage.name ?? `stage-${stage.index}`} ` : ''}`;
  const count = stage.instructions.length + 1;
  const platform = stagePlatform(ps, session.platform);
  const filter = opts.noCacheFilter;
  const noCache = opts.noCache || (stage.name !== undefined && filter.includes(stage.name)) || filter.includes(String(stage.index));
  const step = { session, platformText: formatPlatform(platform), inputs: opts.inputs, noCache, stage: stage.name ?? String(stage.index) };
  const directory = ps.base.kind === 'image' ? session.namedDirectory(ps.base.ref) : undefined;
  let state =
    directory && ps.base.kind === 'image'
      ? await startFromDirectory(ps, ps.base.ref, directory, `${label}1/${count}]`, { state: withDefaultPath(scratchState(platform)), scope: initialStageScope(plan, ps, baseScope) }, step, opts)
      : await startStage(ps, session, platform, `${label}1/${count}]`);

  // ONBUILD triggers of the base run first, then are cleared (reference: ONBUILD).
  const triggers = state.config.config?.OnBuild ?? [];
  let at: StageProgress = { state, scope: initialStageScope(plan, ps, baseScope) };
  if (triggers.length > 0) {
    state = { ...state, config: { ...state.config, config: { ...(state.config.config ?? {}), OnBuild: null } } };
    at = { ...at, state };
    // A base stage's triggers were parsed with the Dockerfile (the plan has them); an image's
    // are parsed here, from its config.
    const parsed = ps.base.kind === 'stage' && ps.onbuild.length === triggers.length ? ps.onbuild : triggers.map((t) => parseTrigger(t, opts.inputs.file, opts.escape, stage.from.location));
    for (const [i, trigger] of triggers.entries()) {
      at = await dispatchInstruction({ ...parsed[i]!, location: stage.from.location } as Instruction, `ONBUILD ${trigger}`, at, step, `onbuild.${i}`);
    }
  }
  for (const [i, ins] of stage.instructions.entries()) {
    at = await dispatchInstruction(ins, `${label}${i + 2}/${count}] ${ins.original.replace(/\s+/g, ' ').trim()}`, at, step, String(i));
  }
  return at;
}

/** The FROM step: scratch, an earlier stage's final state, or an image (local or pulled). */
async function startStage(ps: PlannedStage, session: BuildSession, platform: Platform, prefix: string): Promise<StageState> {
  const id = session.nextStepId();
  const fromText = `FROM ${ps.base.kind === 'image' ? session.imageText(ps.base.ref) : ps.base.kind === 'stage' ? `stage ${ps.base.index}` : 'scratch'}`;
  session.report({ type: 'step-start', id, name: `${prefix} ${fromText}`, location: ps.stage.from.location });
  const t0 = Date.now();
  let state: StageState;
  switch (ps.base.kind) {
    case 'scratch':
      state = scratchState(platform);
      break;
    case 'stage':
      state = { ...session.stageState(ps.base.index), cmdSet: false };
      break;
    case 'image':
      state = await session.stateFromImage(ps.base.ref, ps.stage.from.location, ps.platform !== undefined ? platform : undefined);
      break;
    default:
      return ps.base satisfies never;
  }
  await session.holdLayers(state.layers, fromText, true);
  state = withDefaultPath(state);
  session.report({ type: 'step-done', id, durationMs: Date.now() - t0 });
  return state;
}

/** An image without PATH gets the default one, as BuildKit does (scratch included). */
function withDefaultPath(state: StageState): StageState {
  if ((state.config.config?.Env ?? []).some((e) => e.startsWith('PATH='))) return state;
  return { ...state, config: { ...state.config, config: { ...(state.config.config ?? {}), Env: [`PATH=${DEFAULT_PATH_ENV}`, ...(state.config.config?.Env ?? [])] } } };
}

/**
 * FROM NAME where NAME is a directory build context: BuildKit's stage is the directory's files
 * (llb.Local, its .dockerignore applied, owners 0:0) over an empty image config (dockerfile2llb
 * gives a named context without an image config emptyImage). Here that is the step
 * `COPY --from=NAME / /` on scratch, run as the FROM step: one layer of the directory's files,
 * keyed by their content like any COPY, so an unchanged directory is a cache hit.
 */
async function startFromDirectory(ps: PlannedStage, name: string, dir: { readonly value: string }, prefix: string, at: StageProgress, step: StageStepOptions, opts: StageOptions): Promise<StageState> {
  const location = ps.stage.from.location;
  const parsed = parseDockerfile(`COPY --from=${name} / /\n`, { file: opts.inputs.file });
  const [copy] = toInstructions(parsed);
  if (copy?.kind !== 'COPY') throw new TsbuildError('DOCKERFILE_INSTRUCTION', `FROM ${name}: the build context's name cannot be read as a COPY --from source`, { location });
  const done = await dispatchInstruction({ ...copy, location } as Instruction, `${prefix} FROM ${name} [context ${dir.value}]`, at, step, 'from');
  return done.state;
}

/** An ONBUILD trigger from a base image's config, as an instruction located at the FROM line. */
function parseTrigger(trigger: string, file: string, escape: '\\' | '`', location: SourceLocation): Instruction {
  const p = parseDockerfile(`${escape === '`' ? '# escape=`\n' : ''}${trigger}\n`, { file: `${file} (ONBUILD of the base image)` });
  const list = toInstructions(p);
  if (list.length !== 1) throw new TsbuildError('DOCKERFILE_INSTRUCTION', `invalid ONBUILD trigger ${JSON.stringify(trigger)} in the base image`, { location });
  return list[0]!;
}

/**
 * The platform a stage runs on: its `FROM --platform` (expanded by the plan: $BUILDPLATFORM is
 * the host's), else the build's target. Its steps are keyed by it, so a stage on the build
 * platform has the same keys in every target's build.
 */
export function stagePlatform(ps: PlannedStage, target: Platform): Platform {
  return ps.platform !== undefined ? parsePlatform(ps.platform) : target;
}
