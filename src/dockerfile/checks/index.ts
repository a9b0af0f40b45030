/** BuildKit's build checks (`--check`, `# check=`), pure: see run-checks.ts. */
export { runBuildChecks, formatCheckShort, checkViolationMessage, CHECK_BUILD_ARG } from './run-checks.js';
export type { CheckHit, CheckReport, CheckOptions as BuildCheckOptions, BaseImageFacts } from './run-checks.js';
export { CHECK_NAMES, CHECK_RULES, isCheckName } from './rules.js';
export type { CheckName, CheckRule } from './rules.js';
