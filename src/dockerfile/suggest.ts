/**
 * "did you mean ...?" for unknown instructions and flags, like BuildKit's util/suggest
 * (Levenshtein distance to the known names; only close names are offered).
 * https://github.com/moby/buildkit/blob/master/util/suggest/error.go
 */

function levenshtein(a: string, b: string): number {
  if (a === b) return 0;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      cur.push(Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** The closest option to `value`, if it is close: fewer than 3 edits (as BuildKit, and HCL). */
export function closestMatch(value: string, options: readonly string[], caseSensitive: boolean): string | undefined {
  if (value === '' || value.length > 64) return undefined;
  const v = caseSensitive ? value : value.toLowerCase();
  let best: string | undefined;
  let bestDist = 3;
  for (const option of options) {
    const o = caseSensitive ? option : option.toLowerCase();
    if (o === v) return undefined;
    const d = levenshtein(v, o);
    if (d < bestDist) {
      bestDist = d;
      best = option;
    }
  }
  return best;
}

/** `message (did you mean X?)` when a close option exists. */
export function withSuggestion(
  message: string,
  value: string,
  options: readonly string[],
  caseSensitive: boolean,
): string {
  const match = closestMatch(value, options, caseSensitive);
  return match === undefined ? message : `${message} (did you mean ${match}?)`;
}
