import { describe, expect, it } from 'vitest';
import { parseDockerfile } from './parser.js';
import { toInstructions } from './instructions.js';
import { looksLikeSecretName, secretNameWarnings } from './secret-names.js';

describe('looksLikeSecretName (BuildKit SecretsUsedInArgOrEnv)', () => {
  // BuildKit's examples and the edges of its token rule.
  it.each(['GITHUB_TOKEN', 'DB_PASSWORD', 'api_key', 'AUTH', 'secret_MESSAGE', 'aws_secret_access_key', 'NPM_AUTH_TOKEN', 'MY_CREDENTIALS', 'apikey', 'USER_PWORD', 'ROOT_PASSWD'])('%s looks like a secret', (name) => {
    expect(looksLikeSecretName(name)).toBe(true);
  });
  it.each(['MONKEY', 'PASSWORDS', 'TOKENIZER', 'PUBLIC_KEY', 'GPG_KEY_FILE', 'TOKEN_VERSION', 'NODE_VERSION', 'KEYRING', 'PATH', 'BUILD_AUTHOR'])('%s does not', (name) => {
    expect(looksLikeSecretName(name)).toBe(false);
  });
});

describe('secretNameWarnings', () => {
  const instructionsOf = (text: string) => toInstructions(parseDockerfile(text, { file: 'Dockerfile' }));
  it('warns once per secret-looking ARG or ENV name, at its line, naming the instruction', () => {
    const text = 'FROM scratch\nARG VERSION GITHUB_TOKEN\nENV DB_PASSWORD=x PUBLIC_KEY=y\nARG token_file\n';
    const w = secretNameWarnings(instructionsOf(text).slice(1), undefined);
    expect(w.map((x) => [x.location.startLine, x.message.match(/\((ARG|ENV) "(\w+)"\)/)?.slice(1).join(' ')])).toEqual([
      [2, 'ARG GITHUB_TOKEN'],
      [3, 'ENV DB_PASSWORD'],
    ]);
    expect(w[0]!.message).toMatch(/^SecretsUsedInArgOrEnv: .*history/);
  });
  it('is turned off by # check=skip=SecretsUsedInArgOrEnv or skip=all, as in BuildKit', () => {
    const ins = instructionsOf('FROM scratch\nARG GITHUB_TOKEN\n').slice(1);
    expect(secretNameWarnings(ins, 'skip=SecretsUsedInArgOrEnv')).toEqual([]);
    expect(secretNameWarnings(ins, 'skip=all')).toEqual([]);
    expect(secretNameWarnings(ins, 'skip=JSONArgsRecommended')).toHaveLength(1);
  });
});
