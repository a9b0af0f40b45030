/** The token rule of BuildKit's SecretsUsedInArgOrEnv check (run by checks/run-checks.ts). */

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
