/**
 * Parser directives (`# syntax=...`, `# escape=...`, `# check=...`) at the top of a Dockerfile.
 *
 * Mirrors BuildKit's DirectiveParser (frontend/dockerfile/parser/directives.go): every line is
 * offered to it until the first line that is not a directive (a blank line, any other comment,
 * an instruction) ends the directive section for good. Lines here are byte strings
 * (see go-text.ts) with the line ending removed.
 * https://docs.docker.com/reference/dockerfile/#parser-directives
 */
import { TsbuildError } from '../errors.js';
import { decodeRune, isGoSpace, RUNE_ERROR, fromByteString } from './go-text.js';
import type { ParsedDockerfile } from './parser.js';

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

/** The `# check=` value (BuildKit's linter.Config). */
export interface CheckOptions {
  readonly skipAll: boolean;
  readonly skip: readonly string[];
  readonly experimentalAll: boolean;
  readonly experimental: readonly string[];
  /** `error=true`: a check that finds something fails the build. */
  readonly error: boolean;
}

const GO_TRUE = new Set(['1', 't', 'T', 'TRUE', 'true', 'True']);
const GO_FALSE = new Set(['0', 'f', 'F', 'FALSE', 'false', 'False']);
/** strings.TrimSpace for the ASCII blanks a directive value can hold. */
const trimBlank = (s: string): string => s.replace(/^[\t\n\v\f\r ]+|[\t\n\v\f\r ]+$/g, '');

/**
 * linter.ParseLintOptions: `skip=all|A,B;experimental=all|A,B;error=BOOL` (at most three
 * `;`-separated parts, like strings.SplitN). Returns BuildKit's message for a bad value.
 */
export function parseCheckOptions(value: string): CheckOptions | { readonly problem: string } {
  const text = trimBlank(value);
  const out = { skipAll: false, skip: [] as string[], experimentalAll: false, experimental: [] as string[], error: false };
  if (text === '') return out;
  const parts = text.split(';');
  if (parts.length > 3) parts.splice(2, parts.length - 2, parts.slice(2).join(';'));
  for (const p of parts) {
    const eq = p.indexOf('=');
    if (eq < 0) return { problem: `invalid check option ${JSON.stringify(p)}` };
    const k = trimBlank(p.slice(0, eq));
    const v = trimBlank(p.slice(eq + 1));
    switch (k) {
      case 'skip':
      case 'experimental': {
        const all = v === 'all';
        const list = all ? [] : v.split(',').map(trimBlank);
        if (k === 'skip') [out.skipAll, out.skip] = [all, list];
        else [out.experimentalAll, out.experimental] = [all, list];
        break;
      }
      case 'error':
        if (GO_TRUE.has(v)) out.error = true;
        else if (GO_FALSE.has(v)) out.error = false;
        else return { problem: `failed to parse check option ${JSON.stringify(p)}: strconv.ParseBool: parsing ${JSON.stringify(v)}: invalid syntax` };
        break;
      default:
        return { problem: `invalid check option ${JSON.stringify(k)}` };
    }
  }
  return out;
}

/** `# syntax=` values that name the Dockerfile frontend tsbuild implements itself. */
const DOCKERFILE_FRONTEND = /^(docker\.io\/)?docker\/dockerfile(-upstream)?(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$/;

/**
 * What the build does with the directives besides `escape`: an invalid `# check=` fails as
 * in BuildKit's dockerfile2llb ("failed to parse check options"); what tsbuild cannot honour
 * is returned as warnings (it has no other frontends than its own; the checks themselves run
 * in checks/).
 */
export function directiveWarnings(parsed: ParsedDockerfile): string[] {
  const warnings: string[] = [];
  const { syntax, check } = parsed.directives;
  if (syntax !== undefined && !DOCKERFILE_FRONTEND.test(syntax)) {
    warnings.push(`the syntax directive names the frontend ${syntax}, which tsbuild does not run: the file is read as a plain Dockerfile`);
  }
  if (check !== undefined) {
    const options = parseCheckOptions(check);
    if ('problem' in options) {
      const line = parsed.directiveLines.check ?? 1;
      throw new TsbuildError('DOCKERFILE_SYNTAX', `failed to parse check options: ${options.problem}`, {
        location: { file: parsed.file, startLine: line, endLine: line },
      });
    }
  }
  return warnings;
}
