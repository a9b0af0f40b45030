/** BuildKit's build checks (`--check`, `# check=`), pure: see run-checks.ts. */
export { runBuildChecks, checkViolationMessage } from './run-checks.js';
export type { CheckHit, CheckReport, CheckOptions as BuildCheckOptions, BaseImageFacts } from './run-checks.js';
export type { CheckName, CheckRule } from './rules.js';
