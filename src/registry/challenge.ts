/**
 * WWW-Authenticate parsing (RFC 7235 section 4.1, RFC 6750 section 3): one header may carry
 * several challenges, each `scheme` followed by comma-separated `name=value` or
 * `name="quoted value"` parameters; a response may also carry several headers.
 */
export interface Challenge {
  /** Lowercase: `bearer`, `basic`. */
  readonly scheme: string;
  /** Parameter names lowercased: realm, service, scope, error. */
  readonly params: Readonly<Record<string, string>>;
}

export function parseChallenges(header: string | readonly string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  const values = typeof header === 'string' ? [header] : header;
  return values.flatMap(parseOne);
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/;

function parseOne(s: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const skipSpace = (): void => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
  };
  while (i < s.length) {
    skipSpace();
    while (s[i] === ',') {
      i++;
      skipSpace();
    }
    const m = TOKEN.exec(s.slice(i));
    if (!m) break;
    const scheme = m[0].toLowerCase();
    i += m[0].length;
    const params: Record<string, string> = {};
    // Parameters until the next thing that looks like `token SP` without `=` (a new challenge).
    for (;;) {
      skipSpace();
      const start = i;
      const name = TOKEN.exec(s.slice(i));
      if (!name) break;
      let j = i + name[0].length;
      while (s[j] === ' ' || s[j] === '\t') j++;
      if (s[j] !== '=') {
        i = start;
        break;
      }
      j++;
      while (s[j] === ' ' || s[j] === '\t') j++;
      let value = '';
      if (s[j] === '"') {
        j++;
        while (j < s.length && s[j] !== '"') {
          if (s[j] === '\\' && j + 1 < s.length) j++;
          value += s[j];
          j++;
        }
        j++;
      } else {
        const v = /^[^,\s]*/.exec(s.slice(j));
        value = v?.[0] ?? '';
        j += value.length;
      }
      params[name[0].toLowerCase()] = value;
      i = j;
      skipSpace();
      if (s[i] === ',') {
        i++;
        continue;
      }
      break;
    }
    out.push({ scheme, params });
  }
  return out;
}
