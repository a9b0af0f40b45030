import { TsbuildError } from '../errors.js';
import { Override } from './yaml-file.js';

/** Variables that interpolation reads: the process environment over the project's .env. */
export type Variables = ReadonlyMap<string, string>;

/**
 * Compose interpolation of one string (Compose Specification, "Interpolation"):
 * `$VAR`, `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset),
 * `${VAR:?err}` / `${VAR?err}` (required), `${VAR:+alt}` / `${VAR+alt}` (set), `$$` for a
 * literal `$`. Defaults and alternatives are interpolated themselves (nesting). `where` names
 * the place (file and key) for errors.
 */
export function interpolate(text: string, vars: Variables, where: string): string {
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (c !== '$') {
      out += c;
      i++;
      continue;
    }
    const next = text[i + 1];
    if (next === '$') {
      out += '$';
      i += 2;
      continue;
    }
    if (next === '{') {
      const end = closingBrace(text, i + 2);
      if (end < 0) throw invalid(text, where);
      out += substitute(text.slice(i + 2, end), vars, where, text);
      i = end + 1;
      continue;
    }
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i + 1));
    if (!m) {
      // A lone `$` (before a space, a digit, the end) stays, as compose leaves it.
      out += '$';
      i++;
      continue;
    }
    out += vars.get(m[0]) ?? '';
    i += 1 + m[0].length;
  }
  return out;
}

function closingBrace(text: string, from: number): number {
  let depth = 1;
  for (let i = from; i < text.length; i++) {
    if (text[i] === '$' && text[i + 1] === '$') {
      i++;
      continue;
    }
    if (text[i] === '$' && text[i + 1] === '{') {
      depth++;
      i++;
    } else if (text[i] === '}') {
      depth--;
      if (depth === 0) return i;
    }
  }
  return -1;
}

function invalid(text: string, where: string): TsbuildError {
  return new TsbuildError('COMPOSE_INVALID', `${where}: invalid interpolation format in ${JSON.stringify(text)}`, {
    hint: 'use $VAR or ${VAR}, ${VAR:-default}, ${VAR:?error}; write $$ for a literal $',
  });
}

function substitute(expr: string, vars: Variables, where: string, whole: string): string {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([\s\S]*))?$/.exec(expr);
  if (!m) throw invalid(whole, where);
  const name = m[1]!;
  const op = m[2];
  const arg = m[3] ?? '';
  const value = vars.get(name);
  switch (op) {
    case undefined:
      return value ?? '';
    case ':-':
      return value === undefined || value === '' ? interpolate(arg, vars, where) : value;
    case '-':
      return value === undefined ? interpolate(arg, vars, where) : value;
    case ':+':
      return value !== undefined && value !== '' ? interpolate(arg, vars, where) : '';
    case '+':
      return value !== undefined ? interpolate(arg, vars, where) : '';
    case ':?':
    case '?':
      if (value === undefined || (op === ':?' && value === '')) {
        const msg = interpolate(arg, vars, where);
        throw new TsbuildError('COMPOSE_VARIABLE', `${where}: required variable ${name} is missing a value${msg ? `: ${msg}` : ''}`, {
          hint: `set ${name} in the environment or in the project's .env file`,
        });
      }
      return value;
    default:
      throw invalid(whole, where);
  }
}

/** Interpolates every string value of a parsed compose file (keys stay as written). */
export function interpolateTree(value: unknown, vars: Variables, where: string): unknown {
  if (typeof value === 'string') return interpolate(value, vars, where);
  if (Array.isArray(value)) return value.map((v, i) => interpolateTree(v, vars, `${where}[${i}]`));
  if (value instanceof Override) return new Override(interpolateTree(value.value, vars, where));
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = interpolateTree(v, vars, where ? `${where}.${k}` : k);
    return out;
  }
  return value;
}

/**
 * A .env file (compose's dotenv dialect): `KEY=VALUE`, an optional `export `, `#` comments,
 * single quotes literal, double quotes with \n \t \\ \" escapes and interpolation, unquoted
 * values trimmed and cut at ` #`. Earlier lines and `base` are visible to later values.
 */
export function parseEnvFile(text: string, file: string, base: Variables): Map<string, string> {
  const out = new Map<string, string>();
  const lookup = new Map([...base, ...out]);
  const lines = text.split(/\r?\n/);
  for (let n = 0; n < lines.length; n++) {
    let line = lines[n]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('export ')) line = line.slice(7).trimStart();
    const eq = line.indexOf('=');
    const key = (eq < 0 ? line : line.slice(0, eq)).trim();
    if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(key)) {
      throw new TsbuildError('COMPOSE_INVALID', `${file}:${n + 1}: invalid variable name ${JSON.stringify(key)}`, { hint: 'write KEY=VALUE, one per line' });
    }
    if (eq < 0) {
      // `KEY` alone takes the value from the environment, if set.
      const v = base.get(key);
      if (v !== undefined) out.set(key, v);
      continue;
    }
    let raw = line.slice(eq + 1).trim();
    let value: string;
    if (raw.startsWith("'")) {
      const end = raw.indexOf("'", 1);
      value = end < 0 ? raw.slice(1) : raw.slice(1, end);
    } else if (raw.startsWith('"')) {
      // A double-quoted value may span lines.
      while (!/(^|[^\\])(\\\\)*"$/.test(raw.slice(1)) && n + 1 < lines.length) raw += `\n${lines[++n]}`;
      let body = raw.slice(1);
      const close = body.search(/(?<!\\)"/);
      if (close >= 0) body = body.slice(0, close);
      body = body.replace(/\\([nrt"\\$])/g, (_m, ch: string) => ({ n: '\n', r: '\r', t: '\t', '"': '"', '\\': '\\', $: '$$' })[ch]!);
      value = interpolate(body, lookup, `${file}:${n + 1}`);
    } else {
      const hash = raw.search(/\s#/);
      if (hash >= 0) raw = raw.slice(0, hash).trimEnd();
      value = interpolate(raw, lookup, `${file}:${n + 1}`);
    }
    out.set(key, value);
    lookup.set(key, value);
  }
  return out;
}
