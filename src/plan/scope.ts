/**
 * ARG scope and the environment a stage's words expand against, as BuildKit's dispatcher keeps
 * them (frontend/dockerfile/dockerfile2llb/convert.go: dispatchArg, dispatchEnv, getEnv,
 * runCommandString, proxyEnvFromBuildArgs).
 * https://docs.docker.com/reference/dockerfile/#scope
 * https://docs.docker.com/reference/dockerfile/#using-arg-variables
 * https://docs.docker.com/reference/dockerfile/#predefined-args
 *
 * Model. BuildKit keeps one env list on the LLB state of a stage: it starts as the image
 * config's Env, every ENV sets its keys (config and state), and every ARG that ends up with a
 * value sets its key in the *state* env only (never in the image config). A later write wins,
 * so ENV after ARG of the same name wins (the reference's rule), and ARG after ENV (or after an
 * ENV of the base image) wins too (BuildKit's behaviour, moby/moby#36925, docker/cli#3344).
 * Here the image config Env is the caller's (the build engine owns the image config); the
 * scope keeps the overlay of ARG values still in force (`argEnv`), which an ENV of the same key
 * removes (`scopeAfter`). The expansion env is config Env overlaid with `argEnv`.
 *
 * Immutable: every function returns a new scope.
 *
 * `--build-arg NAME` without `=VALUE` (value taken from the client's environment, or dropped
 * when unset) is resolved by the CLI before planning, as the docker CLI does: the build args
 * map handed to planBuild holds final values only.
 */
import type { ArgInstruction } from '../dockerfile/index.js';
import { envFromList } from '../dockerfile/index.js';
import type { EnvGetter, ShellLex } from '../dockerfile/index.js';
import { TsbuildError } from '../errors.js';
import type { BuildPlan, PlannedStage } from './build-plan.js';

/**
 * The predefined proxy args: usable with --build-arg without an ARG; they reach RUN's
 * environment but not the image history or the cache key unless an ARG declares them.
 * https://docs.docker.com/reference/dockerfile/#predefined-args
 */
export const PROXY_ARGS: readonly string[] = [
  'HTTP_PROXY',
  'http_proxy',
  'HTTPS_PROXY',
  'https_proxy',
  'FTP_PROXY',
  'ftp_proxy',
  'NO_PROXY',
  'no_proxy',
  'ALL_PROXY',
  'all_proxy',
];

/**
 * Args BuildKit never puts into the env (convert.go nonEnvArgs): they only switch SBOM scanning.
 */
const NON_ENV_ARGS: ReadonlySet<string> = new Set(['BUILDKIT_SBOM_SCAN_CONTEXT', 'BUILDKIT_SBOM_SCAN_STAGE']);

/** Linux default PATH (BuildKit util/system DefaultPathEnv), set when the image has none. */
export const DEFAULT_PATH_ENV = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** One ARG declared in a stage. `value` is absent when the ARG has no value at all. */
export interface DeclaredArg {
  readonly key: string;
  readonly value?: string;
}

/** Where `COPY --from` / `RUN --mount from=` names point: stage names (lower-case) -> index. */
export interface StageRefs {
  readonly names: ReadonlyMap<string, number>;
  readonly count: number;
}

export interface StageScope {
  /** Index of the stage this scope belongs to. */
  readonly stageIndex: number;
  /** Meta ARGs resolved (BuildPlan.globalArgs), incl. the automatic platform args. */
  readonly globalArgs: ReadonlyMap<string, string>;
  /** The --build-arg values as given (final values; see the file comment). */
  readonly buildArgs: ReadonlyMap<string, string>;
  /**
   * ARGs declared so far, in declaration order, one entry per key (a re-declaration replaces
   * the entry in place, as runCommandString does). For a stage built FROM another stage this
   * starts with that stage's declarations (BuildKit copies the base state's buildArgs).
   */
  readonly declared: readonly DeclaredArg[];
  /** ARG values currently in the expansion env (declared with a value and not shadowed by a later ENV). */
  readonly argEnv: ReadonlyMap<string, string>;
  /** Proxy env from --build-arg (both cases of each name), given to every RUN. */
  readonly proxyEnv: ReadonlyMap<string, string>;
  /** Stage names and count, to resolve `--from`. */
  readonly stages: StageRefs;
}

/**
 * The scope at the start of a stage. For a stage whose base is another stage, pass that stage's
 * final scope as `baseScope`: BuildKit starts the child from the base's LLB state, so ARG values
 * of the base stay in the env and in RUN's history (dispatchState.init appends base.buildArgs).
 */
export function initialStageScope(plan: BuildPlan, planned: PlannedStage, baseScope?: StageScope): StageScope {
  return {
    stageIndex: planned.stage.index,
    globalArgs: plan.globalArgs,
    buildArgs: plan.buildArgs,
    declared: baseScope?.declared ?? [],
    argEnv: baseScope?.argEnv ?? new Map(),
    proxyEnv: proxyEnvFromBuildArgs(plan.buildArgs),
    stages: plan.stageRefs,
  };
}

/**
 * proxyEnvFromBuildArgs + the executor's proxyEnvList: keys matched case-insensitively in
 * sorted key order (so `http_proxy` beats `HTTP_PROXY` when both are given), each value
 * exported under both the upper- and the lower-case name.
 */
export function proxyEnvFromBuildArgs(buildArgs: ReadonlyMap<string, string>): ReadonlyMap<string, string> {
  const chosen = new Map<string, string>();
  for (const key of [...buildArgs.keys()].sort()) {
    const lower = key.toLowerCase();
    if (['http_proxy', 'https_proxy', 'ftp_proxy', 'no_proxy', 'all_proxy'].includes(lower)) {
      chosen.set(lower, buildArgs.get(key) ?? '');
    }
  }
  const out = new Map<string, string>();
  for (const [lower, value] of chosen) {
    if (value === '') continue;
    out.set(lower.toUpperCase(), value);
    out.set(lower, value);
  }
  return out;
}

/** The expansion env as a `NAME=VALUE` list: config Env with ARG values overlaid. */
export function expansionEnv(configEnv: readonly string[], scope: StageScope): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const entry of configEnv) {
    const eq = entry.indexOf('=');
    const key = eq < 0 ? entry : entry.slice(0, eq);
    const overlay = scope.argEnv.get(key);
    out.push(overlay === undefined ? entry : `${key}=${overlay}`);
    seen.add(key);
  }
  for (const [key, value] of scope.argEnv) {
    if (!seen.has(key)) out.push(`${key}=${value}`);
  }
  return out;
}

/** A getter over expansionEnv (later entries win, as BuildKit's EnvList). */
export function expansionGetter(configEnv: readonly string[], scope: StageScope): EnvGetter {
  return envFromList(expansionEnv(configEnv, scope));
}

/**
 * Resolves one ARG instruction (dispatchArg), in order, each definition seeing the ones before:
 * - a --build-arg of that name wins;
 * - else a default is expanded against the current env;
 * - else (`ARG NAME`) the meta ARG's value, if there is one;
 * - else the ARG is declared without a value: not in the env, shown as `NAME=` in RUN history.
 * ARG names are not expanded (dispatch skips Expand for ARG).
 */
export function resolveArgs(
  instr: ArgInstruction,
  scope: StageScope,
  ctx: { readonly env: readonly string[]; readonly lex: ShellLex },
): { readonly args: readonly DeclaredArg[]; readonly scope: StageScope } {
  let current = scope;
  const args: DeclaredArg[] = [];
  for (const def of instr.args) {
    let value: string | undefined;
    const given = current.buildArgs.get(def.key);
    if (given !== undefined) {
      value = given;
    } else if (def.value !== undefined) {
      try {
        value = ctx.lex.processWord(def.value, expansionGetter(ctx.env, current));
      } catch (e) {
        throw located(e, instr);
      }
    } else {
      value = current.globalArgs.get(def.key);
    }
    const declaredArg: DeclaredArg = value === undefined ? { key: def.key } : { key: def.key, value };
    args.push(declaredArg);
    current = declare(current, declaredArg);
  }
  return { args, scope: current };
}

/** Adds one resolved ARG to the scope. */
function declare(scope: StageScope, arg: DeclaredArg): StageScope {
  const declared = [...scope.declared];
  const at = declared.findIndex((d) => d.key === arg.key);
  if (at >= 0) declared[at] = arg;
  else declared.push(arg);
  let argEnv = scope.argEnv;
  if (arg.value !== undefined && !NON_ENV_ARGS.has(arg.key)) {
    const next = new Map(argEnv);
    next.set(arg.key, arg.value);
    argEnv = next;
  }
  return { ...scope, declared, argEnv };
}

/** The scope after an ENV that set `keys`: those keys now come from the config Env. */
export function shadowByEnv(scope: StageScope, keys: readonly string[]): StageScope {
  if (!keys.some((k) => scope.argEnv.has(k))) return scope;
  const argEnv = new Map(scope.argEnv);
  for (const k of keys) argEnv.delete(k);
  return { ...scope, argEnv };
}

/**
 * The environment of a RUN process: the expansion env, plus proxy args from --build-arg for
 * names not already set (executor proxyEnvList); `keyed` is the part that belongs in the cache
 * key and history (everything but the undeclared proxy values, which BuildKit keeps out of the
 * ExecOp cache key).
 */
export function runEnvironment(
  configEnv: readonly string[],
  scope: StageScope,
): { readonly env: readonly string[]; readonly keyed: Readonly<Record<string, string>> } {
  const base = expansionEnv(configEnv, scope);
  const keyed: Record<string, string> = {};
  const present = new Set<string>();
  for (const entry of base) {
    const eq = entry.indexOf('=');
    const key = eq < 0 ? entry : entry.slice(0, eq);
    keyed[key] = eq < 0 ? '' : entry.slice(eq + 1);
    present.add(key);
  }
  const env = [...base];
  for (const [key, value] of scope.proxyEnv) {
    if (!present.has(key)) env.push(`${key}=${value}`);
  }
  return { env, keyed };
}

/**
 * The `|N K=V ...` prefix of RUN history (runCommandString): every declared ARG, its value taken
 * from the env when set there (so an ENV of the same name shows), else its own value or "".
 */
export function runHistoryArgs(configEnv: readonly string[], scope: StageScope): string[] {
  if (scope.declared.length === 0) return [];
  const get = expansionGetter(configEnv, scope);
  const pairs = scope.declared.map((d) => `${d.key}=${get(d.key) ?? d.value ?? ''}`);
  return [`|${pairs.length}`, ...pairs];
}

/** Adds the instruction's location to an expansion error from the lexer. */
export function located(e: unknown, instr: { readonly location: TsbuildError['location'] }): unknown {
  if (e instanceof TsbuildError && e.location === undefined) {
    return new TsbuildError(e.code, e.message, {
      ...(e.hint === undefined ? {} : { hint: e.hint }),
      cause: e,
      ...(instr.location === undefined ? {} : { location: instr.location }),
    });
  }
  return e;
}
