import { describe, expect, it } from 'vitest';
import { looksLikeSecretName } from './secret-names.js';

describe('looksLikeSecretName (BuildKit SecretsUsedInArgOrEnv)', () => {
  // BuildKit's examples and the edges of its token rule.
  it.each(['GITHUB_TOKEN', 'DB_PASSWORD', 'api_key', 'AUTH', 'secret_MESSAGE', 'aws_secret_access_key', 'NPM_AUTH_TOKEN', 'MY_CREDENTIALS', 'apikey', 'USER_PWORD', 'ROOT_PASSWD'])('%s looks like a secret', (name) => {
    expect(looksLikeSecretName(name)).toBe(true);
  });
  it.each(['MONKEY', 'PASSWORDS', 'TOKENIZER', 'PUBLIC_KEY', 'GPG_KEY_FILE', 'TOKEN_VERSION', 'NODE_VERSION', 'KEYRING', 'PATH', 'BUILD_AUTHOR'])('%s does not', (name) => {
    expect(looksLikeSecretName(name)).toBe(false);
  });
});
