/**
 * From one logical line to keyword, flags and arguments, as BuildKit's parser does it
 * (frontend/dockerfile/parser/split_command.go and line_parsers.go, moby/buildkit @ 73ed6825).
 * testdata/conformance/parser/FORMAT.md states the rules in prose; the quirks kept here are
 * BuildKit's, on purpose, because the dump must match it byte for byte.
 *
 * Everything here works on byte strings (see go-text.ts). Errors are thrown as
 * LineParseError (no location); parser.ts adds the location.
 */
import {
  decodeRune,
  decodeReplacing,
  encodeRune,
  fromByteString,
  goQuote,
  goToLower,
  isGoSpace,
  RUNE_ERROR,
  toByteString,
  trimLeftSpace,
  trimSpace,
} from './go-text.js';

/** A syntax problem of one line; parser.ts turns it into a located TsbuildError. */
export interface LineParseError {
  readonly lineParseError: string;
}

function lineError(message: string): LineParseError {
  return { lineParseError: message };
}

export function isLineParseError(e: unknown): e is LineParseError {
  return typeof e === 'object' && e !== null && typeof (e as { lineParseError?: unknown }).lineParseError === 'string';
}

/** The parsed arguments of one line (BuildKit's Node.Next chain plus the "json" attribute). */
export interface LineArgs {
  readonly args: string[];
  readonly json: boolean;
}

/** reWhitespace / tokenWhitespace: `[\t\v\f\r ]+` (ASCII only). */
const WS_RUN = /[\t\v\f\r ]+/;
const WS_RUN_G = /[\t\v\f\r ]+/g;

/** Go's regexp.Split(s, -1) for WS_RUN (a leading match yields a leading ""). */
function splitWhitespace(s: string): string[] {
  if (s === '') return [''];
  return s.split(WS_RUN_G);
}

/**
 * splitCommand: keyword (lower-cased) and the rest, with flags taken off the front of the rest.
 * The split is at the first run of ASCII blanks after a Unicode TrimSpace.
 */
export function splitCommand(line: string): { cmd: string; flags: string[]; args: string } {
  const trimmed = trimSpace(line);
  const m = WS_RUN.exec(trimmed);
  if (m === null) return { cmd: goToLower(trimmed), flags: [], args: '' };
  const cmd = goToLower(trimmed.slice(0, m.index));
  const { rest, flags } = extractBuilderFlags(trimmed.slice(m.index + m[0].length));
  return { cmd, flags, args: trimSpace(rest) };
}

/** unicode.IsSpace(rune(b)) of a single byte, as extractBuilderFlags tests bytes. */
const isSpaceByte = (b: number): boolean => (b >= 0x09 && b <= 0x0d) || b === 0x20 || b === 0x85 || b === 0xa0;

/**
 * extractBuilderFlags: leading `--words` become flags. BuildKit walks this text byte by byte and
 * appends each byte as a rune, so bytes >= 0x80 come out Latin-1-to-UTF-8 converted, and the
 * bytes 0x85 and 0xA0 count as blanks; kept for byte-exact dumps. The escape is always `\`.
 */
export function extractBuilderFlags(line: string): { rest: string; flags: string[] } {
  const IN_SPACES = 0;
  const IN_WORD = 1;
  const IN_QUOTE = 2;
  const words: string[] = [];
  let phase = IN_SPACES;
  let word = '';
  let quote = 0;
  let blankOK = false;
  let ch = 0;
  const n = line.length;
  const put = (b: number): void => {
    word += b < 0x80 ? String.fromCharCode(b) : encodeRune(b);
  };
  for (let pos = 0; pos <= n; pos++) {
    if (pos !== n) ch = line.charCodeAt(pos);
    if (phase === IN_SPACES) {
      if (pos === n) break;
      if (isSpaceByte(ch)) continue;
      if (ch !== 0x2d || pos + 1 === n || line.charCodeAt(pos + 1) !== 0x2d) {
        return { rest: line.slice(pos), flags: words };
      }
      phase = IN_WORD;
    }
    if (pos === n) {
      if (word !== '--' && (blankOK || word.length > 0)) words.push(word);
      break;
    }
    if (phase === IN_WORD) {
      if (isSpaceByte(ch)) {
        phase = IN_SPACES;
        if (word === '--') return { rest: line.slice(pos), flags: words };
        if (blankOK || word.length > 0) words.push(word);
        word = '';
        blankOK = false;
        continue;
      }
      if (ch === 0x27 || ch === 0x22) {
        quote = ch;
        blankOK = true;
        phase = IN_QUOTE;
        continue;
      }
      if (ch === 0x5c) {
        if (pos + 1 === n) continue;
        pos++;
        ch = line.charCodeAt(pos);
      }
      put(ch);
      continue;
    }
    // IN_QUOTE
    if (ch === quote) {
      phase = IN_WORD;
      continue;
    }
    if (ch === 0x5c) {
      if (pos + 1 === n) {
        phase = IN_WORD;
        continue;
      }
      pos++;
      ch = line.charCodeAt(pos);
    }
    put(ch);
  }
  return { rest: '', flags: words };
}

/**
 * parseWords: split at unquoted Unicode whitespace, keeping quotes and escapes in the words
 * (line_parsers.go). Invalid UTF-8 bytes become U+FFFD, as Go's WriteRune(RuneError) does.
 */
function parseWords(rest: string, escapeToken: number): string[] {
  const IN_SPACES = 0;
  const IN_WORD = 1;
  const IN_QUOTE = 2;
  const words: string[] = [];
  let phase = IN_SPACES;
  let quote = 0;
  let blankOK = false;
  let ch = 0;
  let width = 0;
  let sb = '';
  const n = rest.length;
  const write = (r: number, p: number, w: number): void => {
    // A valid rune re-encodes to its source bytes; an invalid byte becomes U+FFFD.
    sb += r === RUNE_ERROR && w === 1 ? encodeRune(RUNE_ERROR) : rest.slice(p, p + w);
  };
  for (let pos = 0; pos <= n; pos += width) {
    if (pos !== n) [ch, width] = decodeRune(rest, pos);
    if (phase === IN_SPACES) {
      if (pos === n) break;
      if (isGoSpace(ch)) continue;
      phase = IN_WORD;
    }
    if (pos === n) {
      if (blankOK || sb.length > 0) words.push(sb);
      break;
    }
    if (phase === IN_WORD) {
      if (isGoSpace(ch)) {
        phase = IN_SPACES;
        if (blankOK || sb.length > 0) words.push(sb);
        sb = '';
        blankOK = false;
        continue;
      }
      if (ch === 0x27 || ch === 0x22) {
        quote = ch;
        blankOK = true;
        phase = IN_QUOTE;
      }
      if (ch === escapeToken) {
        if (pos + width === n) continue; // an escape token at the very end is dropped
        write(ch, pos, width);
        pos += width;
        [ch, width] = decodeRune(rest, pos);
      }
      write(ch, pos, width);
      continue;
    }
    // IN_QUOTE
    if (ch === quote) phase = IN_WORD;
    if (ch === escapeToken && quote !== 0x27) {
      if (pos + width === n) {
        phase = IN_WORD;
        continue;
      }
      write(ch, pos, width);
      pos += width;
      [ch, width] = decodeRune(rest, pos);
    }
    write(ch, pos, width);
  }
  return words;
}

/** ENV and LABEL: legacy `KEY value` or `k=v ...` as (key, value, separator) triples. */
function parseNameVal(rest: string, key: string, escapeToken: number): LineArgs {
  const words = parseWords(rest, escapeToken);
  if (words.length === 0) return { args: [], json: false };
  if (!(words[0] ?? '').includes('=')) {
    const m = WS_RUN.exec(rest);
    if (m === null) throw lineError(`${key} must have two arguments`);
    return { args: [rest.slice(0, m.index), rest.slice(m.index + m[0].length), ''], json: false };
  }
  const args: string[] = [];
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq < 0) {
      throw lineError(`Syntax error - can't find = in ${goQuoteBytes(word)}. Must be of the form: name=value`);
    }
    args.push(word.slice(0, eq), word.slice(eq + 1), '=');
  }
  return { args, json: false };
}

/** %q of a byte string, for messages. */
function goQuoteBytes(s: string): string {
  return goQuote(fromByteString(s));
}

/** parseStringsWhitespaceDelimited. */
function whitespaceList(rest: string): LineArgs {
  if (rest === '') return { args: [], json: false };
  return { args: splitWhitespace(rest), json: false };
}

/** parseString. */
function wholeString(rest: string): LineArgs {
  return { args: rest === '' ? [] : [rest], json: false };
}

/** Go's encoding/json maxNestingDepth. */
const MAX_JSON_DEPTH = 10000;

function jsonDepthExceeded(text: string): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
      continue;
    }
    if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_JSON_DEPTH) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}

/** Any number that Go's float64 decoding would reject (overflow) anywhere in the value. */
function hasOverflowingNumber(v: unknown): boolean {
  const stack: unknown[] = [v];
  while (stack.length > 0) {
    const x = stack.pop();
    if (typeof x === 'number') {
      if (!Number.isFinite(x)) return true;
    } else if (Array.isArray(x)) {
      for (const e of x) stack.push(e);
    } else if (typeof x === 'object' && x !== null) {
      for (const e of Object.values(x)) stack.push(e);
    }
  }
  return false;
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

const NOT_STRING_ARRAY = 'when using JSON array syntax, arrays must be comprised of strings only';

/**
 * parseJSON: the text is an exec-form array when it starts with `[` and is valid JSON.
 * Returns undefined when it is not JSON (the caller falls back); throws when it is an array
 * holding something other than strings. Go decodes invalid UTF-8 and lone surrogate escapes
 * as U+FFFD; so do we (decodeReplacing, toByteString).
 */
function parseJSON(rest: string): LineArgs | undefined {
  const text = trimLeftSpace(rest);
  if (!text.startsWith('[')) return undefined;
  const decoded = decodeReplacing(text);
  if (jsonDepthExceeded(decoded)) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(decoded);
  } catch {
    return undefined;
  }
  if (!Array.isArray(value)) return undefined;
  // Go reports an out-of-range number as an UnmarshalTypeError, which is "not JSON" here.
  if (hasOverflowingNumber(value)) return undefined;
  const args: string[] = [];
  for (const e of value as unknown[]) {
    if (typeof e !== 'string') throw lineError(NOT_STRING_ARRAY);
    // Go turns a lone surrogate escape (`\ud800`) into U+FFFD; do it before toByteString,
    // which would read U+DC80..U+DCFF as escaped raw bytes.
    args.push(toByteString(e.replace(LONE_SURROGATE, '\ufffd')));
  }
  return { args, json: true };
}

/** parseMaybeJSON: CMD, ENTRYPOINT, RUN, SHELL. */
function maybeJSON(rest: string): LineArgs {
  if (rest === '') return { args: [], json: false };
  return parseJSON(rest) ?? { args: [rest], json: false };
}

/** parseMaybeJSONToList: ADD, COPY, VOLUME. */
function maybeJSONToList(rest: string): LineArgs {
  return parseJSON(rest) ?? whitespaceList(rest);
}

/**
 * parseHealthConfig: the first token as written, then the rest like CMD. BuildKit finds the
 * token byte by byte with unicode.IsSpace(rune(byte)); kept.
 */
function healthConfig(rest: string): LineArgs {
  let sep = 0;
  while (sep < rest.length && !isSpaceByte(rest.charCodeAt(sep))) sep++;
  let next = sep;
  while (next < rest.length && isSpaceByte(rest.charCodeAt(next))) next++;
  if (sep === 0) return { args: [], json: false };
  const cmd = maybeJSON(rest.slice(next));
  return { args: [rest.slice(0, sep), ...cmd.args], json: cmd.json };
}

/** The line parser of each instruction keyword (lower case); ONBUILD is handled by the caller. */
export function parseArguments(cmd: string, rest: string, escapeToken: number): LineArgs {
  switch (cmd) {
    case 'add':
    case 'copy':
    case 'volume':
      return maybeJSONToList(rest);
    case 'arg':
      return { args: parseWords(rest, escapeToken), json: false };
    case 'cmd':
    case 'entrypoint':
    case 'run':
    case 'shell':
      return maybeJSON(rest);
    case 'env':
      return parseNameVal(rest, 'ENV', escapeToken);
    case 'label':
      return parseNameVal(rest, 'LABEL', escapeToken);
    case 'expose':
    case 'from':
      return whitespaceList(rest);
    case 'healthcheck':
      return healthConfig(rest);
    case 'maintainer':
    case 'stopsignal':
    case 'user':
    case 'workdir':
      return wholeString(rest);
    default:
      // parseIgnore: unknown instructions keep one empty argument.
      return { args: [''], json: false };
  }
}
