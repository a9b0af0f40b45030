import { describe, expect, it } from 'vitest';
import { ShellLex } from '../dockerfile/index.js';
import type { ArgInstruction } from '../dockerfile/index.js';
import { expansionEnv, initialStageScope, proxyEnvFromBuildArgs, resolveArgs, runEnvironment, shadowByEnv, type StageScope } from './scope.js';

/** The scope after an ARG instruction. */
const declareArg = (scope: StageScope, instr: Parameters<typeof resolveArgs>[0], ctx: Parameters<typeof resolveArgs>[2]): StageScope => resolveArgs(instr, scope, ctx).scope;
import { plan } from './test-support.js';

const location = { file: 'Dockerfile', startLine: 9, endLine: 9 };
const arg = (...args: { key: string; value?: string }[]): ArgInstruction => ({ kind: 'ARG', location, original: 'ARG', args });

describe('StageScope', () => {
  const loaded = plan('ARG G=global\nFROM scratch', { args: { B: 'from-cli', https_proxy: 'hp' } });
  const first = loaded.plan.stages[0];
  if (first === undefined) throw new Error('setup');
  const start = initialStageScope(loaded.plan, first);
  const lex = new ShellLex();

  it('starts empty: nothing declared, only proxies for RUN', () => {
    expect(start.declared).toEqual([]);
    expect(expansionEnv(['PATH=/bin'], start)).toEqual(['PATH=/bin']);
    expect(runEnvironment(['PATH=/bin'], start)).toEqual({ env: ['PATH=/bin', 'HTTPS_PROXY=hp', 'https_proxy=hp'], keyed: { PATH: '/bin' } });
  });

  it('an ARG resolves build arg > default > global and is immutable', () => {
    const scope = declareArg(start, arg({ key: 'B', value: 'dflt' }, { key: 'G' }, { key: 'D', value: '$B-$G' }, { key: 'N' }), {
      env: ['PATH=/bin'],
      lex,
    });
    expect(scope.declared).toEqual([{ key: 'B', value: 'from-cli' }, { key: 'G', value: 'global' }, { key: 'D', value: 'from-cli-global' }, { key: 'N' }]);
    expect(expansionEnv(['PATH=/bin', 'G=env'], scope)).toEqual(['PATH=/bin', 'G=global', 'B=from-cli', 'D=from-cli-global']);
    expect(start.declared).toEqual([]);
    const shadowed = shadowByEnv(scope, ['G']);
    expect(expansionEnv(['PATH=/bin', 'G=env'], shadowed)).toEqual(['PATH=/bin', 'G=env', 'B=from-cli', 'D=from-cli-global']);
    expect(shadowed.declared).toHaveLength(4);
  });

  it('a re-declared ARG keeps its place in the declaration order', () => {
    const once = declareArg(start, arg({ key: 'A', value: '1' }, { key: 'C', value: '3' }), { env: [], lex });
    const twice = declareArg(once, arg({ key: 'A', value: '2' }), { env: [], lex });
    expect(twice.declared).toEqual([{ key: 'A', value: '2' }, { key: 'C', value: '3' }]);
  });

  it('expansion errors get the ARG location', () => {
    expect(() => declareArg(start, arg({ key: 'X', value: '${Y:?}' }), { env: [], lex })).toThrow(
      expect.objectContaining({ code: 'DOCKERFILE_EXPANSION', location }),
    );
  });

  it.each([
    [{ HTTP_PROXY: 'a' }, { HTTP_PROXY: 'a', http_proxy: 'a' }],
    [{ HTTP_PROXY: 'a', http_proxy: 'b' }, { HTTP_PROXY: 'b', http_proxy: 'b' }],
    [{ No_Proxy: 'x', FTP_PROXY: '' }, { NO_PROXY: 'x', no_proxy: 'x' }],
    [{ OTHER: 'x' }, {}],
  ])('proxy env from %o', (args, want) => {
    expect(Object.fromEntries(proxyEnvFromBuildArgs(new Map(Object.entries(args))))).toEqual(want);
  });
});
