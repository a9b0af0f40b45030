import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { chompHeredocContent, directiveWarnings, dumpDockerfile, parseCheckOptions, parseDockerfile, parseHeredocWord } from './index.js';
import type { ParsedDockerfile } from './index.js';

const parse = (text: string | Uint8Array): ParsedDockerfile => parseDockerfile(text, { file: 'Dockerfile' });
const dump = (text: string | Uint8Array): string => dumpDockerfile(parse(text));
const bytes = (...parts: (string | number[])[]): Uint8Array =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));

function parseError(text: string | Uint8Array): TsbuildError {
  try {
    parse(text);
  } catch (e) {
    expect(e).toBeInstanceOf(TsbuildError);
    return e as TsbuildError;
  }
  throw new Error('expected a parse error');
}

describe('parseDockerfile: line ranges', () => {
  const text = [
    '# comment', // 1
    'FROM a', // 2
    'RUN echo a \\', // 3
    '  b \\', // 4
    '  # inner comment', // 5
    '', // 6
    '  c', // 7
    'COPY <<EOF /x', // 8
    'hello', // 9
    'EOF', // 10
    'RUN <<A <<-B', // 11
    'a', // 12
    'A', // 13
    '\tb', // 14
    '\tB', // 15
    'CMD x', // 16
  ].join('\n');
  const { children } = parse(text);

  it('gives every instruction its first and last physical line', () => {
    expect(children.map((c) => [c.keyword, c.startLine, c.endLine])).toEqual([
      ['from', 2, 2],
      ['run', 3, 7],
      ['copy', 8, 10],
      ['run', 11, 15],
      ['cmd', 16, 16],
    ]);
  });

  it('joins continuation lines without separator and drops comment and blank lines', () => {
    expect(children[1]?.original).toBe('RUN echo a   b   c');
    expect(children[1]?.args).toEqual(['echo a   b   c']);
  });

  it('keeps heredoc bodies with their line endings, in marker order', () => {
    expect(children[2]?.heredocs).toEqual([{ name: 'EOF', content: 'hello\n', expand: true, chomp: false }]);
    expect(children[3]?.heredocs).toEqual([
      { name: 'A', content: 'a\n', expand: true, chomp: false },
      { name: 'B', content: '\tb\n', expand: true, chomp: true },
    ]);
  });

  it('locates an unterminated heredoc from its instruction to the end of the file', () => {
    const err = parseError('FROM a\nRUN <<EOF\none\ntwo\n');
    expect(err.code).toBe('DOCKERFILE_SYNTAX');
    expect(err.message).toBe('unterminated heredoc');
    expect(err.location).toEqual({ file: 'Dockerfile', startLine: 2, endLine: 4 });
  });

  it('locates ENV errors on the logical line', () => {
    const err = parseError('FROM a\nENV a=b \\\n  c\n');
    expect(err.message).toBe('Syntax error - can\'t find = in "c". Must be of the form: name=value');
    expect(err.location).toEqual({ file: 'Dockerfile', startLine: 2, endLine: 3 });
  });
});

describe('parseDockerfile: heredoc markers', () => {
  it.each([
    ['RUN <<EOF', { name: 'EOF', expand: true, chomp: false }],
    ['RUN <<-EOF', { name: 'EOF', expand: true, chomp: true }],
    ["RUN <<'EOF'", { name: 'EOF', expand: false, chomp: false }],
    ['RUN <<"EOF"', { name: 'EOF', expand: false, chomp: false }],
    ["RUN <<E'O'F", { name: 'EOF', expand: false, chomp: false }],
    ['RUN <<  EOF', { name: 'EOF', expand: true, chomp: false }],
    ['RUN 3<<EOF', { name: 'EOF', expand: true, chomp: false, fileDescriptor: 3 }],
    ['RUN cat <<$EOF', { name: '$EOF', expand: true, chomp: false }],
  ])('%s', (line, marker) => {
    const name = marker.name;
    const [node] = parse(`${line}\nbody\n${name}\n`).children;
    expect(node?.heredocs).toEqual([{ ...marker, content: 'body\n' }]);
    expect(node?.endLine).toBe(3);
  });

  it.each(['RUN x<<EOF', 'RUN "<<EOF"', "RUN '<<EOF'", 'RUN ["<<EOF"]', 'USER <<EOF', 'RUN <<- EOF', 'RUN "<<EOF'])(
    '%s declares no heredoc',
    (line) => {
      const parsed = parse(`${line}\nEOF\n`);
      expect(parsed.children[0]?.heredocs).toEqual([]);
      expect(parsed.children).toHaveLength(2);
    },
  );

  it('matches the terminator exactly (trailing blanks count; <<- ignores leading tabs)', () => {
    const [a] = parse('RUN <<EOF\nEOF \n\tEOF\nEOF\n').children;
    expect(a?.heredocs[0]?.content).toBe('EOF \n\tEOF\n');
    const [b] = parse('RUN <<-EOF\n\t\tEOF\n').children;
    expect(b?.heredocs[0]?.content).toBe('');
  });

  it('reads heredocs of an ONBUILD trigger', () => {
    const [node] = parse('ONBUILD RUN <<EOF\nx\nEOF\n').children;
    expect(node?.heredocs).toEqual([{ name: 'EOF', content: 'x\n', expand: true, chomp: false }]);
    expect(dumpDockerfile({ ...parse('ONBUILD RUN <<EOF\nx\nEOF\n') })).toBe('(onbuild (run "<<EOF"))\n');
  });
});

describe('parseDockerfile: directives and escape', () => {
  it('reads syntax, escape and check at the top', () => {
    const parsed = parse('# syntax=docker/dockerfile:1\n#escape = `\n# check=skip=all\nFROM a\nRUN a `\n  b\n');
    expect(parsed.directives).toEqual({ escape: '`', syntax: 'docker/dockerfile:1', check: 'skip=all' });
    expect(parsed.escapeToken).toBe('`');
    expect(parsed.children[1]?.args).toEqual(['a   b']);
  });

  it('records the line of each directive', () => {
    expect(parse('# syntax=docker/dockerfile:1\n#escape = `\n# check=skip=all\nFROM a\n').directiveLines).toEqual({ syntax: 1, escape: 2, check: 3 });
    expect(parse('FROM a\n# escape=`\n').directiveLines).toEqual({});
  });

  it('treats a directive after an instruction as a comment', () => {
    const parsed = parse('FROM a\n# escape=`\nRUN a `\n');
    expect(parsed.directives).toEqual({ escape: '\\' });
    expect(parsed.children[1]?.args).toEqual(['a `']);
  });

  it('treats a directive after a blank line or another comment as a comment', () => {
    expect(parse('\n# escape=`\nFROM a\n').directives.escape).toBe('\\');
    expect(parse('# hello\n# escape=`\nFROM a\n').directives.escape).toBe('\\');
  });

  it.each([
    ['# escape=x\nFROM a\n', "invalid escape token 'x' does not match ` or \\", 1],
    ['# escape=\\\n# escape=`\nFROM a\n', 'only one escape parser directive can be used', 2],
    ['# syntax=a\n# SYNTAX=b\nFROM a\n', 'only one syntax parser directive can be used', 2],
    ['# check=skip=all\n#check=error=true\nFROM a\n', 'only one check parser directive can be used', 2],
  ])('rejects %j', (text, message, line) => {
    const err = parseError(text);
    expect(err.code).toBe('DOCKERFILE_SYNTAX');
    expect(err.message).toBe(message);
    expect(err.location?.startLine).toBe(line);
  });
});

describe('directives a build acts on (check, syntax)', () => {
  it.each([
    ['skip=all', { skipAll: true, skip: [], experimentalAll: false, experimental: [], error: false }],
    [' skip = JSONArgsRecommended, StageNameCasing ; error=true', { skipAll: false, skip: ['JSONArgsRecommended', 'StageNameCasing'], error: true }],
    ['experimental=all;error=False', { experimentalAll: true, error: false }],
    ['', { skipAll: false, error: false }],
  ])('parseCheckOptions(%j)', (value, want) => {
    expect(parseCheckOptions(value)).toMatchObject(want);
  });

  it.each([
    ['bogus', 'invalid check option "bogus"'],
    ['skip=all;nope=1', 'invalid check option "nope"'],
    ['error=maybe', 'failed to parse check option "error=maybe": strconv.ParseBool: parsing "maybe": invalid syntax'],
    ['skip=a;experimental=all;error=true;x', 'failed to parse check option "error=true;x": strconv.ParseBool: parsing "true;x": invalid syntax'],
  ])('parseCheckOptions(%j) fails like linter.ParseLintOptions', (value, problem) => {
    expect(parseCheckOptions(value)).toEqual({ problem });
  });

  it('an invalid check directive is a located error; foreign frontends warn (error=true is honoured by the checks)', () => {
    let err: unknown;
    try {
      directiveWarnings(parse('# syntax=docker/dockerfile:1\n# check=bogus\nFROM a\n'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TsbuildError);
    expect((err as TsbuildError).code).toBe('DOCKERFILE_SYNTAX');
    expect((err as TsbuildError).location).toEqual({ file: 'Dockerfile', startLine: 2, endLine: 2 });
    expect(directiveWarnings(parse('# syntax=docker/dockerfile:1.7-labs\n# check=skip=all\nFROM a\n'))).toEqual([]);
    expect(directiveWarnings(parse('# syntax=docker.io/docker/dockerfile-upstream:master\nFROM a\n'))).toEqual([]);
    expect(directiveWarnings(parse('# syntax=example.com/my/frontend:1\n# check=error=true\nFROM a\n'))).toHaveLength(1);
  });
});

describe('parseDockerfile: bytes and line endings', () => {
  it('handles CRLF like LF, keeping CR in heredoc bodies', () => {
    const parsed = parse('FROM a\r\nRUN x \\\r\n  y\r\nRUN <<EOF\r\nz\r\nEOF\r\n');
    expect(dumpDockerfile(parsed)).toBe('(from "a")\n(run "x   y")\n(run "<<EOF")\n');
    expect(parsed.children[2]?.heredocs[0]?.content).toBe('z\r\n');
  });

  it('drops a UTF-8 BOM before directives', () => {
    const parsed = parse(bytes([0xef, 0xbb, 0xbf], '# escape=`\nFROM a\n'));
    expect(parsed.escapeToken).toBe('`');
  });

  it('keeps bytes that are not UTF-8 and dumps them as \\xNN', () => {
    const parsed = parse(bytes('RUN echo ', [0xff, 0xc3], '\n'));
    expect(parsed.children[0]?.args).toEqual(['echo \udcff\udcc3']);
    expect(dumpDockerfile(parsed)).toBe('(run "echo \\xff\\xc3")\n');
  });

  it('quotes control and non-printable characters like Go', () => {
    expect(dump('RUN a\u0001b\u007f\u00a0\u200b\u2665\n')).toBe('(run "a\\x01b\\x7f\\u00a0\\u200b\u2665")\n');
    expect(dump(bytes('RUN a', [0], 'b\n'))).toBe('(run "a\\x00b")\n');
  });

  it('converts flag bytes above 0x7F as Latin-1, as BuildKit does', () => {
    // extractBuilderFlags appends each byte as a rune.
    expect(dump('COPY --from=\u00e9 a b\n')).toBe('(copy ["--from=\u00c3\u00a9"] "a" "b")\n');
  });

  it('rejects a physical line of more than 65535 bytes, and accepts 65535', () => {
    expect(() => parse(`FROM a\nRUN ${'x'.repeat(65531)}\n`)).not.toThrow();
    const err = parseError(`FROM a\nRUN ${'x'.repeat(65532)}\n`);
    expect(err.message).toBe('dockerfile line greater than max allowed size of 65535');
    expect(err.location?.startLine).toBe(2);
  });

  it('reports an empty file, or one with only comments, as DOCKERFILE_EMPTY', () => {
    for (const text of ['', '\n\n', '# a\n# b\n', '# escape=`\n']) {
      const err = parseError(text);
      expect(err.code).toBe('DOCKERFILE_EMPTY');
      expect(err.location?.startLine).toBeGreaterThanOrEqual(1);
    }
  });

  it('keeps a lone continuation as an empty instruction', () => {
    expect(dump('\\\n')).toBe('("")\n');
  });

  it('survives ONBUILD nested thousands deep', () => {
    const parsed = parse(`${'ONBUILD '.repeat(5000)}RUN x\n`);
    const out = dumpDockerfile(parsed);
    expect(out.startsWith('(onbuild (onbuild (')).toBe(true);
    expect(out.endsWith(` (run "x"${')'.repeat(5001)}\n`)).toBe(true);
  });
});

describe('parseDockerfile: exec form JSON', () => {
  it('decodes escapes like Go, lone surrogates included', () => {
    expect(dump('CMD ["\\u0000", "\\/", "\\ud800", "\\udc80", "\\ud83d\\ude00"]\n')).toBe(
      '(cmd "\\x00" "/" "\ufffd" "\ufffd" "\u{1f600}")\n',
    );
  });

  it.each([
    ['CMD [1e999]', '(cmd "[1e999]")'], // Go cannot decode it into float64: not JSON
    ['CMD ["a"] x', '(cmd "[\\"a\\"] x")'],
    ["CMD ['a']", '(cmd "[\'a\']")'],
    ['RUN [ "a" ,"b"]', '(run "a" "b")'],
    ['COPY ["a b", "c"]', '(copy "a b" "c")'],
    ['COPY [ "a b" c', '(copy "[" "\\"a" "b\\"" "c")'],
  ])('%s', (line, expected) => {
    expect(dump(`${line}\n`)).toBe(`${expected}\n`);
  });

  it.each(['CMD ["a", 1]', 'COPY ["a", true]', 'VOLUME [null]', 'HEALTHCHECK CMD [{}]', 'ONBUILD RUN [["x"]]'])(
    'rejects %s',
    (line) => {
      expect(() => parse(`${line}\n`)).toThrow('when using JSON array syntax, arrays must be comprised of strings only');
    },
  );
});

describe('parseDockerfile: BuildKit TestParseExtractsHeredoc', () => {
  // The Dockerfile of derived-cases/heredoc-extracts with the Heredoc values BuildKit's
  // parser_heredoc_test.go expects for each instruction after FROM.
  const file = readFileSync(
    path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../testdata/conformance/parser/derived-cases/heredoc-extracts/Dockerfile'),
  );
  const h = (name: string, content: string, extra: { expand?: boolean; chomp?: boolean; fileDescriptor?: number } = {}) => ({
    name,
    content,
    expand: extra.expand ?? true,
    chomp: extra.chomp ?? false,
    ...(extra.fileDescriptor === undefined ? {} : { fileDescriptor: extra.fileDescriptor }),
  });
  const expected = [
    [], // ENV
    [], // RUN ls
    [], // USER <<INVALID
    [], // INVALID
    [h('EMPTY', '')],
    [h('EMPTY2', '', { fileDescriptor: 3 })],
    [], // RUN "<<NOHEREDOC"
    [h('INDENT', '\tfoo\n\tbar\n')],
    [h('UNINDENT', '\tbaz\n\tquux\n', { chomp: true })],
    [h('UNINDENT2', '\tbaz\n\tquux\n', { chomp: true })],
    [h('EXPAND', '\texpand $NAME\n', { chomp: true })],
    [h('NOEXPAND', "\tdon't expand $NAME\n", { chomp: true, expand: false })],
    [h('COPY', 'echo hello world\necho foo bar\n')],
    [h('COMMENT', '# internal comment\necho hello world\necho foo bar # trailing comment\n')],
    [h('MOUNT', 'echo hello\n')],
    [h('FILE1', 'content 1\n'), h('FILE2', 'content 2\n')],
    [h('EOF', '"foo"\n\'bar\'\n')],
    [h('X', 'Y\n'), h('Y', 'X\n')],
    [h('COMPLEX', "print('hello world')\n")],
    [h('file.txt', 'hello world\n')],
    [h('eof', 'echo foo\n', { expand: false })],
    [h("eo'f", 'echo foo\n')],
    [h("eo'f", 'echo foo\n', { expand: false })],
    [h('one two', 'echo bar\n', { expand: false })],
    [h('$EOF', '')],
    [h('EOF', '')],
    [h('EOF', '')],
  ];

  it('extracts the same heredocs', () => {
    const children = parse(file).children.slice(1);
    expect(children.map((c) => c.heredocs)).toEqual(expected);
  });

  it('chomps leading tabs of every line', () => {
    expect(chompHeredocContent('\thello\n\t\tworld\n')).toBe('hello\nworld\n');
  });

  it.each(['<<EOF', "<<'EOF'", '<<"EOF"', '<<-EOF', "<<-'EOF'", '<<-"EOF"', '<<EO"F"', '<< EOF', '<<- EOF'])(
    'parseHeredocWord(%j) names EOF',
    (word) => {
      expect(parseHeredocWord(word)?.name).toBe('EOF');
    },
  );

  it.each(['', 'EOF', '<<', '<<-', '<EOF', '<<<EOF', '<<EOF sh', "<<'EOF"])('parseHeredocWord(%j) is no heredoc', (word) => {
    expect(parseHeredocWord(word)).toBeUndefined();
  });
});

describe('parseDockerfile: BuildKit parser_test.go', () => {
  const derived = (name: string): Buffer =>
    readFileSync(
      path.resolve(path.dirname(fileURLToPath(import.meta.url)), `../../testdata/conformance/parser/derived-cases/${name}/Dockerfile`),
    );

  it('TestParseIncludesLineNumbers', () => {
    expect(parse(derived('testfile-line')).children.map((c) => [c.startLine, c.endLine])).toEqual([
      [5, 5],
      [11, 12],
      [17, 31],
    ]);
  });

  it('TestParseWarnsOnEmptyContinutationLine (logical lines)', () => {
    const originals = parse(derived('empty-continuation-lines')).children.map((c) => c.original);
    expect(originals).toContain('RUN something     following     more');
    expect(originals).toContain('RUN another     thing');
  });

  it('TestParseWords (through ARG)', () => {
    const words = (text: string) => parse(`ARG ${text}\n`).children[0]?.args;
    expect(words('foo bar')).toEqual(['foo', 'bar']);
    expect(words('foo\\ bar')).toEqual(['foo\\ bar']);
    expect(words("foo bar 'abc xyz'")).toEqual(['foo', 'bar', "'abc xyz'"]);
    expect(words('foo bar "abc xyz"')).toEqual(['foo', 'bar', '"abc xyz"']);
    expect(words('föo bàr "âbc xÿz"')).toEqual(['föo', 'bàr', '"âbc xÿz"']);
  });
});
