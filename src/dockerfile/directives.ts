/**
 * Parser directives (`# syntax=...`, `# escape=...`, `# check=...`) at the top of a Dockerfile.
 *
 * Mirrors BuildKit's DirectiveParser (frontend/dockerfile/parser/directives.go): every line is
 * offered to it until the first line that is not a directive (a blank line, any other comment,
 * an instruction) ends the directive section for good. Lines here are byte strings
 * (see go-text.ts) with the line ending removed.
 * https://docs.docker.com/reference/dockerfile/#parser-directives
 */
import { decodeRune, isGoSpace, RUNE_ERROR, fromByteString } from './go-text.js';

export type DirectiveName = 'syntax' | 'escape' | 'check';

/** Go's `\s`: [\t\n\f\r ] (no \v). */
const isRegexpSpace = (c: number): boolean => c === 0x09 || c === 0x0a || c === 0x0c || c === 0x0d || c === 0x20;
const isAlpha = (c: number): boolean => (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;

/**
 * BuildKit's `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`, by hand: a backtracking regexp takes
 * quadratic time on a long run of blanks, and lines may be 64 KiB. The value is the text after
 * `=` with blanks trimmed; if it is all blanks, the lazy `.+?` still takes its last character.
 */
function matchDirective(text: string): { name: string; value: string } | undefined {
  let i = 0;
  if (i >= text.length || !isAlpha(text.charCodeAt(i))) return undefined;
  while (i < text.length && (isAlpha(text.charCodeAt(i)) || isDigit(text.charCodeAt(i)))) i++;
  const name = text.slice(0, i);
  while (i < text.length && isRegexpSpace(text.charCodeAt(i))) i++;
  if (text.charCodeAt(i) !== 0x3d) return undefined;
  const rest = text.slice(i + 1);
  if (rest === '' || rest.includes('\n')) return undefined;
  let a = 0;
  let b = rest.length;
  while (a < b && isRegexpSpace(rest.charCodeAt(a))) a++;
  if (a === b) return { name, value: rest.slice(-1) };
  while (b > a && isRegexpSpace(rest.charCodeAt(b - 1))) b--;
  return { name, value: rest.slice(a, b) };
}

export interface DirectiveState {
  done: boolean;
  readonly seen: Set<string>;
  readonly values: Map<DirectiveName, string>;
}

export function newDirectiveState(): DirectiveState {
  return { done: false, seen: new Set(), values: new Map() };
}

/** A directive problem; the caller adds the location. */
export interface DirectiveError {
  readonly message: string;
}

/**
 * Offers one line (leading whitespace already trimmed for first lines of instructions).
 * Returns an error description for a repeated directive; the escape value is validated by
 * the caller. Returns the directive name when the line was a directive.
 */
export function offerDirectiveLine(
  state: DirectiveState,
  line: string,
): { directive?: DirectiveName; error?: DirectiveError } {
  if (state.done) return {};
  if (!line.startsWith('#')) {
    state.done = true;
    return {};
  }
  let i = 1;
  while (i < line.length) {
    const [r, w] = decodeRune(line, i);
    if (!isGoSpace(r) || (r === RUNE_ERROR && w === 1)) break;
    i += w;
  }
  const m = matchDirective(line.slice(i));
  if (m === undefined) {
    state.done = true;
    return {};
  }
  const key = m.name.toLowerCase();
  if (key !== 'syntax' && key !== 'escape' && key !== 'check') {
    state.done = true;
    return {};
  }
  if (state.seen.has(key)) {
    return { error: { message: `only one ${key} parser directive can be used` } };
  }
  state.seen.add(key);
  state.values.set(key, fromByteString(m.value));
  return { directive: key };
}
