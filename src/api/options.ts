import { TsbuildError } from '../errors.js';
import { closestMatch } from '../dockerfile/index.js';

/**
 * Checks of options objects handed in by programs (JavaScript callers have no type checker):
 * an unknown key is a USAGE error naming the closest known key, never silently ignored; a
 * value of the wrong kind is a USAGE error naming the option.
 */

/** Rejects keys of `options` that are not in `known` (with "did you mean"). */
export function checkKeys(options: object, known: readonly string[], what: string): void {
  for (const key of Object.keys(options)) {
    if (known.includes(key)) continue;
    const near = closestMatch(key, known, false);
    throw new TsbuildError('USAGE', `unknown ${what} option ${JSON.stringify(key)}`, {
      hint: near !== undefined ? `did you mean ${JSON.stringify(near)}?` : `the options are: ${known.join(', ')}`,
    });
  }
}

function wrongType(name: string, want: string, got: unknown): TsbuildError {
  const kind = got === null ? 'null' : Array.isArray(got) ? 'an array' : typeof got;
  return new TsbuildError('USAGE', `option ${JSON.stringify(name)} must be ${want}, not ${kind}`);
}

export function optString(o: Record<string, unknown>, name: string): string | undefined {
  const v = o[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw wrongType(name, 'a string', v);
  return v;
}

export function optBoolean(o: Record<string, unknown>, name: string): boolean | undefined {
  const v = o[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw wrongType(name, 'true or false', v);
  return v;
}

export function optChoice<T extends string>(o: Record<string, unknown>, name: string, choices: readonly T[]): T | undefined {
  const v = optString(o, name);
  if (v === undefined) return undefined;
  if (!(choices as readonly string[]).includes(v)) {
    throw new TsbuildError('USAGE', `option ${JSON.stringify(name)} must be one of ${choices.join(', ')}, not ${JSON.stringify(v)}`);
  }
  return v as T;
}

/**
 * A list given as an array of strings, or as one string in the form CI passes (buildx and
 * docker/build-push-action: one item per line, or comma-separated when `commas`). Empty items
 * are dropped; an item that is not a string is an error.
 */
export function optList(o: Record<string, unknown>, name: string, opts: { readonly commas: boolean }): string[] {
  const v = o[name];
  if (v === undefined) return [];
  if (typeof v === 'string') return splitList(v, opts.commas);
  if (!Array.isArray(v)) throw wrongType(name, 'a string or an array of strings', v);
  return v.map((item, i) => {
    if (typeof item !== 'string') throw wrongType(`${name}[${i}]`, 'a string', item);
    return item.trim();
  }).filter((s) => s !== '');
}

/**
 * `KEY=VALUE` pairs given as an object ({ KEY: 'VALUE' }), an array of `KEY=VALUE` strings, or a
 * string with one pair per line. Returned as `KEY=VALUE` strings.
 */
export function optPairs(o: Record<string, unknown>, name: string): string[] {
  const v = o[name];
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    return Object.entries(v as Record<string, unknown>).map(([k, val]) => {
      if (typeof val !== 'string') throw wrongType(`${name}.${k}`, 'a string', val);
      return `${k}=${val}`;
    });
  }
  return optList(o, name, { commas: false });
}

/**
 * Splits a CI list: one item per line; with `commas`, also at commas outside double quotes
 * (buildx's CSV for `--cache-from`-style values is kept whole: those are passed one per line).
 * An unterminated quote is an error, not a guess.
 */
export function splitList(text: string, commas: boolean): string[] {
  const out: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    if (!commas) {
      if (line.trim() !== '') out.push(line.trim());
      continue;
    }
    let cur = '';
    let quoted = false;
    for (const ch of line) {
      if (ch === '"') quoted = !quoted;
      else if (ch === ',' && !quoted) {
        out.push(cur.trim());
        cur = '';
      } else cur += ch;
    }
    if (quoted) throw new TsbuildError('USAGE', `unterminated quote in the list ${JSON.stringify(line)}`);
    out.push(cur.trim());
  }
  return out.filter((s) => s !== '');
}
