/**
 * The pieces of Go's standard library that .dockerignore semantics depend on, ported for
 * slash-separated (Unix) paths: path/filepath.Clean, filepath.Dir, filepath.Match (used by
 * moby/patternmatcher only to syntax-check a pattern) and strings.TrimSpace.
 * Sources: https://cs.opensource.google/go/go/+/refs/tags/go1.22.0:src/path/filepath/match.go
 * and src/path/path.go.
 */

/** filepath.ErrBadPattern: "syntax error in pattern". */
export class BadPatternError extends Error {
  constructor() {
    super('syntax error in pattern');
  }
}

/** path.Clean: the shortest equivalent path; "" becomes ".". */
export function goClean(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const parts: string[] = [];
  for (const el of p.split('/')) {
    if (el === '' || el === '.') continue;
    if (el === '..') {
      if (parts.length > 0 && parts[parts.length - 1] !== '..') parts.pop();
      else if (!rooted) parts.push('..');
      continue;
    }
    parts.push(el);
  }
  const out = (rooted ? '/' : '') + parts.join('/');
  return out === '' ? '.' : out;
}

/** filepath.Dir: everything but the last element, cleaned. */
export function goDir(p: string): string {
  const slash = p.lastIndexOf('/');
  return goClean(p.slice(0, slash + 1));
}

/** unicode.IsSpace (differs from JS `\s`: U+0085 is space, U+FEFF is not). */
const SPACE = /^[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]$/u;

export function isGoSpace(ch: string): boolean {
  return SPACE.test(ch);
}

/** strings.TrimSpace. */
export function goTrimSpace(s: string): string {
  const cps = Array.from(s);
  let start = 0;
  let end = cps.length;
  while (start < end && isGoSpace(cps[start] as string)) start++;
  while (end > start && isGoSpace(cps[end - 1] as string)) end--;
  return cps.slice(start, end).join('');
}

/**
 * filepath.Match(pattern, name) on Unix: `*` any run without `/`, `?` one non-`/` character,
 * `[...]` classes with ranges and `^` negation, `\` escapes. Throws BadPatternError for a
 * malformed pattern; like Go, it checks the whole pattern even after a mismatch.
 */
export function goFilepathMatch(pattern: string, name: string): boolean {
  let pat = Array.from(pattern);
  let nm = Array.from(name);
  outer: while (pat.length > 0) {
    const scanned = scanChunk(pat);
    const { star, chunk } = scanned;
    pat = scanned.rest;
    if (star && chunk.length === 0) {
      // Trailing * matches the rest of the name unless it has a /.
      return !nm.includes('/');
    }
    const first = matchChunk(chunk, nm);
    if (first !== undefined && (first.length === 0 || pat.length > 0)) {
      nm = first;
      continue;
    }
    if (star) {
      // Look for a match skipping i+1 characters; a star cannot skip a '/'.
      for (let i = 0; i < nm.length && nm[i] !== '/'; i++) {
        const t = matchChunk(chunk, nm.slice(i + 1));
        if (t !== undefined) {
          if (pat.length === 0 && t.length > 0) continue;
          nm = t;
          continue outer;
        }
      }
    }
    // Before returning false, check the rest of the pattern is well formed.
    while (pat.length > 0) {
      const next = scanChunk(pat);
      pat = next.rest;
      matchChunk(next.chunk, []);
    }
    return false;
  }
  return nm.length === 0;
}

function scanChunk(pattern: string[]): { star: boolean; chunk: string[]; rest: string[] } {
  let p = pattern;
  let star = false;
  while (p.length > 0 && p[0] === '*') {
    p = p.slice(1);
    star = true;
  }
  let inRange = false;
  let i = 0;
  scan: for (; i < p.length; i++) {
    switch (p[i]) {
      case '\\':
        if (i + 1 < p.length) i++;
        break;
      case '[':
        inRange = true;
        break;
      case ']':
        inRange = false;
        break;
      case '*':
        if (!inRange) break scan;
        break;
      default:
        break;
    }
  }
  return { star, chunk: p.slice(0, i), rest: p.slice(i) };
}

/** Returns the rest of `s` after the chunk matched, or undefined when it did not match. */
function matchChunk(chunk: string[], s: string[]): string[] | undefined {
  // After a mismatch the loop keeps going over the chunk only to check its syntax.
  let failed = false;
  let c = 0;
  let si = 0;
  while (c < chunk.length) {
    if (!failed && si >= s.length) failed = true;
    const ch = chunk[c] as string;
    if (ch === '[') {
      let r = 0;
      if (!failed) {
        r = (s[si] as string).codePointAt(0) as number;
        si++;
      }
      c++;
      let negated = false;
      if (c < chunk.length && chunk[c] === '^') {
        negated = true;
        c++;
      }
      let matched = false;
      let nrange = 0;
      for (;;) {
        if (c < chunk.length && chunk[c] === ']' && nrange > 0) {
          c++;
          break;
        }
        const lo = getEsc(chunk, c);
        c = lo.next;
        let hi = lo.r;
        if (chunk[c] === '-') {
          const h = getEsc(chunk, c + 1);
          hi = h.r;
          c = h.next;
        }
        if (lo.r <= r && r <= hi) matched = true;
        nrange++;
      }
      if (matched === negated) failed = true;
    } else if (ch === '?') {
      if (!failed) {
        if (s[si] === '/') failed = true;
        si++;
      }
      c++;
    } else {
      if (ch === '\\') {
        c++;
        if (c >= chunk.length) throw new BadPatternError();
      }
      if (!failed) {
        if (chunk[c] !== s[si]) failed = true;
        si++;
      }
      c++;
    }
  }
  return failed ? undefined : s.slice(si);
}

function getEsc(chunk: string[], start: number): { r: number; next: number } {
  let c = start;
  if (c >= chunk.length || chunk[c] === '-' || chunk[c] === ']') throw new BadPatternError();
  if (chunk[c] === '\\') {
    c++;
    if (c >= chunk.length) throw new BadPatternError();
  }
  const r = (chunk[c] as string).codePointAt(0) as number;
  c++;
  if (c >= chunk.length) throw new BadPatternError();
  return { r, next: c };
}
