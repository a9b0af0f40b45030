import { TsbuildError } from '../errors.js';
import { directiveWarnings, parseDockerfile, secretNameWarnings, splitStages, toInstructions, ShellLex } from '../dockerfile/index.js';
import { formatPlatform, parsePlatform, platformMatches, type Platform } from '../oci/index.js';
import { planBuild, type BuildPlan } from '../plan/index.js';
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
 * and the global args. Warnings (directives, unused build args) go to `report`. Pure apart from
 * the reporting; errors carry their Dockerfile location.
 */
export function parseAndPlan(req: BuildRequest, platform: Platform, report: BuildReporter): ParsedPlan {
  const file = req.dockerfile.name;
  const parsed = parseDockerfile(req.dockerfile.text, { file });
  for (const message of directiveWarnings(parsed)) report({ type: 'warning', message });
  const split = splitStages(toInstructions(parsed));
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
    buildPlatform: platform,
    escapeToken: parsed.directives.escape,
  });
  // Every step runs on the host's platform (no emulation yet). A stage that asks for another
  // one would otherwise be built for the host and labelled as such: a silently wrong image.
  for (const ps of plan.stages) {
    if (ps.platform === undefined || platformMatches(parsePlatform(ps.platform), platform)) continue;
    throw new TsbuildError('UNSUPPORTED', `FROM --platform=${ps.platform}: building for another platform than ${formatPlatform(platform)} needs emulation, which tsbuild does not have yet`, {
      location: ps.stage.from.location,
      hint: 'drop --platform, or use --platform=$BUILDPLATFORM',
    });
  }
  // Entitlements are checked before any step runs, as BuildKit's solver does (ONBUILD RUNs: in run-step.ts).
  for (const ps of plan.stages) for (const ins of ps.stage.instructions) if (ins.kind === 'RUN') checkRunSecurity(ins.security, req.runResources?.allow, ins.location);
  // buildx's SecretsUsedInArgOrEnv, over the stages this build runs.
  for (const ps of plan.stages) for (const w of secretNameWarnings(ps.stage.instructions, parsed.directives.check)) report({ type: 'warning', ...w });
  for (const name of plan.unusedBuildArgs) {
    report({ type: 'warning', message: `build argument ${JSON.stringify(name)} was not consumed by any ARG in the stages built` });
  }
  return { plan, lex: new ShellLex(parsed.directives.escape), escape: parsed.directives.escape };
}
