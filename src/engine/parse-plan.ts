import { TsbuildError } from '../errors.js';
import { directiveWarnings, parseDockerfile, splitStages, toInstructions, ShellLex } from '../dockerfile/index.js';
import type { Platform } from '../oci/index.js';
import { planBuild, type BuildPlan } from '../plan/index.js';
import type { Store } from '../store/index.js';
import { collectBuildChecks, reportBuildChecks } from './build-checks.js';
import type { BuildReporter } from './events.js';
import type { BuildRequest } from './request.js';
import { checkRunSecurity } from './run-resources.js';

export interface ParsedPlan {
  readonly plan: BuildPlan;
  readonly lex: ShellLex;
  readonly escape: '\\' | '`';
}

/**
 * The Dockerfile parsed and planned for the request: the stages the target needs, their bases
 * and the global args. Warnings (directives, build checks, unused build args) go to `report`;
 * errors carry their Dockerfile location.
 */
export async function parseAndPlan(
  req: BuildRequest,
  env: { readonly platform: Platform; readonly buildPlatform?: Platform | undefined; readonly report: BuildReporter; readonly store: Store; readonly signal: AbortSignal },
): Promise<ParsedPlan> {
  const { platform, report } = env;
  const file = req.dockerfile.name;
  const parsed = parseDockerfile(req.dockerfile.text, { file });
  for (const message of directiveWarnings(parsed)) report({ type: 'warning', message });
  const instructions = toInstructions(parsed);
  const split = splitStages(instructions);
  if (split.stages.length === 0) {
    throw new TsbuildError('DOCKERFILE_INSTRUCTION', 'the Dockerfile has no FROM instruction', {
      location: { file, startLine: 1, endLine: 1 },
      hint: 'start a stage with FROM IMAGE (or FROM scratch)',
    });
  }
  const plan = planBuild(split, {
    ...(req.target !== undefined ? { target: req.target } : {}),
    buildArgs: req.buildArgs,
    targetPlatform: platform,
    buildPlatform: env.buildPlatform ?? platform,
    escapeToken: parsed.directives.escape,
    ...(req.namedContexts ? { namedContexts: new Set(req.namedContexts.keys()) } : {}),
  });
  // Entitlements are checked before any step runs, as BuildKit's solver does (ONBUILD RUNs: in run-step.ts).
  for (const ps of plan.stages) for (const ins of ps.stage.instructions) if (ins.kind === 'RUN') checkRunSecurity(ins.security, req.runResources?.allow, ins.location);
  // BuildKit's build checks as warnings (dispatch-time ones over the stages this build runs).
  const dispatched = new Set(plan.stages.map((s) => s.stage.index));
  const checkInputs = { parsed, instructions, buildArgs: req.buildArgs, platform, store: env.store, contextDir: req.contextDir, dispatched };
  reportBuildChecks(await collectBuildChecks({ ...checkInputs, dockerfilePath: req.dockerfile.path, target: req.target, signal: env.signal }), report, file);
  for (const name of plan.unusedBuildArgs) {
    report({ type: 'warning', message: `build argument ${JSON.stringify(name)} was not consumed by any ARG in the stages built` });
  }
  return { plan, lex: new ShellLex(parsed.directives.escape), escape: parsed.directives.escape };
}
