/**
 * Heredoc markers on RUN/COPY/ADD lines (`RUN <<EOF`, `COPY <<-"A" <<B /dst`).
 *
 * BuildKit finds them in two steps (frontend/dockerfile/parser/parser.go heredocsFromLine and
 * heredocFromMatch, moby/buildkit @ 73ed6825): split the whole logical line into shell words
 * with its shell lexer (escape always `\`, quotes and escapes kept, unset variables kept as
 * written, `<<` plus following blanks glued to the next word), then match each word against
 * `^(\d*)<<(-?)\s*([^<]*)$`; the delimiter is the remainder lexed again without raw quotes, and
 * the body is expanded only if no quote took part in it.
 * https://docs.docker.com/reference/dockerfile/#here-documents
 *
 * The lexer below is a deliberately narrow copy of the parts of BuildKit's shell lexer these
 * two steps use (empty environment, SkipUnsetEnv): detection must not depend on the full
 * expansion engine in shell-lex.ts, whose options and errors serve other callers.
 */
import { decodeReplacing, toByteString } from './go-text.js';

/** One here-document attached to an instruction (BuildKit's parser.Heredoc). */
export interface Heredoc {
  /** The delimiter word with quotes removed. */
  readonly name: string;
  /** The body lines exactly as in the file, each with its line ending. */
  readonly content: string;
  /** False when the delimiter was quoted (`<<'EOF'`, `<<"EOF"`, `<<E"O"F`): no expansion. */
  readonly expand: boolean;
  /** True for `<<-`: leading tabs of body lines are to be removed (see chompHeredocContent). */
  readonly chomp: boolean;
  /** The digits before `<<` (`3<<EOF`), when given. */
  readonly fileDescriptor?: number;
}

/**
 * A heredoc marker, before its body is read. `name` is an ordinary string from
 * parseHeredocWord, and a byte string (see go-text.ts) inside the parser.
 */
export interface HeredocMarker {
  readonly name: string;
  readonly expand: boolean;
  readonly chomp: boolean;
  readonly fileDescriptor?: number;
}

interface LexOptions {
  readonly rawQuotes: boolean;
  readonly rawEscapes: boolean;
}

/** A lexing failure (unterminated quote, bad `${}`); BuildKit's error text. */
interface LexFailure {
  readonly lexFailure: string;
}

const fail = (message: string): LexFailure => ({ lexFailure: message });
const isLexFailure = (e: unknown): e is LexFailure =>
  typeof e === 'object' && e !== null && typeof (e as { lexFailure?: unknown }).lexFailure === 'string';

const GO_SPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/u;
const GO_LETTER = /^\p{L}$/u;
const GO_DIGIT = /^\p{Nd}$/u;
const isSpace = (ch: string): boolean => GO_SPACE.test(ch);

const MAX_NESTING = 500;

/**
 * ProcessWords of BuildKit's shell lexer with escape `\`, an empty environment and
 * SkipUnsetEnv. Throws LexFailure on lexing errors.
 */
function processWords(text: string, opts: LexOptions): string[] {
  const runes = Array.from(text);
  let pos = 0;
  const peek = (): string | undefined => runes[pos];
  const next = (): string | undefined => {
    const ch = runes[pos];
    if (ch !== undefined) pos++;
    return ch;
  };
  // BuildKit @ 73ed6825 keeps the word under construction in one buffer per lexer run, and
  // every nested processStopOn resets it: text gathered before a `${x:-...}` in the same word
  // is lost from the split words (shell-lex.ts documents the same quirk).
  let shared = '';
  let rawEscapes = opts.rawEscapes;

  const processName = (): string => {
    let name = '';
    for (let ch = peek(); ch !== undefined; ch = peek()) {
      if (name === '' && GO_DIGIT.test(ch)) {
        while (peek() !== undefined && GO_DIGIT.test(peek() ?? '')) name += next() ?? '';
        return name;
      }
      if (name === '' && '@*#?-$!0'.includes(ch)) {
        next();
        return ch;
      }
      if (!GO_LETTER.test(ch) && !GO_DIGIT.test(ch) && ch !== '_') break;
      name += next() ?? '';
    }
    return name;
  };

  const processSingleQuote = (): string => {
    let result = '';
    const open = next() ?? '';
    if (opts.rawQuotes) result += open;
    for (;;) {
      const ch = next();
      if (ch === undefined) throw fail('unexpected end of statement while looking for matching single-quote');
      if (ch === "'") {
        if (opts.rawQuotes) result += ch;
        return result;
      }
      result += ch;
    }
  };

  const processDoubleQuote = (): string => {
    let result = '';
    const open = next() ?? '';
    if (opts.rawQuotes) result += open;
    for (;;) {
      const p = peek();
      if (p === undefined) throw fail('unexpected end of statement while looking for matching double-quote');
      if (p === '"') {
        next();
        if (opts.rawQuotes) result += p;
        return result;
      }
      if (p === '$') {
        result += processDollar();
        continue;
      }
      let ch = next() ?? '';
      if (ch === '\\') {
        if (rawEscapes) result += ch;
        const after = peek();
        if (after === undefined) continue;
        if (after === '"' || after === '$' || after === '\\') ch = next() ?? '';
      }
      result += ch;
    }
  };

  const processPossibleHeredoc = (): string => {
    next();
    if (peek() !== '<') return '<';
    next();
    let space = '';
    for (let ch = peek(); ch === ' ' || ch === '\t' || ch === '\r'; ch = peek()) {
      space += ch;
      next();
    }
    return '<<' + space;
  };

  // Go's stacks grow; ours do not. `${a:-${a:-...}}` nesting beyond this is refused (no
  // heredoc on such a line) rather than overflowing the stack.
  let depth = 0;
  const processDollar = (): string => {
    if (++depth > MAX_NESTING) throw fail('substitutions nested too deeply');
    try {
      return processDollarInner();
    } finally {
      depth--;
    }
  };

  const processDollarInner = (): string => {
    next();
    if (peek() !== '{') {
      const name = processName();
      return name === '' ? '$' : '$' + name;
    }
    next();
    const first = peek();
    if (first === undefined) throw fail("syntax error: missing '}'");
    if (first === '{' || first === '}' || first === ':') throw fail('syntax error: bad substitution');
    const name = processName();
    let ch = next();
    let chs = ch ?? '\ufffd';
    if (ch === '}') return '${' + name + '}';
    if (ch === ':') {
      ch = next();
      chs += ch ?? '\ufffd';
      // Go falls through to the modifier case with the character after ':'.
      const word = stopOn('}', ch === '#' || ch === '%');
      return '${' + name + chs + word + '}';
    }
    if (ch === '+' || ch === '-' || ch === '?' || ch === '#' || ch === '%') {
      const word = stopOn('}', ch === '#' || ch === '%');
      return '${' + name + chs + word + '}';
    }
    if (ch === '/') {
      if (peek() === '/') next();
      const pattern = stopOn('/', true, "syntax error: missing '/' in ${}");
      const replacement = stopOn('}', true);
      return '${' + name + '/' + pattern + '/' + replacement + '}';
    }
    throw fail(`unsupported modifier (${chs}) in substitution`);
  };

  /** processStopOn for a nested stop character; returns the single-word result. */
  const stopOn = (stop: string, raw: boolean, missing = "syntax error: missing '}'"): string => {
    try {
      return run(stop, raw).result;
    } catch (e) {
      if (isLexFailure(e) && peek() === undefined) throw fail(missing);
      throw e;
    }
  };

  const run = (stop: string | undefined, raw: boolean): { result: string; words: string[] } => {
    let result = '';
    shared = '';
    const words: string[] = [];
    let inWord = false;
    const addRawChar = (ch: string): void => {
      shared += ch;
      inWord = true;
    };
    const addChar = (ch: string): void => {
      if (isSpace(ch)) {
        if (inWord && shared.length !== 0) {
          words.push(shared);
          shared = '';
          inWord = false;
        }
      } else {
        addRawChar(ch);
      }
    };
    const saved = rawEscapes;
    rawEscapes = raw;
    try {
      for (let ch = peek(); ch !== undefined; ch = peek()) {
        if (stop !== undefined && ch === stop) {
          next();
          if (shared.length > 0) words.push(shared);
          shared = '';
          return { result, words };
        }
        if (ch === '$') {
          const tmp = processDollar();
          result += tmp;
          for (const c of tmp) addChar(c);
          continue;
        }
        if (ch === '<' || ch === "'" || ch === '"') {
          const tmp = ch === '<' ? processPossibleHeredoc() : ch === "'" ? processSingleQuote() : processDoubleQuote();
          result += tmp;
          shared += tmp;
          inWord = true;
          continue;
        }
        let c = next() ?? '';
        if (c === '\\') {
          if (rawEscapes) {
            addRawChar(c);
            result += c;
          }
          const escaped = next();
          if (escaped === undefined) break;
          c = escaped;
          addRawChar(c);
        } else {
          addChar(c);
        }
        result += c;
      }
      if (stop !== undefined) throw fail(`unexpected end of statement while looking for matching ${stop}`);
      if (shared.length > 0) words.push(shared);
      shared = '';
      return { result, words };
    } finally {
      rawEscapes = saved;
    }
  };

  return run(undefined, opts.rawEscapes).words;
}

/**
 * BuildKit's `^(\d*)<<(-?)\s*([^<]*)$`, by hand: as a backtracking regexp it is quadratic on
 * a word like `<<` + many blanks + `x<`, which the lexer can produce from one long line.
 */
function matchHeredocWord(word: string): { digits: string; chomp: boolean; rest: string } | undefined {
  let i = 0;
  while (i < word.length && word.charCodeAt(i) >= 0x30 && word.charCodeAt(i) <= 0x39) i++;
  const digits = word.slice(0, i);
  if (!word.startsWith('<<', i)) return undefined;
  i += 2;
  const chomp = word[i] === '-';
  if (chomp) i++;
  while (i < word.length && '\t\n\f\r '.includes(word[i] ?? 'x')) i++;
  const rest = word.slice(i);
  if (rest.includes('<')) return undefined;
  return { digits, chomp, rest };
}

/**
 * ParseHeredoc: the marker a single word declares, or undefined. `word` is an ordinary JS
 * string; the returned name is an ordinary string too. Throws LexFailure on lexer errors.
 */
function heredocFromWord(word: string): HeredocMarker | undefined {
  const m = matchHeredocWord(word);
  if (m === undefined) return undefined;
  const rest = m.rest;
  if (rest === '') return undefined;
  const words = processWords(rest, { rawQuotes: false, rawEscapes: false });
  if (words.length !== 1) return undefined;
  const wordsRaw = processWords(rest, { rawQuotes: true, rawEscapes: false });
  if (wordsRaw.length !== words.length) {
    throw fail(`internal lexing of heredoc produced inconsistent results: ${rest}`);
  }
  const name = words[0] ?? '';
  const quotes = (s: string): number => s.split(/['"]/).length - 1;
  const digits = m.digits;
  return {
    name,
    expand: quotes(name) === quotes(wordsRaw[0] ?? ''),
    chomp: m.chomp,
    ...(digits === '' ? {} : { fileDescriptor: Number(digits) }),
  };
}

/**
 * The heredoc markers of a logical line (a byte string), in order, with names as byte
 * strings. A line that does not lex has none. Throws `{ lexFailure }` when a marker word
 * fails the second lexing (BuildKit returns that error).
 */
export function heredocsFromLine(line: string): HeredocMarker[] {
  let words: string[];
  try {
    words = processWords(decodeReplacing(line), { rawQuotes: true, rawEscapes: true });
  } catch (e) {
    if (isLexFailure(e)) return [];
    throw e;
  }
  const out: HeredocMarker[] = [];
  for (const word of words) {
    const marker = heredocFromWord(word);
    if (marker !== undefined) out.push({ ...marker, name: toByteString(marker.name) });
  }
  return out;
}

/** The message of a lexer failure thrown by heredocsFromLine, if `e` is one. */
export function heredocLexFailure(e: unknown): string | undefined {
  return isLexFailure(e) ? e.lexFailure : undefined;
}

/**
 * MustParseHeredoc for instruction arguments (`COPY <<EOF /dst`): the marker an argument
 * declares, or undefined. Names are ordinary strings.
 */
export function parseHeredocWord(word: string): HeredocMarker | undefined {
  try {
    return heredocFromWord(word);
  } catch (e) {
    if (isLexFailure(e)) return undefined;
    throw e;
  }
}

/** ChompHeredocContent: removes leading tabs of every line (for `<<-`). */
export function chompHeredocContent(content: string): string {
  // Go's (?m)^ starts a line only after \n (JS /m would also split at \r).
  return content.replace(/(^|\n)\t+/g, '$1');
}
