import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { envFromList, ShellLex } from './shell-lex.js';

/** BuildKit's shell tables (lex_test.go, envVarTest, wordsTest); see the file's "notes". */
interface ShellCase {
  id: string;
  source: string;
  function: 'ProcessWord' | 'ProcessWords' | 'ProcessWordWithMatches';
  escape: '\\' | '`';
  platform: 'A' | 'U' | 'W';
  input: string;
  env: string[];
  error: boolean;
  error_contains?: string;
  expected?: string;
  expected_words?: string[];
  matches?: string[];
  unmatched?: string[];
}

const tablePath = fileURLToPath(new URL('../../testdata/conformance/shell/cases.json', import.meta.url));
const table = JSON.parse(readFileSync(tablePath, 'utf8')) as { cases: ShellCase[] };
// Windows-only rows exist because Windows env names are case-insensitive; we are not Windows.
const runnable = table.cases.filter((c) => c.platform !== 'W');
const windowsOnly = table.cases.filter((c) => c.platform === 'W');

function expectExpansionError(fn: () => unknown, contains?: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(TsbuildError);
  const err = caught as TsbuildError;
  expect(err.code).toBe('DOCKERFILE_EXPANSION');
  expect(err.location).toBeUndefined();
  if (contains !== undefined) expect(err.message).toContain(contains);
}

describe('BuildKit shell conformance table', () => {
  it('has the expected shape (310 cases, 2 Windows-only skipped)', () => {
    expect(table.cases).toHaveLength(310);
    expect(windowsOnly).toHaveLength(2);
    expect(runnable).toHaveLength(308);
  });

  it.each(runnable.map((c) => [c.id, c] as const))('%s', (_id, c) => {
    const lex = new ShellLex(c.escape);
    if (c.error) {
      const call =
        c.function === 'ProcessWords'
          ? () => lex.processWords(c.input, c.env)
          : () => lex.processWordWithMatches(c.input, c.env);
      expectExpansionError(call, c.error_contains);
      return;
    }
    switch (c.function) {
      case 'ProcessWord':
        expect(lex.processWord(c.input, c.env)).toBe(c.expected);
        // The getter form must agree with the list form (upstream also runs ProcessWordWithMap).
        expect(lex.processWord(c.input, envFromList(c.env))).toBe(c.expected);
        break;
      case 'ProcessWords':
        expect(lex.processWords(c.input, c.env)).toEqual(c.expected_words);
        break;
      case 'ProcessWordWithMatches': {
        const r = lex.processWordWithMatches(c.input, c.env);
        expect(r.result).toBe(c.expected);
        if (c.matches !== undefined) expect([...r.matched].sort()).toEqual([...c.matches].sort());
        if (c.unmatched !== undefined) expect([...r.unmatched].sort()).toEqual([...c.unmatched].sort());
        break;
      }
    }
  });
});

describe('backtick escape token', () => {
  const env = ['PWD=/home', 'EMPTY=', 'FOO=a*b*c'];
  const lex = new ShellLex('`');
  const cases: ReadonlyArray<readonly [string, string]> = [
    ['he`$PWD', 'he$PWD'],
    ['c:\\windows\\$PWD', 'c:\\windows\\/home'],
    ['a` b', 'a b'],
    ['``', '`'],
    ['"a`"b"', 'a"b'],
    ['"a`$PWD"', 'a$PWD'],
    ['"a``b"', 'a`b'],
    ['"a`xb"', 'a`xb'],
    ['"a\\b"', 'a\\b'],
    ["'a`b'", 'a`b'],
    ['abc`', 'abc'],
    ['${EMPTY:-`}}', '}'],
    // Patterns keep their backslash escapes whatever the escape token is.
    ['${FOO#*\\*}', 'b*c'],
    ['${FOO%%\\**}', 'a'],
  ];
  it.each(cases)('%s', (input, expected) => {
    expect(lex.processWord(input, env)).toBe(expected);
  });

  it('splits words on unescaped spaces only', () => {
    expect(lex.processWords('a` b c\\ d', env)).toEqual(['a b', 'c\\', 'd']);
  });

  it('reports an unterminated quote', () => {
    expectExpansionError(() => lex.processWord('"abc`"', env), 'double-quote');
  });
});

describe('options', () => {
  it('skipUnsetEnv keeps unset references as written', () => {
    const lex = new ShellLex('\\', { skipUnsetEnv: true });
    expect(lex.processWord('$A/${B}/${C:-x}/${D/a/b}/$E', ['E=e'])).toBe('$A/${B}/${C:-x}/${D/a/b}/e');
  });

  it('rawQuotes keeps quotes, rawEscapes keeps escapes', () => {
    const lex = new ShellLex('\\', { rawQuotes: true, rawEscapes: true });
    expect(lex.processWord(`'a'"b\\"c"\\ d$X`, ['X=x'])).toBe(`'a'"b\\"c"\\ dx`);
  });

  it('finds heredoc markers the way the parser does (rawQuotes+rawEscapes+skipUnsetEnv)', () => {
    const lex = new ShellLex('\\', { rawQuotes: true, rawEscapes: true, skipUnsetEnv: true });
    expect(lex.processWords(`cat <<"EOF" <<-'X' $Y`, [])).toEqual(['cat', '<<"EOF"', "<<-'X'", '$Y']);
  });

  it('skipProcessQuotes treats quotes as text (heredoc bodies)', () => {
    const lex = new ShellLex('\\', { skipProcessQuotes: true });
    expect(lex.processWord(`echo "$A" '$A'`, ['A=1'])).toBe(`echo "1" '1'`);
  });

  it('withOptions copies the escape token', () => {
    const lex = new ShellLex('`').withOptions({ skipUnsetEnv: true });
    expect(lex.escapeToken).toBe('`');
    expect(lex.processWord('$NOPE', [])).toBe('$NOPE');
  });
});

describe('BuildKit details kept on purpose', () => {
  const lex = new ShellLex();

  it('later duplicates win, a bare NAME is set-but-empty, getter undefined is unset', () => {
    expect(lex.processWord('${A}-${B-unset}', ['A=1', 'A=2', 'B'])).toBe('2-');
    expect(lex.processWord('${A-u}', () => undefined)).toBe('u');
  });

  it('${X//p/r} uses Go ReplaceAll semantics ($0 is the match, empty matches after a match skipped)', () => {
    expect(lex.processWord('${A//b/$R}', ['A=abcb', 'R=<$0|$$|$1|${0}|$-|${0>'])).toBe(
      'a<b|$||b|$-|${0>c<b|$||b|$-|${0>',
    );
    // The single replacement is literal.
    expect(lex.processWord('${A/b/$R}', ['A=abcb', 'R=<$0>'])).toBe('a<$0>cb');
    expect(lex.processWord('${A///-}', ['A=abc'])).toBe('-a-b-c-');
    // JS "abc".replace(/.*/g, '-') gives "--"; Go skips the empty match at the end.
    expect(lex.processWord('${A//*/-}', ['A=abc'])).toBe('-');
  });

  it('brackets in patterns are literal (no bracket expressions upstream)', () => {
    expect(lex.processWord('${A#[ab]}', ['A=[ab]c'])).toBe('c');
    expect(lex.processWord('${A#[ab]}', ['A=ac'])).toBe('ac');
  });

  it('an invalid escape in a pattern is an error', () => {
    expectExpansionError(() => lex.processWord('${A#\\x}', ['A=a']), 'invalid escape');
  });

  it('processWords drops text before a nested ${X:-...} in the same word (upstream shared buffer)', () => {
    // BuildKit shares one word buffer across nested processStopOn calls; see Words in shell-lex.ts.
    expect(lex.processWords('a b${U:-c}d', [])).toEqual(['a', 'cd']);
    expect(lex.processWord('a b${U:-c}d', [])).toBe('a bcd');
  });

  it('error messages name the word like BuildKit', () => {
    expectExpansionError(() => lex.processWord('${X:?is needed}', []), 'failed to process "${X:?is needed}": X: is needed');
    expectExpansionError(() => lex.processWord('${X?}', []), 'X: is not allowed to be unset');
    expectExpansionError(() => lex.processWord('${X:?}', ['X=']), 'X: is not allowed to be empty');
    expectExpansionError(() => lex.processWord('${X:-a', []), "missing '}'");
    // Go prints string(rune(EOF)) as U+FFFD here.
    expectExpansionError(() => lex.processWord('${X', []), 'unsupported modifier (\ufffd) in substitution');
    expectExpansionError(() => lex.processWord('${}', []), 'bad substitution');
  });
});
