/**
 * The build checks around the pure rules of dockerfile/checks: what they need from the store
 * (the ENV and SHELL of base images already present locally; nothing is pulled for a check)
 * and from the context (.dockerignore), and what a build does with the hits: one warning line
 * each, as buildx prints them, and a failed build under `# check=error=true`.
 */
import path from 'node:path';
import { TsbuildError } from '../errors.js';
import { IgnoreMatcher, readDockerignore } from '../context/index.js';
import {
  checkViolationMessage,
  parseDockerfile,
  runBuildChecks,
  ShellLex,
  toInstructions,
  type BaseImageFacts,
  type CheckReport,
  type Instruction,
  type ParsedDockerfile,
} from '../dockerfile/index.js';
import { findLocalImage } from '../image/index.js';
import type { Platform } from '../oci/index.js';
import { automaticArgs, planBuild, resolveMetaArgs } from '../plan/index.js';
import type { Store } from '../store/index.js';
import type { BuildReporter } from './events.js';
import type { BuildRequest } from './request.js';

export interface CheckInputs {
  readonly parsed: ParsedDockerfile;
  readonly instructions: readonly Instruction[];
  readonly buildArgs: ReadonlyMap<string, string>;
  readonly platform: Platform;
  readonly store: Store;
  readonly contextDir: string;
  readonly dockerfilePath?: string | undefined;
  /** Stage indexes the build dispatches, or every stage. */
  readonly dispatched: 'all' | ReadonlySet<number>;
  readonly target?: string | undefined;
  readonly signal?: AbortSignal | undefined;
}

/** Runs the checks with the facts the store and the context hold. */
export async function collectBuildChecks(inp: CheckInputs): Promise<CheckReport> {
  const lex = new ShellLex(inp.parsed.directives.escape);
  const stageNames = new Set(inp.instructions.flatMap((i) => (i.kind === 'FROM' && i.stageName !== undefined ? [i.stageName] : [])));
  const metaArgs = [];
  for (const ins of inp.instructions) {
    if (ins.kind === 'FROM') break;
    if (ins.kind === 'ARG') metaArgs.push(ins);
  }
  const lastFrom = [...inp.instructions].reverse().find((i) => i.kind === 'FROM');
  const targetStage = inp.target ?? (lastFrom?.kind === 'FROM' ? (lastFrom.stageName ?? 'default') : 'default');
  const auto = automaticArgs({ targetPlatform: inp.platform, buildPlatform: inp.platform, buildArgs: inp.buildArgs }, targetStage);
  let globals: ReadonlyMap<string, string> = auto;
  try {
    globals = resolveMetaArgs(metaArgs, auto, inp.buildArgs, lex);
  } catch {
    // The build reports a bad meta ARG itself.
  }
  const facts = new Map<string, BaseImageFacts>();
  for (const ins of inp.instructions) {
    if (ins.kind !== 'FROM') continue;
    let ref: string;
    try {
      ref = lex.processWord(ins.image, (n) => globals.get(n));
    } catch {
      continue;
    }
    if (ref === 'scratch' || stageNames.has(ref.toLowerCase()) || facts.has(ref)) continue;
    const image = await findLocalImage(inp.store, ref, { platform: inp.platform, ...(inp.signal ? { signal: inp.signal } : {}) }).catch(() => undefined);
    if (image === undefined) continue;
    const cfg = image.config.config;
    const platform = [image.config.os, image.config.architecture, image.config.variant].filter((s) => s !== undefined && s !== '').join('/');
    facts.set(ref, { env: cfg?.Env ?? [], ...(cfg?.Shell ? { shell: cfg.Shell } : {}), ...(platform !== '' ? { platform } : {}) });
  }
  const ignore = await readDockerignore(inp.contextDir, inp.dockerfilePath).catch(() => undefined);
  const matcher = ignore && ignore.patterns.length > 0 ? new IgnoreMatcher(ignore.patterns) : undefined;
  return runBuildChecks(inp.parsed, inp.instructions, {
    buildArgs: inp.buildArgs,
    automaticArgs: auto,
    dispatched: inp.dispatched,
    baseImage: (ref) => facts.get(ref),
    ...(matcher
      ? {
          isIgnored: (src: string) => {
            const rel = path.posix.normalize(`/${src}`).slice(1);
            return rel !== '' && matcher.matches(rel);
          },
        }
      : {}),
  });
}

/**
 * A build's checks: each hit as one warning (buildx's short form), unknown check names as
 * warnings, and with `error=true` and any hit the build fails before any step runs.
 */
export function reportBuildChecks(report: CheckReport, emit: BuildReporter, file: string): void {
  for (const name of report.unknownNames) {
    emit({ type: 'warning', message: `# check= names ${JSON.stringify(name)}, which is no build check: it is ignored (see https://docs.docker.com/reference/build-checks/)` });
  }
  // The location prefixes the line, so BuildKit's "(line N)" tail is left out.
  for (const h of report.hits) emit({ type: 'warning', message: `${h.rule.name}: ${h.message}${h.advice ? `: ${h.advice}` : ''}`, location: h.location });
  if (report.failOnHit && report.hits.length > 0) {
    const first = report.hits[0]!;
    throw new TsbuildError('BUILD_CHECK_FAILED', checkViolationMessage(report.hits), {
      location: first.location,
      hint: `${file} sets check=error=true: fix the findings above, or skip a check with # check=skip=NAME`,
    });
  }
}

/**
 * `tsbuild build --check`: the checks alone, no step runs. With a target, its stages; without,
 * every stage (as BuildKit's lint request). A Dockerfile that does not plan (an unknown target,
 * a cycle) still gets its checks; the planning error is returned to be reported after them.
 */
export async function checkDockerfile(
  req: Pick<BuildRequest, 'dockerfile' | 'contextDir' | 'buildArgs' | 'target'>,
  env: { readonly store: Store; readonly platform: Platform; readonly signal?: AbortSignal },
): Promise<{ report: CheckReport; error?: unknown }> {
  const parsed = parseDockerfile(req.dockerfile.text, { file: req.dockerfile.name });
  const instructions = toInstructions(parsed);
  let dispatched: 'all' | ReadonlySet<number> = 'all';
  let error: unknown;
  if (req.target !== undefined) {
    try {
      const { splitStages } = await import('../dockerfile/index.js');
      const plan = planBuild(splitStages(instructions), {
        target: req.target,
        buildArgs: req.buildArgs,
        targetPlatform: env.platform,
        buildPlatform: env.platform,
        escapeToken: parsed.directives.escape,
      });
      dispatched = new Set(plan.stages.map((s) => s.stage.index));
    } catch (e) {
      error = e;
    }
  }
  const report = await collectBuildChecks({
    parsed,
    instructions,
    buildArgs: req.buildArgs,
    platform: env.platform,
    store: env.store,
    contextDir: req.contextDir,
    dockerfilePath: req.dockerfile.path,
    dispatched,
    target: req.target,
    signal: env.signal,
  });
  return { report, ...(error !== undefined ? { error } : {}) };
}
