import { TsbuildError } from '../errors.js';
import type { ArgInstruction, ShellLex, SplitStages, Stage } from '../dockerfile/index.js';
import type { Platform } from '../oci/types.js';
import { formatPlatform } from '../oci/platform.js';

/** Args declared in a stage so far: name -> value (undefined: declared without a value). */
export type ArgScope = ReadonlyMap<string, string | undefined>;

export type StageBase = { readonly kind: 'scratch' } | { readonly kind: 'stage'; readonly index: number } | { readonly kind: 'image'; readonly ref: string };

export interface PlannedStage {
  readonly stage: Stage;
  readonly base: StageBase;
}

export interface StagePlan {
  readonly stages: readonly PlannedStage[];
  readonly target: number;
  readonly globalArgs: ReadonlyMap<string, string>;
  readonly unusedBuildArgs: readonly string[];
  /** Build args consumed by an ARG (filled in while stages run). */
  readonly usedArgs: Set<string>;
  stageByRef(ref: string): number | undefined;
  stageScope(stage: Stage): ArgScope;
}

/** Proxy args usable without an ARG line (reference: "Predefined ARGs"). */
export const PREDEFINED_ARGS = new Set(['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'FTP_PROXY', 'ftp_proxy', 'NO_PROXY', 'no_proxy', 'ALL_PROXY', 'all_proxy']);

/** Automatic platform args of the global scope (reference: "Automatic platform ARGs"). */
export function platformArgs(target: Platform, buildPlatform: Platform): Map<string, string> {
  return new Map([
    ['TARGETPLATFORM', formatPlatform(target)],
    ['TARGETOS', target.os],
    ['TARGETARCH', target.architecture],
    ['TARGETVARIANT', target.variant ?? ''],
    ['BUILDPLATFORM', formatPlatform(buildPlatform)],
    ['BUILDOS', buildPlatform.os],
    ['BUILDARCH', buildPlatform.architecture],
    ['BUILDVARIANT', buildPlatform.variant ?? ''],
  ]);
}

function mapToEnv(m: ReadonlyMap<string, string | undefined>): string[] {
  const out: string[] = [];
  for (const [k, v] of m) if (v !== undefined) out.push(`${k}=${v}`);
  return out;
}

/**
 * Which stages to build and in what order, the global (meta) args, and the per-stage arg
 * scope. Only the stages the target needs are kept: through FROM <stage>, COPY --from and
 * RUN --mount from=. A FROM naming a stage means an earlier stage; anything else is an image.
 */
export function planStages(
  split: SplitStages,
  opts: { target?: string | undefined; buildArgs: ReadonlyMap<string, string>; platform: Platform; lex: ShellLex; file: string },
): StagePlan {
  const stages = split.stages;
  const auto = platformArgs(opts.platform, opts.platform);
  const usedArgs = new Set<string>();

  // Meta args: --build-arg wins over the default; defaults expand against earlier meta args.
  const globalArgs = new Map<string, string>(auto);
  const declaredGlobal = new Map<string, string | undefined>();
  for (const ins of split.metaArgs) {
    for (const a of ins.args) {
      let value: string | undefined;
      if (opts.buildArgs.has(a.key)) {
        value = opts.buildArgs.get(a.key);
        usedArgs.add(a.key);
      } else if (a.value !== undefined) {
        value = expand(opts.lex, a.value, mapToEnv(globalArgs), ins);
      } else {
        value = globalArgs.get(a.key);
      }
      declaredGlobal.set(a.key, value);
      if (value !== undefined) globalArgs.set(a.key, value);
    }
  }

  const byName = new Map<string, number>();
  for (const s of stages) if (s.name) byName.set(s.name, s.index);
  const stageByRef = (ref: string): number | undefined => {
    const lower = ref.toLowerCase();
    if (byName.has(lower)) return byName.get(lower);
    if (/^\d+$/.test(ref)) return Number(ref) < stages.length ? Number(ref) : undefined;
    return undefined;
  };

  let target = stages.length - 1;
  if (opts.target !== undefined) {
    const t = byName.get(opts.target.toLowerCase());
    if (t === undefined) {
      throw new TsbuildError('STAGE_NOT_FOUND', `target stage ${JSON.stringify(opts.target)} could not be found`, {
        hint: byName.size > 0 ? `stages named in the Dockerfile: ${[...byName.keys()].join(', ')}` : 'the Dockerfile names no stages (FROM IMAGE AS NAME)',
      });
    }
    target = t;
  }

  const bases = new Map<number, StageBase>();
  const deps = new Map<number, number[]>();
  for (const s of stages) {
    const ref = expand(opts.lex, s.from.image, mapToEnv(globalArgs), s.from);
    const earlier = byName.get(ref.toLowerCase());
    let base: StageBase;
    if (ref.toLowerCase() === 'scratch') base = { kind: 'scratch' };
    else if (earlier !== undefined && earlier < s.index) base = { kind: 'stage', index: earlier };
    else if (ref === '') throw new TsbuildError('DOCKERFILE_INSTRUCTION', `FROM ${s.from.image}: the base image name is empty after expansion`, { location: s.from.location });
    else base = { kind: 'image', ref };
    bases.set(s.index, base);
    const d: number[] = base.kind === 'stage' ? [base.index] : [];
    for (const ins of s.instructions) {
      if ((ins.kind === 'COPY' && ins.from !== undefined) || false) {
        const fromRef = expand(opts.lex, ins.from!, mapToEnv(globalArgs), ins);
        const idx = stageByRef(fromRef);
        if (/^\d+$/.test(fromRef) && idx === undefined) {
          throw new TsbuildError('STAGE_NOT_FOUND', `COPY --from=${fromRef}: there is no stage with index ${fromRef}`, { location: ins.location });
        }
        if (idx !== undefined) {
          if (idx === s.index) throw new TsbuildError('STAGE_CYCLE', `COPY --from=${fromRef} refers to its own stage`, { location: ins.location });
          d.push(idx);
        }
      }
    }
    deps.set(s.index, d);
  }

  // Depth-first from the target; a stage on the current path again is a cycle.
  const order: number[] = [];
  const state = new Map<number, 'visiting' | 'done'>();
  const visit = (i: number, from?: Stage): void => {
    const st = state.get(i);
    if (st === 'done') return;
    if (st === 'visiting') {
      throw new TsbuildError('STAGE_CYCLE', `stage ${JSON.stringify(stages[i]?.name ?? String(i))} depends on itself`, { location: (from ?? stages[i]!).location });
    }
    state.set(i, 'visiting');
    for (const d of deps.get(i) ?? []) visit(d, stages[i]);
    state.set(i, 'done');
    order.push(i);
  };
  visit(target);

  // Build args that no reachable ARG declares (reported as a warning, as BuildKit does).
  const declared = new Set<string>(split.metaArgs.flatMap((a) => a.args.map((x) => x.key)));
  for (const i of order) for (const ins of stages[i]!.instructions) if (ins.kind === 'ARG') for (const a of ins.args) declared.add(a.key);
  const unusedBuildArgs = [...opts.buildArgs.keys()].filter((k) => !declared.has(k) && !PREDEFINED_ARGS.has(k));

  return {
    stages: order.map((i) => ({ stage: stages[i]!, base: bases.get(i)! })),
    target,
    globalArgs,
    unusedBuildArgs,
    usedArgs,
    stageByRef,
    stageScope: () => new Map(),
  };
}

function expand(lex: ShellLex, word: string, env: readonly string[], ins: { location: ArgInstruction['location'] }): string {
  try {
    return lex.processWord(word, env);
  } catch (e) {
    if (e instanceof TsbuildError) throw new TsbuildError(e.code, e.message, { location: ins.location, hint: e.hint });
    throw e;
  }
}
