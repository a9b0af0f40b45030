/**
 * Test helpers for src/plan: real Dockerfile text through the real parser, and a tiny stage
 * runner that threads config Env, WORKDIR, SHELL and the ARG scope the way the build engine
 * does (only the parts expansion depends on). Not exported from index.ts.
 */
import { parseDockerfile, splitStages, toInstructions, ShellLex } from '../dockerfile/index.js';
import type { Platform } from '../oci/index.js';
import { planBuild } from './build-plan.js';
import type { BuildPlan, PlanOptions } from './build-plan.js';
import { expandInstruction, scopeAfter } from './expand.js';
import type { Step } from './expand.js';
import { initialStageScope } from './scope.js';
import type { StageScope } from './scope.js';

export const TARGET: Platform = { os: 'linux', architecture: 'arm64' };
export const BUILD: Platform = { os: 'linux', architecture: 'amd64' };

export interface Loaded {
  readonly plan: BuildPlan;
  readonly lex: ShellLex;
}

export function plan(
  text: string,
  opts: { target?: string; args?: Record<string, string>; targetPlatform?: Platform } = {},
): Loaded {
  const parsed = parseDockerfile(text, { file: 'Dockerfile' });
  const split = splitStages(toInstructions(parsed));
  const options: PlanOptions = {
    ...(opts.target === undefined ? {} : { target: opts.target }),
    buildArgs: new Map(Object.entries(opts.args ?? {})),
    targetPlatform: opts.targetPlatform ?? TARGET,
    buildPlatform: BUILD,
    escapeToken: parsed.escapeToken,
  };
  return { plan: planBuild(split, options), lex: new ShellLex(parsed.escapeToken) };
}

interface StageRun {
  readonly steps: Step[];
  readonly env: string[];
  readonly workdir: string;
  readonly shell: string[];
  readonly scope: StageScope;
}

/** Runs every planned stage's instructions through expandInstruction; stage index -> result. */
export function runStages(loaded: Loaded, baseEnv: readonly string[] = ['PATH=/usr/bin:/bin']): Map<number, StageRun> {
  const out = new Map<number, StageRun>();
  for (const planned of loaded.plan.stages) {
    const parent = planned.base.kind === 'stage' ? out.get(planned.base.index) : undefined;
    let env = parent !== undefined ? [...parent.env] : [...baseEnv];
    let workdir = parent?.workdir ?? '/';
    let shell = parent?.shell ?? [];
    let scope = initialStageScope(loaded.plan, planned, parent?.scope);
    const steps: Step[] = [];
    for (const instr of [...planned.onbuild, ...planned.stage.instructions]) {
      const step = expandInstruction(instr, { env, scope, lex: loaded.lex, workdir, shell });
      steps.push(step);
      scope = scopeAfter(scope, step);
      if (step.kind === 'ENV') {
        for (const p of step.pairs) {
          env = [...env.filter((e) => !e.startsWith(`${p.key}=`)), `${p.key}=${p.value}`];
        }
      }
      if (step.kind === 'WORKDIR') workdir = step.path;
      if (step.kind === 'SHELL') shell = [...step.shell];
    }
    out.set(planned.stage.index, { steps, env, workdir, shell, scope });
  }
  return out;
}

/** The steps of the target stage. */
export function targetSteps(text: string, opts: Parameters<typeof plan>[1] = {}): Step[] {
  const loaded = plan(text, opts);
  return runStages(loaded).get(loaded.plan.target)?.steps ?? [];
}

/** Catches a thrown value. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected an error');
}
