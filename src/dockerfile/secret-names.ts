import type { SourceLocation } from '../errors.js';
import { parseCheckOptions } from './directives.js';
import type { Instruction } from './instructions.js';

/** BuildKit's name for the check, as `# check=skip=` spells it. */
export const SECRETS_USED_IN_ARG_OR_ENV = 'SecretsUsedInArgOrEnv';

// BuildKit's getSecretsRegex (frontend/dockerfile/dockerfile2llb): a token of the name, split
// at underscores, that says "secret", unless another token says it is not (PUBLIC_KEY,
// TOKEN_FILE, AUTH_VERSION). Case-insensitive. GITHUB_TOKEN and DB_PASSWORD match; MONKEY
// and PASSWORDS do not.
const DENY = /(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)/i;
const ALLOW = /(?:_|^)(?:public|file|version)(?:_|$)/i;

/** Whether an ARG or ENV name looks like it holds a secret (BuildKit's SecretsUsedInArgOrEnv). */
export function looksLikeSecretName(name: string): boolean {
  return DENY.test(name) && !ALLOW.test(name);
}

export interface SecretNameWarning {
  readonly message: string;
  readonly location: SourceLocation;
}

/**
 * The SecretsUsedInArgOrEnv check over one stage's instructions, as BuildKit runs it for the
 * stages it builds: one warning per ARG or ENV name that looks like a secret. Nothing when
 * `# check=skip=SecretsUsedInArgOrEnv` (or `skip=all`) turns the check off.
 */
export function secretNameWarnings(instructions: readonly Instruction[], checkDirective: string | undefined): SecretNameWarning[] {
  if (checkDirective !== undefined) {
    const options = parseCheckOptions(checkDirective);
    if (!('problem' in options) && (options.skipAll || options.skip.includes(SECRETS_USED_IN_ARG_OR_ENV))) return [];
  }
  const out: SecretNameWarning[] = [];
  for (const ins of instructions) {
    const names = ins.kind === 'ARG' ? ins.args.map((a) => a.key) : ins.kind === 'ENV' ? ins.pairs.map((p) => p.key) : [];
    for (const name of names) {
      if (!looksLikeSecretName(name)) continue;
      const where = ins.kind === 'ARG' ? "the image's history (the command lines of RUN steps that use it)" : "the image's config and history";
      out.push({
        message: `${SECRETS_USED_IN_ARG_OR_ENV}: Do not use ARG or ENV instructions for sensitive data (${ins.kind} ${JSON.stringify(name)}): its value ends up in ${where}; pass a secret with --secret and RUN --mount=type=secret`,
        location: ins.location,
      });
    }
  }
  return out;
}
