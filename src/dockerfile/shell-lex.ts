/**
 * Shell-style word expansion for Dockerfile instructions, ported from BuildKit's
 * frontend/dockerfile/shell/lex.go (moby/buildkit @ 73ed6825c4b7569379ef89df0aedcdbe64473d31,
 * https://github.com/moby/buildkit/blob/master/frontend/dockerfile/shell/lex.go).
 *
 * Contract: the observable behaviour (results, word splitting, matched/unmatched names, which
 * inputs are errors) is BuildKit's, including its quirks; the conformance table in
 * testdata/conformance/shell/cases.json pins it. Where BuildKit's behaviour looks odd the code
 * says so and keeps it, because Dockerfiles that build under `docker build` must expand the
 * same way here.
 *
 * Pure: no file system, no process environment. Errors are TsbuildError('DOCKERFILE_EXPANSION')
 * without a location; the caller knows the instruction and adds it.
 */
import { TsbuildError } from '../errors.js';

/** Looks a variable up; `undefined` means unset (distinct from set-but-empty ""). */
export type EnvGetter = (name: string) => string | undefined;

/** An env as BuildKit's callers pass it: a getter, or a `NAME=VALUE` list where a later NAME wins. */
export type ShellEnv = EnvGetter | readonly string[];

export interface ExpandResult {
  result: string;
  /** Names referenced by the word that were set (possibly empty). */
  matched: Set<string>;
  /** Names referenced by the word that were unset (BuildKit lints these as UndefinedVar). */
  unmatched: Set<string>;
}

/**
 * The switches of BuildKit's `Lex` struct. Who uses which, upstream:
 * - plain (no options): every ordinary instruction word (`SupportsSingleWordExpansion`).
 * - `skipProcessQuotes`: heredoc bodies of COPY/ADD (`SupportsSingleWordExpansionRaw`), which
 *   BuildKit always expands with a fresh `NewLex('\\')` whatever the escape directive says.
 * - `rawQuotes` + `rawEscapes`: expanding heredoc file contents (instructions/parse.go).
 * - `rawQuotes` + `rawEscapes` + `skipUnsetEnv` with `processWords`: finding heredoc markers on
 *   an instruction line (parser.go heredocsFromLine, with an empty env).
 * - `rawQuotes` + `skipUnsetEnv`: the RUN step name shown in progress (dockerfile2llb dispatchRun).
 */
export interface ShellLexOptions {
  /** Keep quote characters in the output (their content is still processed). */
  readonly rawQuotes?: boolean;
  /** Keep escape characters in the output. */
  readonly rawEscapes?: boolean;
  /** Treat `'` and `"` as ordinary characters. */
  readonly skipProcessQuotes?: boolean;
  /** Leave references to unset variables as written (`$X`, `${X}`, `${X:-w}` ...). */
  readonly skipUnsetEnv?: boolean;
}

/** Go's text/scanner returns EOF (-1) past the end; we use `undefined`. */
type Ch = string | undefined;

/** unicode.IsSpace: Latin-1 spaces plus category Z (JS `\s` differs: it has U+FEFF, lacks U+0085). */
const GO_SPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/u;
const GO_LETTER = /^\p{L}$/u;
const GO_DIGIT = /^\p{Nd}$/u;
/** What Go prints for string(rune(-1)) when an error message names a missing modifier. */
const REPLACEMENT_CHAR = '\ufffd';

const isSpace = (ch: string): boolean => GO_SPACE.test(ch);
const isLetter = (ch: string): boolean => GO_LETTER.test(ch);
const isDigit = (ch: string): boolean => GO_DIGIT.test(ch);

/**
 * Special parameters of POSIX sh 2.5.2, read as one-character names.
 * https://pubs.opengroup.org/onlinepubs/009695399/utilities/xcu_chap02.html#tag_02_05_02
 */
const isSpecialParam = (ch: string): boolean => '@*#?-$!0'.includes(ch);

/** Internal failure carrying BuildKit's inner message; wrapped once at the top like Go's errors.Wrapf. */
class LexError extends Error {}

/**
 * Bounds on one word's expansion (not in BuildKit, where Go grows until the machine runs out):
 * a chain of `ENV A2=${A1}${A1}` doubles per line and killed the process with an out-of-memory
 * abort, and `${a:-${b:-...}}` nested thousands deep overflowed the stack (scripts/torture).
 */
const MAX_EXPANSION_CHARS = 16 * 1024 * 1024;
const MAX_SUBSTITUTION_DEPTH = 256;

function checkLength(result: string): void {
  if (result.length > MAX_EXPANSION_CHARS) {
    throw new LexError(`expansion result is longer than ${MAX_EXPANSION_CHARS} characters`);
  }
}

/** Builds a getter from a `NAME=VALUE` list (BuildKit EnvsFromSlice: no `=` means empty value). */
export function envFromList(list: readonly string[]): EnvGetter {
  const map = new Map<string, string>();
  for (const entry of list) {
    const eq = entry.indexOf('=');
    if (eq < 0) map.set(entry, '');
    else map.set(entry.slice(0, eq), entry.slice(eq + 1));
  }
  return (name) => map.get(name);
}

function toGetter(env: ShellEnv): EnvGetter {
  return typeof env === 'function' ? env : envFromList(env);
}

/** Go-style %q, close enough for messages (JSON escapes are a superset for printable text). */
const quote = (s: string): string => JSON.stringify(s);

/** A code-point scanner with Go text/scanner's Peek/Next, including its skip of a leading BOM. */
class RuneScanner {
  private readonly runes: string[];
  private pos = 0;

  constructor(text: string) {
    this.runes = Array.from(text);
    // text/scanner's first Peek drops a byte-order mark at the very start.
    if (this.runes[0] === '\ufeff') this.pos = 1;
  }

  peek(): Ch {
    return this.runes[this.pos];
  }

  next(): Ch {
    const ch = this.runes[this.pos];
    if (ch !== undefined) this.pos++;
    return ch;
  }
}

/**
 * Accumulates the split words. BuildKit keeps the word being built in one buffer shared by the
 * whole shellWord (lex.go `wordsBuffer`), and every nested processStopOn resets it, so text
 * gathered before a `${X:-...}`/`${X#...}`/`${X/...}` in the same word is dropped from the
 * *split* words (never from the single-word result). We keep that, for parity with
 * `docker build` (it only shows in processWords, which BuildKit uses for EXPOSE).
 */
class SharedBuffer {
  text = '';
}

class Words {
  private readonly words: string[] = [];
  private inWord = false;

  constructor(private readonly buf: SharedBuffer) {}

  addChar(ch: string): void {
    if (isSpace(ch) && this.inWord) {
      if (this.buf.text.length !== 0) {
        this.words.push(this.buf.text);
        this.buf.text = '';
        this.inWord = false;
      }
    } else if (!isSpace(ch)) {
      this.addRawChar(ch);
    }
  }

  addRawChar(ch: string): void {
    this.buf.text += ch;
    this.inWord = true;
  }

  addString(s: string): void {
    for (const ch of s) this.addChar(ch);
  }

  addRawString(s: string): void {
    this.buf.text += s;
    this.inWord = true;
  }

  getWords(): string[] {
    if (this.buf.text.length > 0) {
      this.words.push(this.buf.text);
      this.buf.text = '';
      this.inWord = false;
    }
    return this.words;
  }
}

/** One expansion run over one word (BuildKit's shellWord). */
class ShellWord {
  private readonly scanner: RuneScanner;
  private readonly wordsBuffer = new SharedBuffer();
  private rawEscapes: boolean;
  private depth = 0;
  readonly matched = new Set<string>();
  readonly unmatched = new Set<string>();

  constructor(
    word: string,
    private readonly env: EnvGetter,
    private readonly escapeToken: string,
    private readonly opts: ShellLexOptions,
  ) {
    this.scanner = new RuneScanner(word);
    this.rawEscapes = opts.rawEscapes === true;
  }

  process(): { result: string; words: string[] } {
    return this.processStopOn(undefined, this.rawEscapes);
  }

  /** Processes up to `stopChar` (consumed) or the end of input when stopChar is undefined. */
  private processStopOn(stopChar: Ch, rawEscapes: boolean): { result: string; words: string[] } {
    let result = '';
    this.wordsBuffer.text = '';
    const words = new Words(this.wordsBuffer);
    const saved = this.rawEscapes;
    this.rawEscapes = rawEscapes;
    if (++this.depth > MAX_SUBSTITUTION_DEPTH) {
      this.depth--;
      throw new LexError(`substitutions nested more than ${MAX_SUBSTITUTION_DEPTH} deep`);
    }
    try {
      for (let ch = this.scanner.peek(); ch !== undefined; ch = this.scanner.peek()) {
        if (stopChar !== undefined && ch === stopChar) {
          this.scanner.next();
          return { result, words: words.getWords() };
        }
        const special = this.specialFor(ch);
        if (special !== undefined) {
          const tmp = special();
          result += tmp;
          checkLength(result);
          // Expanded values are split on spaces; quoted text is one piece.
          if (ch === '$') words.addString(tmp);
          else words.addRawString(tmp);
          continue;
        }
        let c = this.scanner.next() as string;
        if (c === this.escapeToken) {
          if (this.rawEscapes) {
            words.addRawChar(c);
            result += c;
          }
          // The escape token escapes the next character; at the very end it vanishes.
          const escaped = this.scanner.next();
          if (escaped === undefined) break;
          c = escaped;
          words.addRawChar(c);
        } else {
          words.addChar(c);
        }
        result += c;
      }
      if (stopChar !== undefined) {
        throw new LexError(`unexpected end of statement while looking for matching ${stopChar}`);
      }
      return { result, words: words.getWords() };
    } finally {
      this.rawEscapes = saved;
      this.depth--;
    }
  }

  private specialFor(ch: string): (() => string) | undefined {
    if (ch === '$') return () => this.processDollar();
    if (this.opts.skipProcessQuotes === true) return undefined;
    if (ch === "'") return () => this.processSingleQuote();
    if (ch === '"') return () => this.processDoubleQuote();
    return undefined;
  }

  /** Everything up to the next `'` is literal; a single quote cannot be escaped inside. */
  private processSingleQuote(): string {
    const raw = this.opts.rawQuotes === true;
    let result = '';
    const open = this.scanner.next() as string;
    if (raw) result += open;
    for (;;) {
      const ch = this.scanner.next();
      if (ch === undefined) {
        throw new LexError('unexpected end of statement while looking for matching single-quote');
      }
      if (ch === "'") {
        if (raw) result += ch;
        return result;
      }
      result += ch;
    }
  }

  /**
   * Literal up to the next `"` except `$` expansions; the escape token escapes only `"`, `$`
   * and itself (sh's double-quote rules, minus the backquote).
   */
  private processDoubleQuote(): string {
    const raw = this.opts.rawQuotes === true;
    let result = '';
    const open = this.scanner.next() as string;
    if (raw) result += open;
    for (;;) {
      const peek = this.scanner.peek();
      if (peek === undefined) {
        throw new LexError('unexpected end of statement while looking for matching double-quote');
      }
      if (peek === '"') {
        this.scanner.next();
        if (raw) result += peek;
        return result;
      }
      if (peek === '$') {
        result += this.processDollar();
        checkLength(result);
        continue;
      }
      let ch = this.scanner.next() as string;
      if (ch === this.escapeToken) {
        if (this.rawEscapes) result += ch;
        const after = this.scanner.peek();
        // An escape at the very end is dropped; the missing quote is reported next round.
        if (after === undefined) continue;
        if (after === '"' || after === '$' || after === this.escapeToken) {
          ch = this.scanner.next() as string;
        }
      }
      result += ch;
    }
  }

  private processDollar(): string {
    this.scanner.next();

    // $xxx
    if (this.scanner.peek() !== '{') {
      const name = this.processName();
      if (name === '') return '$';
      const value = this.getEnv(name);
      if (value === undefined && this.opts.skipUnsetEnv === true) return '$' + name;
      return value ?? '';
    }

    this.scanner.next();
    const first = this.scanner.peek();
    if (first === undefined) throw new LexError("syntax error: missing '}'");
    // ${{xx}, ${:xx}, ${:}, ${}
    if (first === '{' || first === '}' || first === ':') {
      throw new LexError('syntax error: bad substitution');
    }
    const name = this.processName();
    let ch = this.scanner.next();
    let chs = ch ?? REPLACEMENT_CHAR;

    if (ch === '}') {
      const value = this.getEnv(name);
      if (value === undefined && this.opts.skipUnsetEnv === true) return `\${${name}}`;
      return value ?? '';
    }

    if (ch === ':' || ch === '+' || ch === '-' || ch === '?' || ch === '#' || ch === '%') {
      let nullIsUnset = false;
      if (ch === ':') {
        nullIsUnset = true;
        ch = this.scanner.next();
        chs += ch ?? REPLACEMENT_CHAR;
        // Go falls through into the modifier body whatever follows the colon; an unknown one
        // is reported only after the word is read (and, with skipUnsetEnv, not at all).
      }
      const rawEscapes = ch === '#' || ch === '%';
      if (nullIsUnset && rawEscapes) {
        throw new LexError(`unsupported modifier (${chs}) in substitution`);
      }
      let word: string;
      try {
        word = this.processStopOn('}', rawEscapes).result;
      } catch (e) {
        if (e instanceof LexError && this.scanner.peek() === undefined) {
          throw new LexError("syntax error: missing '}'");
        }
        throw e;
      }

      const value = this.getEnv(name);
      if (value === undefined && this.opts.skipUnsetEnv === true) {
        return `\${${name}${chs}${word}}`;
      }
      const isNull = value === undefined || (nullIsUnset && value === '');

      switch (ch) {
        case '-':
          return isNull ? word : (value ?? '');
        case '+':
          return isNull ? '' : word;
        case '?':
          if (value === undefined) {
            throw new LexError(`${name}: ${word !== '' ? word : 'is not allowed to be unset'}`);
          }
          if (nullIsUnset && value === '') {
            throw new LexError(`${name}: ${word !== '' ? word : 'is not allowed to be empty'}`);
          }
          return value;
        case '%':
        case '#': {
          // %/# remove the shortest match, %%/## the longest.
          let greedy = false;
          if (word.startsWith(ch)) {
            greedy = true;
            word = word.slice(1);
          }
          const v = value ?? '';
          return ch === '%' ? trimSuffix(word, v, greedy) : trimPrefix(word, v, greedy);
        }
        default:
          throw new LexError(`unsupported modifier (${chs}) in substitution`);
      }
    }

    if (ch === '/') {
      const replaceAll = this.scanner.peek() === '/';
      if (replaceAll) this.scanner.next();

      let pattern: string;
      try {
        pattern = this.processStopOn('/', true).result;
      } catch (e) {
        if (e instanceof LexError && this.scanner.peek() === undefined) {
          throw new LexError("syntax error: missing '/' in ${}");
        }
        throw e;
      }
      let replacement: string;
      try {
        replacement = this.processStopOn('}', true).result;
      } catch (e) {
        if (e instanceof LexError && this.scanner.peek() === undefined) {
          throw new LexError("syntax error: missing '}'");
        }
        throw e;
      }

      const value = this.getEnv(name);
      if (value === undefined && this.opts.skipUnsetEnv === true) {
        return `\${${name}/${pattern}/${replacement}}`;
      }
      const re = compilePattern(pattern, true, false);
      const v = value ?? '';
      if (replaceAll) return goReplaceAll(re, v, replacement);
      const m = execAt(re, v, 0);
      return m === undefined ? v : v.slice(0, m.start) + replacement + v.slice(m.end);
    }

    throw new LexError(`unsupported modifier (${chs}) in substitution`);
  }

  /**
   * A name is letters, digits and `_`; one that starts with a digit is all digits (`$1x` is
   * `$1` then `x`); a special parameter (`$@`, `$#`, ...) is one character. Positional and
   * special parameters are simply looked up like any name, so they are normally unset.
   */
  private processName(): string {
    let name = '';
    for (let ch = this.scanner.peek(); ch !== undefined; ch = this.scanner.peek()) {
      if (name === '' && isDigit(ch)) {
        for (let d = this.scanner.peek(); d !== undefined && isDigit(d); d = this.scanner.peek()) {
          name += this.scanner.next() as string;
        }
        return name;
      }
      if (name === '' && isSpecialParam(ch)) {
        return this.scanner.next() as string;
      }
      if (!isLetter(ch) && !isDigit(ch) && ch !== '_') break;
      name += this.scanner.next() as string;
    }
    return name;
  }

  private getEnv(name: string): string | undefined {
    const value = this.env(name);
    if (value !== undefined) this.matched.add(name);
    else this.unmatched.add(name);
    return value;
  }
}

/** A compiled pattern: a JS regex that mirrors the Go regexp BuildKit builds. */
type Pattern = RegExp;

/**
 * convertShellPatternToRegex: `*` is any string (greedy or shortest), `?` one character, and a
 * backslash escapes only `*`, `?` and `\` (before `}` or `/` it is dropped: it was there to
 * keep ${} syntax apart). Everything else is literal, including `[` and `]`: BuildKit does
 * not implement bracket expressions. The backslash here is fixed, whatever the escape token.
 * https://pubs.opengroup.org/onlinepubs/9699919799/utilities/V3_chap02.html#tag_18_13
 */
function compilePattern(pattern: string, greedy: boolean, anchored: boolean): Pattern {
  const s = new RuneScanner(pattern);
  let out = anchored ? '^' : '';
  // Go's `.` is any character but newline; JS's also excludes \r, U+2028 and U+2029.
  const any = '[^\\n]';
  const star = greedy ? `${any}*` : `${any}*?`;
  for (let tok = s.next(); tok !== undefined; tok = s.next()) {
    switch (tok) {
      case '*':
        out += star;
        continue;
      case '?':
        out += any;
        continue;
      case '\\': {
        const peek = s.peek();
        if (peek === '}' || peek === '/') continue;
        const escaped = s.next();
        if (escaped !== '*' && escaped !== '?' && escaped !== '\\') {
          throw new LexError(
            `invalid pattern (${pattern}) in substitution: invalid escape '\\${escaped ?? REPLACEMENT_CHAR}'`,
          );
        }
        out += '\\' + escaped;
        continue;
      }
      case '[':
      case ']':
      case '{':
      case '}':
      case '.':
      case '+':
      case '(':
      case ')':
      case '|':
      case '^':
      case '$':
        out += '\\' + tok;
        continue;
      default:
        out += tok;
    }
  }
  // `u`: match by code point as Go matches by rune; `g`: so lastIndex drives exec.
  return new RegExp(out, 'gu');
}

function execAt(re: Pattern, s: string, from: number): { start: number; end: number } | undefined {
  re.lastIndex = from;
  const m = re.exec(s);
  if (m === null) return undefined;
  return { start: m.index, end: m.index + m[0].length };
}

function trimPrefix(pattern: string, value: string, greedy: boolean): string {
  const m = execAt(compilePattern(pattern, greedy, true), value, 0);
  return m === undefined ? value : value.slice(m.end);
}

/** Reverses a pattern by code point but keeps `\x` pairs in order (a\*c -> c\*a). */
function reversePattern(pattern: string): string {
  const runes = Array.from(pattern);
  const out = new Array<string>(runes.length);
  const last = runes.length - 1;
  for (let i = 0; i <= last; ) {
    const tok = runes[i] as string;
    const outIdx = last - i;
    if (tok === '\\' && i !== last) {
      out[outIdx - 1] = tok;
      out[outIdx] = runes[i + 1] as string;
      i += 2;
    } else {
      out[outIdx] = tok;
      i++;
    }
  }
  return out.join('');
}

const reverseString = (s: string): string => Array.from(s).reverse().join('');

/**
 * A regex finds the leftmost match but not the shortest rightmost one, so BuildKit reverses
 * both the pattern and the value and trims a prefix instead.
 */
function trimSuffix(pattern: string, value: string, greedy: boolean): string {
  return reverseString(trimPrefix(reversePattern(pattern), reverseString(value), greedy));
}

/** Width in UTF-16 units of the code point at `i` (Go advances by one rune). */
function runeWidth(s: string, i: number): number {
  const cp = s.codePointAt(i);
  return cp !== undefined && cp > 0xffff ? 2 : 1;
}

/**
 * Go's Regexp.ReplaceAllString: non-overlapping matches left to right, an empty match right
 * after a previous match is skipped (JS's String.replace does not skip it), and the
 * replacement is a Go template where `$0`/`${0}` is the match, `$$` a dollar, and any other
 * `$name` is empty (the pattern has no capture groups).
 */
function goReplaceAll(re: Pattern, src: string, template: string): string {
  let out = '';
  let lastMatchEnd = 0;
  let searchPos = 0;
  while (searchPos <= src.length) {
    const m = execAt(re, src, searchPos);
    if (m === undefined) break;
    out += src.slice(lastMatchEnd, m.start);
    if (m.end > lastMatchEnd || m.start === 0) {
      out += expandGoTemplate(template, src.slice(m.start, m.end));
    }
    lastMatchEnd = m.end;
    const width = searchPos < src.length ? runeWidth(src, searchPos) : 0;
    if (searchPos + width > m.end) searchPos += width;
    else if (searchPos + 1 > m.end) searchPos++;
    else searchPos = m.end;
  }
  return out + src.slice(lastMatchEnd);
}

/** regexp.Expand for a regex whose only group is 0. https://pkg.go.dev/regexp#Regexp.Expand */
function expandGoTemplate(template: string, match: string): string {
  let out = '';
  let rest = template;
  for (;;) {
    const dollar = rest.indexOf('$');
    if (dollar < 0) break;
    out += rest.slice(0, dollar);
    rest = rest.slice(dollar + 1);
    if (rest.startsWith('$')) {
      out += '$';
      rest = rest.slice(1);
      continue;
    }
    const ref = extractTemplateName(rest);
    if (ref === undefined) {
      // Malformed reference: the `$` stays as text.
      out += '$';
      continue;
    }
    rest = ref.rest;
    if (ref.name === '0') out += match;
  }
  return out + rest;
}

function extractTemplateName(str: string): { name: string; rest: string } | undefined {
  let s = str;
  const brace = s.startsWith('{');
  if (brace) s = s.slice(1);
  let name = '';
  for (const ch of s) {
    if (!isLetter(ch) && !isDigit(ch) && ch !== '_') break;
    name += ch;
  }
  if (name === '') return undefined;
  let rest = s.slice(name.length);
  if (brace) {
    if (!rest.startsWith('}')) return undefined;
    rest = rest.slice(1);
  }
  return { name, rest };
}

/**
 * BuildKit's `Lex`: expands one Dockerfile word against an environment.
 * Not stateful between calls; safe to share.
 */
export class ShellLex {
  readonly escapeToken: '\\' | '`';
  readonly options: Readonly<ShellLexOptions>;

  constructor(escapeToken: '\\' | '`' = '\\', options: ShellLexOptions = {}) {
    this.escapeToken = escapeToken;
    this.options = { ...options };
  }

  /** A copy with some switches changed (BuildKit copies its Lex and flips fields the same way). */
  withOptions(options: ShellLexOptions): ShellLex {
    return new ShellLex(this.escapeToken, { ...this.options, ...options });
  }

  /** Expands `word` to one string; spaces inside are kept (BuildKit ProcessWord). */
  processWord(word: string, env: ShellEnv): string {
    return this.processWordWithMatches(word, env).result;
  }

  /**
   * Expands `word` and splits the result into words on unquoted white space, after expansion
   * (BuildKit ProcessWords); quoted or escaped spaces stay inside a word.
   */
  processWords(word: string, env: ShellEnv): string[] {
    return this.run(word, env).words;
  }

  /** processWord plus the referenced names that were set / unset (BuildKit ProcessWordWithMatches). */
  processWordWithMatches(word: string, env: ShellEnv): ExpandResult {
    const { result, sw } = this.run(word, env);
    return { result, matched: sw.matched, unmatched: sw.unmatched };
  }

  private run(word: string, env: ShellEnv): { result: string; words: string[]; sw: ShellWord } {
    const sw = new ShellWord(word, toGetter(env), this.escapeToken, this.options);
    try {
      const { result, words } = sw.process();
      return { result, words, sw };
    } catch (e) {
      if (e instanceof LexError) {
        throw new TsbuildError('DOCKERFILE_EXPANSION', `failed to process ${quote(word)}: ${e.message}`);
      }
      throw e;
    }
  }
}
