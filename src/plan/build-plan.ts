/**
 * Stages + build options -> BuildPlan: the meta ARGs resolved, each stage's base, and the
 * stages the target needs, dependencies first. Pure.
 *
 * Follows BuildKit's frontend/dockerfile/dockerfile2llb/convert.go (toDispatchState,
 * buildDispatchStates, buildStageDependencyGraph, toCommand, resolveTarget, allReachableStages,
 * buildMetaArgs, dispatchStates.addState) and validations.go validateCircularDependency:
 * https://github.com/moby/buildkit/blob/master/frontend/dockerfile/dockerfile2llb/convert.go
 * The reference: https://docs.docker.com/reference/dockerfile/#understand-how-arg-and-from-interact
 * and https://docs.docker.com/reference/dockerfile/#automatic-platform-args-in-the-global-scope
 */
import type { CopyInstruction, Instruction, RunInstruction, Stage } from '../dockerfile/index.js';
import type { ArgInstruction } from '../dockerfile/index.js';
import { ShellLex, envFromList } from '../dockerfile/index.js';
import { TsbuildError } from '../errors.js';
import type { SourceLocation } from '../errors.js';
import { parsePlatform, parseReference } from '../oci/index.js';
import type { Platform } from '../oci/index.js';
import { mountError, mountSourceNames } from './run-mounts.js';
import { PROXY_ARGS, located } from './scope.js';
import type { StageRefs } from './scope.js';

/** What a stage starts from. */
export type StageBase =
  | { readonly kind: 'scratch' }
  | { readonly kind: 'stage'; readonly index: number }
  | { readonly kind: 'image'; readonly ref: string };

export interface PlannedStage {
  readonly stage: Stage;
  readonly base: StageBase;
  /** `FROM --platform` after expansion with the global args (validated as a platform). */
  readonly platform?: string;
  /** Stage indexes this stage needs (its base stage, COPY --from, RUN --mount from=), ascending. */
  readonly dependsOn: readonly number[];
  /**
   * Image references this stage reads through `COPY --from=<image>` or `RUN --mount from=<image>`
   * (names that are no stage), in first-use order. The engine pulls them like base images.
   */
  readonly imageSources: readonly string[];
  /**
   * ONBUILD triggers of the base *stage*, run before this stage's own instructions (convert.go
   * resolveStages: `d.base.commands` ONBUILDs). Triggers stored in a base *image*'s config are the
   * engine's to run (it has the config); the plan does not see them.
   */
  readonly onbuild: readonly Instruction[];
}

export interface BuildPlan {
  /**
   * Meta ARGs resolved: automatic platform args first, --build-arg overriding them and meta ARG
   * defaults, defaults expanded against earlier ones (buildMetaArgs). Visible to FROM lines;
   * inside a stage only through `ARG NAME`.
   */
  readonly globalArgs: ReadonlyMap<string, string>;
  /** The --build-arg values the plan was made with. */
  readonly buildArgs: ReadonlyMap<string, string>;
  /** Stages the target needs, every dependency before its dependents (file order). */
  readonly stages: readonly PlannedStage[];
  /** Index (Stage.index) of the target stage. */
  readonly target: number;
  /**
   * Build args that no meta ARG and no ARG of a needed stage declares, sorted, excluding the
   * predefined proxy args, the automatic platform args and SOURCE_DATE_EPOCH: the classic builder's "[Warning] One or more build-args [...] were not
   * consumed" (BuildKit itself does not warn: moby/buildkit#2128).
   */
  readonly unusedBuildArgs: readonly string[];
  /** Stage names and count, for resolving `--from` during expansion. */
  readonly stageRefs: StageRefs;
}

export interface PlanOptions {
  /** `--target`; default: the last stage. Case-insensitive. */
  readonly target?: string;
  /** `--build-arg` values, final (see scope.ts for NAME without =VALUE). */
  readonly buildArgs: ReadonlyMap<string, string>;
  readonly targetPlatform: Platform;
  readonly buildPlatform: Platform;
  readonly escapeToken: '\\' | '`';
  /**
   * `--build-context` names: a stage of such a name is replaced by the named context (FROM and
   * --from name the context, as BuildKit), so they resolve as images, never as that stage.
   */
  readonly namedContexts?: ReadonlySet<string>;
}

/** BuildKit's emptyImageName. */
const SCRATCH = 'scratch';

/** containerd FormatAll: os[(os.version)]/arch[/variant]. */
function formatAll(p: Platform): string {
  if (p.os === '') return 'unknown';
  const os = p['os.version'] !== undefined && p['os.version'] !== '' ? `${p.os}(${p['os.version']})` : p.os;
  return [os, p.architecture, p.variant ?? ''].filter((s) => s !== '').join('/');
}

/** containerd Format: os/arch[/variant]. */
function format(p: Platform): string {
  if (p.os === '') return 'unknown';
  return [p.os, p.architecture, p.variant ?? ''].filter((s) => s !== '').join('/');
}

/**
 * convert.go defaultArgs: the automatic args of the global scope, each overridable by a
 * --build-arg of the same name. Includes BuildKit's OSVERSION args and TARGETSTAGE.
 * https://docs.docker.com/reference/dockerfile/#automatic-platform-args-in-the-global-scope
 */
export function automaticArgs(
  opts: Pick<PlanOptions, 'targetPlatform' | 'buildPlatform' | 'buildArgs'>,
  targetStage: string,
): Map<string, string> {
  const bp = opts.buildPlatform;
  const tp = opts.targetPlatform;
  const pairs: [string, string][] = [
    ['BUILDPLATFORM', format(bp)],
    ['BUILDOS', bp.os],
    ['BUILDOSVERSION', bp['os.version'] ?? ''],
    ['BUILDARCH', bp.architecture],
    ['BUILDVARIANT', bp.variant ?? ''],
    ['TARGETPLATFORM', formatAll(tp)],
    ['TARGETOS', tp.os],
    ['TARGETOSVERSION', tp['os.version'] ?? ''],
    ['TARGETARCH', tp.architecture],
    ['TARGETVARIANT', tp.variant ?? ''],
    ['TARGETSTAGE', targetStage],
  ];
  const out = new Map<string, string>();
  for (const [k, v] of pairs) out.set(k, opts.buildArgs.get(k) ?? v);
  return out;
}

/**
 * convert.go buildMetaArgs: each meta ARG takes its --build-arg value, else its default
 * expanded against the args so far; an ARG with neither adds nothing. Names are not expanded.
 */
export function resolveMetaArgs(
  metaArgs: readonly ArgInstruction[],
  initial: ReadonlyMap<string, string>,
  buildArgs: ReadonlyMap<string, string>,
  lex: ShellLex,
): Map<string, string> {
  const args = new Map(initial);
  for (const instr of metaArgs) {
    for (const def of instr.args) {
      let value = buildArgs.get(def.key);
      if (value === undefined && def.value !== undefined) {
        try {
          value = lex.processWord(def.value, (name) => args.get(name));
        } catch (e) {
          throw located(e, instr);
        }
      }
      if (value !== undefined) args.set(def.key, value);
    }
  }
  return args;
}

/** A stage reference from COPY --from / RUN --mount from=, before it is known to be a stage. */
interface Source {
  readonly name: string;
  readonly stage?: number;
  readonly location: SourceLocation;
  readonly what: 'copy' | 'mount';
}

interface StageInfo {
  readonly stage: Stage;
  readonly displayName: string;
  readonly base: StageBase;
  readonly platform?: string;
  readonly onbuild: readonly Instruction[];
  readonly sources: readonly Source[];
}

/**
 * Resolves a `COPY --from` value at plan time (toCommand): variables are not allowed; a number
 * (Go strconv.Atoi) is a stage index and must exist; a stage name (case-insensitive, any stage of
 * the file) is that stage; anything else is an image reference.
 */
function copySource(instr: CopyInstruction, from: string, refs: StageRefs, lex: ShellLex): Source {
  let expanded: string;
  try {
    expanded = lex.processWord(from, envFromList([]));
  } catch (e) {
    throw located(e, instr);
  }
  if (expanded !== from) {
    throw new TsbuildError(
      'DOCKERFILE_INSTRUCTION',
      'variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround',
      { location: instr.location },
    );
  }
  if (/^[+-]?[0-9]+$/.test(from)) {
    const index = Number(from);
    if (index < 0 || index >= refs.count) {
      throw new TsbuildError('STAGE_NOT_FOUND', `invalid stage index ${index}`, {
        location: instr.location,
        hint: `stage indexes run from 0 to ${refs.count - 1}`,
      });
    }
    return { name: from, stage: index, location: instr.location, what: 'copy' };
  }
  const index = refs.names.get(from.toLowerCase());
  return index === undefined
    ? { name: from, location: instr.location, what: 'copy' }
    : { name: from, stage: index, location: instr.location, what: 'copy' };
}

/** detectRunMount: `from=` names only (no indexes), looked up case-insensitively among all stages. */
function mountSources(instr: RunInstruction, refs: StageRefs): Source[] {
  const out: Source[] = [];
  for (const value of instr.mounts) {
    let from: string | undefined;
    try {
      from = mountSourceNames(value);
    } catch (e) {
      throw mountError(e, instr.location);
    }
    if (from === undefined) continue;
    const index = refs.names.get(from.toLowerCase());
    out.push(
      index === undefined
        ? { name: from, location: instr.location, what: 'mount' }
        : { name: from, stage: index, location: instr.location, what: 'mount' },
    );
  }
  return out;
}

/** Sources of one instruction (ONBUILD triggers are not run in their own stage). */
function sourcesOf(instr: Instruction, refs: StageRefs, lex: ShellLex): Source[] {
  if (instr.kind === 'COPY' && instr.from !== undefined && instr.from !== '') return [copySource(instr, instr.from, refs, lex)];
  if (instr.kind === 'RUN') return mountSources(instr, refs);
  return [];
}

/** Expands a FROM word with the global args; errors located at the FROM line. */
function expandFromWord(word: string, globals: ReadonlyMap<string, string>, lex: ShellLex, location: SourceLocation): string {
  try {
    return lex.processWord(word, (name) => globals.get(name));
  } catch (e) {
    throw located(e, { location });
  }
}

/** Builds the plan. Throws TsbuildError (located where a Dockerfile line is at fault). */
export function planBuild(
  split: { readonly metaArgs: readonly ArgInstruction[]; readonly stages: readonly Stage[] },
  opts: PlanOptions,
): BuildPlan {
  const { stages } = split;
  if (stages.length === 0) {
    throw new TsbuildError('DOCKERFILE_INSTRUCTION', 'dockerfile contains no stages to build');
  }
  const lex = new ShellLex(opts.escapeToken);
  const last = stages[stages.length - 1] as Stage;
  const targetName = opts.target !== undefined && opts.target !== '' ? opts.target : (last.name ?? '');
  const globalArgs = resolveMetaArgs(split.metaArgs, automaticArgs(opts, targetName), opts.buildArgs, lex);

  const allNames = new Map<string, number>();
  for (const s of stages) if (s.name !== undefined) allNames.set(s.name.toLowerCase(), s.index);
  const names = new Map([...allNames].filter(([n]) => !opts.namedContexts?.has(n)));
  const refs: StageRefs = { names, count: stages.length };

  // buildDispatchStates: base names and platforms, expanded with the global args only. A FROM
  // names a stage only when that stage was added before it (addState looks up the names so far,
  // with the expanded name as written: stage names are lower-case, so `FROM Build` is an image).
  const earlier = new Map<string, number>();
  const bases: Omit<StageInfo, 'sources'>[] = [];
  for (const stage of stages) {
    const from = stage.from;
    const baseName = expandFromWord(from.image, globalArgs, lex, from.location);
    if (baseName === '') {
      throw new TsbuildError('DOCKERFILE_INSTRUCTION', `base name (${from.image}) should not be blank`, {
        location: from.location,
      });
    }
    let platform: string | undefined;
    if (from.platform !== undefined) {
      platform = expandFromWord(from.platform, globalArgs, lex, from.location);
      if (platform === '') {
        throw new TsbuildError('DOCKERFILE_INSTRUCTION', `empty platform value from expression ${from.platform}`, {
          location: from.location,
        });
      }
      try {
        parsePlatform(platform);
      } catch (e) {
        throw new TsbuildError('PLATFORM_INVALID', `failed to parse platform ${from.platform}`, {
          location: from.location,
          cause: e,
          ...(e instanceof TsbuildError && e.hint !== undefined ? { hint: e.hint } : {}),
        });
      }
    }
    const baseStage = earlier.get(baseName);
    const base: StageBase =
      baseStage !== undefined
        ? { kind: 'stage', index: baseStage }
        : baseName === SCRATCH
          ? { kind: 'scratch' }
          : { kind: 'image', ref: baseName };
    const onbuild =
      base.kind === 'stage'
        ? (stages[base.index]?.instructions ?? []).flatMap((i) => (i.kind === 'ONBUILD' ? [i.trigger] : []))
        : [];
    bases.push({
      stage,
      displayName: stage.name ?? `stage-${stage.index}`,
      base,
      ...(platform === undefined ? {} : { platform }),
      onbuild,
    });
    if (stage.name !== undefined && names.has(stage.name.toLowerCase())) earlier.set(stage.name.toLowerCase(), stage.index);
  }

  // resolveTarget
  let target = last.index;
  if (opts.target !== undefined && opts.target !== '') {
    const found = allNames.get(opts.target.toLowerCase());
    if (found === undefined) {
      const known = stages.flatMap((s) => (s.name === undefined ? [] : [s.name]));
      throw new TsbuildError('STAGE_NOT_FOUND', `target stage ${JSON.stringify(opts.target)} could not be found`, {
        hint: known.length === 0 ? 'the Dockerfile names no stages (FROM ... AS name)' : `stages: ${known.join(', ')}`,
      });
    }
    target = found;
  }

  // buildStageDependencyGraph: the sources of every command of every stage (toCommand), then
  // validateCircularDependency.
  const infos: StageInfo[] = bases.map((info) => ({
    ...info,
    sources: [...info.onbuild, ...info.stage.instructions].flatMap((i) => sourcesOf(i, refs, lex)),
  }));
  checkCycles(infos);

  // resolveReachableStages -> resolveBaseImage parses every image name (of all stages, and of
  // every COPY --from / mount from= that names no stage) before looking at reachability.
  for (const info of infos) {
    if (info.base.kind === 'image') checkReference(info.base.ref, info.stage.from.location);
    for (const s of info.sources) {
      if (s.stage === undefined && s.name !== SCRATCH) checkReference(s.name, s.location);
    }
  }

  // allReachableStages: through the base stage and the command sources.
  const reachable = new Set<number>();
  const visit = (index: number): void => {
    if (reachable.has(index)) return;
    reachable.add(index);
    const info = infos[index];
    if (info === undefined) return;
    if (info.base.kind === 'stage') visit(info.base.index);
    for (const s of info.sources) if (s.stage !== undefined) visit(s.stage);
  };
  visit(target);

  // dispatch: a source stage must have been dispatched, i.e. come earlier in the file.
  for (const info of infos) {
    if (!reachable.has(info.stage.index)) continue;
    for (const s of info.sources) {
      if (s.stage === undefined || s.stage < info.stage.index) continue;
      const source = infos[s.stage]?.displayName ?? s.name;
      throw new TsbuildError(
        'STAGE_NOT_FOUND',
        s.what === 'copy'
          ? `cannot copy from stage ${JSON.stringify(s.name)}, it needs to be defined before current stage ${JSON.stringify(info.displayName)}`
          : `cannot mount from stage ${JSON.stringify(s.name)}, stage needs to be defined before current command`,
        { location: s.location, hint: `move the stage ${JSON.stringify(source)} above ${JSON.stringify(info.displayName)}` },
      );
    }
  }

  const planned: PlannedStage[] = infos
    .filter((info) => reachable.has(info.stage.index))
    .map((info) => {
      const deps = new Set<number>();
      if (info.base.kind === 'stage') deps.add(info.base.index);
      const images: string[] = [];
      for (const s of info.sources) {
        if (s.stage !== undefined) deps.add(s.stage);
        else if (s.name !== SCRATCH && !images.includes(s.name)) images.push(s.name);
      }
      return {
        stage: info.stage,
        base: info.base,
        ...(info.platform === undefined ? {} : { platform: info.platform }),
        dependsOn: [...deps].sort((a, b) => a - b),
        imageSources: images,
        onbuild: info.onbuild,
      };
    });

  // Build args that nothing declares (meta ARGs count, as in the classic builder). The
  // automatic args are always consumed (they override the global scope), and so is
  // SOURCE_DATE_EPOCH (BuildKit reads it for timestamps whether declared or not).
  const declared = new Set<string>([...automaticArgs(opts, targetName).keys(), 'SOURCE_DATE_EPOCH']);
  for (const a of split.metaArgs) for (const d of a.args) declared.add(d.key);
  for (const p of planned) {
    for (const i of [...p.onbuild, ...p.stage.instructions]) {
      if (i.kind === 'ARG') for (const d of i.args) declared.add(d.key);
    }
  }
  const unusedBuildArgs = [...opts.buildArgs.keys()].filter((k) => !declared.has(k) && !PROXY_ARGS.includes(k)).sort();

  return { globalArgs, buildArgs: opts.buildArgs, stages: planned, target, unusedBuildArgs, stageRefs: refs };
}

/** An image name must parse as a reference (BuildKit: `failed to parse stage name "X"`). */
function checkReference(ref: string, location: SourceLocation): void {
  try {
    parseReference(ref);
  } catch (e) {
    throw new TsbuildError('REFERENCE_INVALID', `failed to parse stage name ${JSON.stringify(ref)}`, {
      location,
      cause: e,
      ...(e instanceof TsbuildError && e.hint !== undefined ? { hint: e.hint } : {}),
    });
  }
}

/**
 * validateCircularDependency: a depth-first walk over the command sources (not the FROM base,
 * which always points back), over all stages, reachable or not.
 */
function checkCycles(infos: readonly StageInfo[]): void {
  const visited = new Set<number>();
  const onPath = new Set<number>();
  const visit = (index: number, path: readonly Source[]): readonly Source[] | undefined => {
    if (visited.has(index)) return undefined;
    visited.add(index);
    onPath.add(index);
    for (const s of infos[index]?.sources ?? []) {
      if (s.stage === undefined) continue;
      const next = [...path, s];
      if (onPath.has(s.stage)) return next;
      const found = visit(s.stage, next);
      if (found !== undefined) return found;
    }
    onPath.delete(index);
    return undefined;
  };
  for (const info of infos) {
    const cycle = visit(info.stage.index, []);
    if (cycle !== undefined) {
      const first = cycle[0] as Source;
      throw new TsbuildError('STAGE_CYCLE', `circular dependency detected on stage: ${info.displayName}`, {
        location: first.location,
        hint: `dependency chain: ${cycle.map((s) => `line ${s.location.startLine} (--from ${s.name})`).join(' -> ')}`,
      });
    }
  }
}
