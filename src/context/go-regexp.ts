/**
 * Compiles a Go (RE2) regular expression to an equivalent JavaScript RegExp, for the subset of
 * syntax that moby/patternmatcher can produce from a .dockerignore pattern.
 *
 * Why not hand the string to `new RegExp`: patternmatcher builds a Go regex by pasting the
 * user's pattern into it (`\x` escapes pass through, `[...]` classes pass through with `*`
 * rewritten inside them), so the meaning of the result is Go's, and Go and JS disagree on
 * plenty of it (`\ ` is a literal space in Go and a syntax error in JS with the `u` flag; `.`
 * excludes only `\n` in Go; `\s` is ASCII in Go; a lone `]` is literal in Go). Parsing the RE2
 * syntax and re-emitting JS keeps Go's meaning and Go's errors.
 * Syntax reference: https://github.com/google/re2/wiki/Syntax and Go's regexp/syntax/parse.go.
 *
 * Flags are Go's `regexp.Compile` defaults (syntax.Perl): `.` does not match `\n`, `^`/`$` match
 * only at the ends of the text, classes may match `\n`, case-sensitive.
 */

/** Go's regexp.Compile failed; patternmatcher reports this as filepath.ErrBadPattern. */
export class GoRegexpError extends Error {}

const ASCII_CLASSES: Record<string, string> = {
  // [[:name:]] POSIX classes, as Go defines them (ASCII only).
  alnum: '0-9A-Za-z',
  alpha: 'A-Za-z',
  ascii: '\\u{0}-\\u{7f}',
  blank: '\\t ',
  cntrl: '\\u{0}-\\u{1f}\\u{7f}',
  digit: '0-9',
  graph: '!-~',
  lower: 'a-z',
  print: ' -~',
  punct: '!-/:-@\\[-`{-~',
  space: '\\t\\n\\v\\f\\r ',
  upper: 'A-Z',
  word: '0-9A-Za-z_',
  xdigit: '0-9A-Fa-f',
};

/** Perl classes: ASCII in Go (JS `\s` is Unicode, so it is spelled out). */
const PERL_CLASSES: Record<string, string> = {
  d: '0-9',
  s: '\\t\\n\\f\\r ',
  w: '0-9A-Za-z_',
};

const isOctal = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '7';
const isHex = (c: string | undefined): boolean => c !== undefined && /^[0-9A-Fa-f]$/.test(c);
const isAsciiAlnum = (c: string): boolean => /^[0-9A-Za-z]$/.test(c);

/** One code point as a JS regex literal that is valid in and out of classes under the `u` flag. */
function lit(cp: number): string {
  const ch = String.fromCodePoint(cp);
  return isAsciiAlnum(ch) ? ch : `\\u{${cp.toString(16)}}`;
}

/** One parsed class item: either a range or a ready-made JS class fragment. */
type ClassItem = { lo: number; hi: number } | { fragment: string; negated: boolean };

class Parser {
  private readonly s: string[];
  private i = 0;

  constructor(src: string) {
    this.s = Array.from(src);
  }

  private peek(offset = 0): string | undefined {
    return this.s[this.i + offset];
  }

  private fail(msg: string): never {
    throw new GoRegexpError(msg);
  }

  /** Top level: an alternation of sequences. */
  parseAlternation(depth: number): string {
    const branches: string[] = [this.parseSequence(depth)];
    while (this.peek() === '|') {
      this.i++;
      branches.push(this.parseSequence(depth));
    }
    return branches.join('|');
  }

  private parseSequence(depth: number): string {
    let out = '';
    // What the last atom was, for repetition checks: 'none' | 'atom' | 'assert' | 'repeat'.
    let last: 'none' | 'atom' | 'assert' | 'repeat' = 'none';
    let atomStart = 0;
    for (;;) {
      const c = this.peek();
      if (c === undefined) break;
      if (c === '|') break;
      if (c === ')') {
        if (depth === 0) this.fail('unexpected )');
        break;
      }
      if (c === '*' || c === '+' || c === '?') {
        this.i++;
        // Go allows repeating an assertion (^*) but JS does not; it is wrapped in a group below.
        if (last === 'none') this.fail(`missing argument to repetition operator: ${c}`);
        if (last === 'repeat') this.fail(`invalid nested repetition operator: ${c}`);
        let op = c;
        if (this.peek() === '?') {
          this.i++;
          op += '?';
        }
        if (last === 'assert') out = `${out.slice(0, atomStart)}(?:${out.slice(atomStart)})`;
        out += op;
        last = 'repeat';
        continue;
      }
      if (c === '{') {
        const rep = this.tryRepeat();
        if (rep !== undefined) {
          if (last === 'none') this.fail('missing argument to repetition operator: {');
          if (last === 'repeat') this.fail('invalid nested repetition operator: {');
          out += rep;
          last = 'repeat';
          continue;
        }
        this.i++;
        atomStart = out.length;
        out += lit(0x7b);
        last = 'atom';
        continue;
      }
      const atom = this.parseAtom(depth);
      atomStart = out.length;
      out += atom.text;
      last = atom.assert ? 'assert' : 'atom';
    }
    return out;
  }

  /** `{n}`, `{n,}`, `{n,m}` when well formed (else `{` is a literal, as in Go). */
  private tryRepeat(): string | undefined {
    const rest = this.s.slice(this.i).join('');
    const m = /^\{(\d+)(,(\d*))?\}/.exec(rest);
    if (m === null) return undefined;
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : m[3] === '' ? -1 : Number(m[3]);
    if (lo > 1000 || hi > 1000 || (hi >= 0 && hi < lo)) this.fail(`invalid repeat count: ${m[0]}`);
    this.i += Array.from(m[0]).length;
    let text = m[0];
    if (this.peek() === '?') {
      this.i++;
      text += '?';
    }
    return text;
  }

  private parseAtom(depth: number): { text: string; assert: boolean } {
    const c = this.peek() as string;
    this.i++;
    switch (c) {
      case '^':
        return { text: '^', assert: true };
      case '$':
        return { text: '$', assert: true };
      case '.':
        return { text: '[^\\n]', assert: false };
      case '(': {
        if (this.peek() === '?') {
          // Flags and named groups never come out of patternmatcher; refuse rather than guess.
          this.fail('unsupported group syntax');
        }
        const inner = this.parseAlternation(depth + 1);
        if (this.peek() !== ')') this.fail('missing closing )');
        this.i++;
        return { text: `(?:${inner})`, assert: false };
      }
      case '[':
        return { text: this.parseClass(), assert: false };
      case '\\':
        return this.parseBackslash();
      default:
        // Includes a lone `]` or `}`, literal in Go.
        return { text: lit(c.codePointAt(0) as number), assert: false };
    }
  }

  private parseBackslash(): { text: string; assert: boolean } {
    const c = this.peek();
    if (c === undefined) this.fail('trailing backslash at end of expression');
    switch (c) {
      case 'A':
        this.i++;
        return { text: '^', assert: true };
      case 'z':
        this.i++;
        return { text: '$', assert: true };
      case 'b':
        this.i++;
        return { text: '\\b', assert: true };
      case 'B':
        this.i++;
        return { text: '\\B', assert: true };
      case 'Q': {
        this.i++;
        let text = '';
        while (this.peek() !== undefined) {
          if (this.peek() === '\\' && this.peek(1) === 'E') {
            this.i += 2;
            break;
          }
          text += lit((this.peek() as string).codePointAt(0) as number);
          this.i++;
        }
        return { text: text === '' ? '(?:)' : `(?:${text})`, assert: false };
      }
      default:
        break;
    }
    const cls = this.tryClassEscape();
    if (cls !== undefined) {
      return { text: cls.negated ? `[^${cls.fragment}]` : `[${cls.fragment}]`, assert: false };
    }
    return { text: lit(this.parseEscape()), assert: false };
  }

  /** `\d \s \w` (and negations) and `\pX \p{Name}` (and `\P`); the backslash is already consumed. */
  private tryClassEscape(): { fragment: string; negated: boolean } | undefined {
    const c = this.peek() as string;
    const lower = c.toLowerCase();
    if ((c === 'd' || c === 's' || c === 'w' || c === 'D' || c === 'S' || c === 'W') && PERL_CLASSES[lower] !== undefined) {
      this.i++;
      return { fragment: PERL_CLASSES[lower] as string, negated: c !== lower };
    }
    if (c === 'p' || c === 'P') {
      this.i++;
      let name: string;
      if (this.peek() === '{') {
        const close = this.s.indexOf('}', this.i);
        if (close < 0) this.fail('invalid character class range: missing }');
        name = this.s.slice(this.i + 1, close).join('');
        this.i = close + 1;
      } else {
        const n = this.peek();
        if (n === undefined) this.fail('invalid character class range');
        name = n;
        this.i++;
      }
      let negated = c === 'P';
      if (name.startsWith('^')) {
        negated = !negated;
        name = name.slice(1);
      }
      return { fragment: unicodeClass(name), negated };
    }
    return undefined;
  }

  /** Go parseEscape for a single code point; the backslash is already consumed. */
  private parseEscape(): number {
    const c = this.peek();
    if (c === undefined) this.fail('trailing backslash at end of expression');
    this.i++;
    const cp = c.codePointAt(0) as number;
    if (cp < 0x80 && !isAsciiAlnum(c)) return cp; // escaped punctuation is itself
    if (c >= '1' && c <= '7' && !isOctal(this.peek())) {
      this.fail(`invalid escape sequence: \\${c}`); // a backreference, unsupported
    }
    if (c >= '0' && c <= '7') {
      let r = cp - 0x30;
      for (let k = 1; k < 3 && isOctal(this.peek()); k++) {
        r = r * 8 + ((this.peek() as string).codePointAt(0) as number) - 0x30;
        this.i++;
      }
      return r;
    }
    switch (c) {
      case 'x': {
        if (this.peek() === '{') {
          this.i++;
          let hex = '';
          while (isHex(this.peek())) {
            hex += this.peek();
            this.i++;
          }
          if (hex === '' || this.peek() !== '}') this.fail('invalid escape sequence: \\x{');
          this.i++;
          const r = parseInt(hex, 16);
          if (r > 0x10ffff) this.fail('invalid escape sequence: \\x{');
          return r;
        }
        const h1 = this.peek();
        const h2 = this.peek(1);
        if (!isHex(h1) || !isHex(h2)) this.fail('invalid escape sequence: \\x');
        this.i += 2;
        return parseInt(`${h1}${h2}`, 16);
      }
      case 'a':
        return 0x07;
      case 'f':
        return 0x0c;
      case 'n':
        return 0x0a;
      case 'r':
        return 0x0d;
      case 't':
        return 0x09;
      case 'v':
        return 0x0b;
      default:
        return this.fail(`invalid escape sequence: \\${c}`);
    }
  }

  /** Go parseClass; the `[` is already consumed. */
  private parseClass(): string {
    let negated = false;
    if (this.peek() === '^') {
      negated = true;
      this.i++;
    }
    const items: ClassItem[] = [];
    let first = true; // `]` is literal as the first item
    for (;;) {
      const c = this.peek();
      if (c === undefined) this.fail('missing closing ]');
      if (c === ']' && !first) {
        this.i++;
        break;
      }
      first = false;
      // POSIX [:name:] (Go: only when a closing `:]` exists; an unknown name is an error).
      if (c === '[' && this.peek(1) === ':') {
        const rest = this.s.slice(this.i).join('');
        const end = rest.indexOf(':]', 2);
        if (end >= 0) {
          let name = rest.slice(2, end);
          let neg = false;
          if (name.startsWith('^')) {
            neg = true;
            name = name.slice(1);
          }
          const frag = ASCII_CLASSES[name];
          if (frag === undefined) this.fail(`invalid character class range: [:${name}:]`);
          this.i += Array.from(rest.slice(0, end + 2)).length;
          items.push({ fragment: frag, negated: neg });
          continue;
        }
      }
      if (c === '\\') {
        this.i++;
        const cls = this.tryClassEscape();
        if (cls !== undefined) {
          items.push(cls);
          continue;
        }
        this.i--;
      }
      const lo = this.classChar();
      let hi = lo;
      if (this.peek() === '-' && this.peek(1) !== undefined && this.peek(1) !== ']') {
        this.i++;
        hi = this.classChar();
        if (hi < lo) this.fail('invalid character class range');
      }
      items.push({ lo, hi });
    }
    return emitClass(items, negated);
  }

  private classChar(): number {
    const c = this.peek();
    if (c === undefined) this.fail('missing closing ]');
    this.i++;
    if (c === '\\') return this.parseEscape();
    return c.codePointAt(0) as number;
  }
}

/** Go's \p names are general categories or scripts; JS spells scripts `Script=Name`. */
function unicodeClass(name: string): string {
  if (name === 'Any') return '\\u{0}-\\u{10ffff}';
  for (const candidate of [`\\p{${name}}`, `\\p{Script=${name}}`]) {
    try {
      new RegExp(candidate, 'u');
      return candidate;
    } catch {
      // try the next spelling
    }
  }
  throw new GoRegexpError(`invalid character class range: \\p{${name}}`);
}

/**
 * JS classes (with the `u` flag, without `v`) cannot nest, so a negated item inside a class is
 * written as an alternation: [a\S] -> (?:[a]|[^\t\n\f\r ]).
 */
function emitClass(items: ClassItem[], negated: boolean): string {
  const plain: string[] = [];
  const negatedFragments: string[] = [];
  for (const item of items) {
    if ('fragment' in item) {
      if (item.negated) negatedFragments.push(item.fragment);
      else plain.push(item.fragment);
    } else {
      plain.push(item.lo === item.hi ? lit(item.lo) : `${lit(item.lo)}-${lit(item.hi)}`);
    }
  }
  if (negatedFragments.length === 0) {
    if (plain.length === 0) return negated ? '[^]' : '[]';
    return `[${negated ? '^' : ''}${plain.join('')}]`;
  }
  const alternatives = [...(plain.length > 0 ? [`[${plain.join('')}]`] : []), ...negatedFragments.map((f) => `[^${f}]`)];
  const any = `(?:${alternatives.join('|')})`;
  // A negated class with a negated item: "none of these" = not followed by any, then one char.
  return negated ? `(?:(?!${any})[^])` : any;
}

/** Compiles Go regex source to a JS RegExp with the same matches, or throws GoRegexpError. */
export function compileGoRegexp(source: string): RegExp {
  const p = new Parser(source);
  const js = p.parseAlternation(0);
  try {
    return new RegExp(js, 'u');
  } catch (e) {
    throw new GoRegexpError(`cannot compile ${JSON.stringify(source)}: ${(e as Error).message}`);
  }
}
