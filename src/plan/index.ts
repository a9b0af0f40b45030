/**
 * The planner: parsed stages + build options -> BuildPlan (which stages, in which order, from
 * which bases, with which global args), and per instruction the expanded Step the engine runs.
 * Pure: no file system, network, process or logger (DESIGN.md "Layout").
 */
export { planBuild, automaticArgs, resolveMetaArgs } from './build-plan.js';
export type { BuildPlan, PlannedStage, PlanOptions, StageBase } from './build-plan.js';
export {
  initialStageScope,
  shadowByEnv,
  expansionEnv,
  expansionGetter,
  runEnvironment,
  proxyEnvFromBuildArgs,
  PROXY_ARGS,
  DEFAULT_PATH_ENV,
} from './scope.js';
export type { StageScope, DeclaredArg, StageRefs } from './scope.js';
export {
  expandInstruction,
  scopeAfter,
  normalizeWorkdir,
  parsePortSpec,
} from './expand.js';
export type {
  Step,
  ExpandContext,
  SourceRef,
  KeyValue,
  RunMount,
  RunStep,
  CmdStep,
  EntrypointStep,
  ShellStep,
  EnvStep,
  LabelStep,
  ArgStep,
  InlineSource,
  CopyStep,
  AddStep,
  WorkdirStep,
  UserStep,
  VolumeStep,
  ExposeStep,
  StopSignalStep,
  HealthcheckStep,
  OnbuildStep,
  MaintainerStep,
} from './expand.js';
export type { MountType, CacheSharing } from './run-mounts.js';
