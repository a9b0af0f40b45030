/**
 * One path component against a shell pattern, with Go's filepath.Match rules (what BuildKit
 * uses for COPY/ADD wildcards): `*` any run of characters, `?` one character, `[...]` a class
 * with ranges and `^` negation, `\` escapes the next character.
 * https://pkg.go.dev/path/filepath#Match
 */
export function hasWildcard(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') {
      i++;
      continue;
    }
    if (c === '*' || c === '?' || c === '[') return true;
  }
  return false;
}

/** Removes the escapes of a pattern that has no wildcard ("a\[b" -> "a[b"). */
export function unescapeGlob(s: string): string {
  return s.replace(/\\(.)/g, '$1');
}

const cache = new Map<string, RegExp | null>();

/** Returns null when the pattern is malformed (ErrBadPattern). */
export function globToRegExp(pattern: string): RegExp | null {
  const hit = cache.get(pattern);
  if (hit !== undefined) return hit;
  let re = '^';
  let ok = true;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '\\') {
      i++;
      if (i >= pattern.length) {
        ok = false;
        break;
      }
      re += escapeRe(pattern[i]!);
    } else if (c === '[') {
      let j = i + 1;
      let cls = '[';
      if (pattern[j] === '^') {
        cls += '^';
        j++;
      }
      let n = 0;
      let closed = false;
      for (; j < pattern.length; j++) {
        const d = pattern[j]!;
        if (d === ']' && n > 0) {
          closed = true;
          break;
        }
        n++;
        if (d === '\\') {
          j++;
          if (j >= pattern.length) break;
          cls += escapeRe(pattern[j]!);
        } else if (d === '-' && n > 1 && pattern[j + 1] !== ']') {
          cls += '-';
        } else {
          cls += escapeRe(d);
        }
      }
      if (!closed) {
        ok = false;
        break;
      }
      re += `${cls}]`;
      i = j;
    } else re += escapeRe(c);
  }
  const out = ok ? new RegExp(`${re}$`, 'su') : null;
  cache.set(pattern, out);
  return out;
}

export function matchGlob(pattern: string, name: string): boolean {
  return globToRegExp(pattern)?.test(name) ?? false;
}

function escapeRe(c: string): string {
  return /[\\^$.*+?()[\]{}|/-]/.test(c) ? `\\${c}` : c;
}
