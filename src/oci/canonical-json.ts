import { TsbuildError } from '../errors.js';

/**
 * Deterministic JSON bytes for the documents we digest (configs, manifests, indexes).
 *
 * A digest names bytes, not values, so the same value must always give the same bytes
 * (STYLE.md 13). Decisions, and why:
 *
 * - **Keys are sorted** at every level, by Unicode code point (the same order as Go's byte-wise
 *   sort of UTF-8 map keys). BuildKit and containerd emit Go struct fields in declaration order
 *   instead; nobody can rely on either order because a digest is taken over whatever bytes were
 *   written, and registries store manifests byte for byte (distribution spec, "pushing manifests").
 *   Sorting is the one order that needs no per-type field list, and maps (Labels, annotations,
 *   ExposedPorts) come out exactly as Go writes them.
 * - **No whitespace**, UTF-8, no BOM, no trailing newline (Go's json.Marshal output).
 * - **Strings are escaped as Go's encoding/json does by default**: `<`, `>`, `&` as `\u003c`,
 *   `\u003e`, `\u0026`, and U+2028/U+2029 as `\u2028`/`\u2029`; other escapes as JSON.stringify
 *   (which agrees with Go >= 1.22: `\b \f \n \r \t`, `\u00XX` lowercase for other controls).
 *   Docker and BuildKit configs are written this way, so a `created_by` with `&&` reads the same in
 *   our configs as in theirs, and the output is safe to embed in HTML. Lone surrogates, which have no
 *   UTF-8 form, become U+FFFD as Go does with invalid UTF-8.
 * - Values: plain objects, arrays, strings, booleans, null, finite numbers (integers as decimal;
 *   other numbers as JavaScript prints them, which is deterministic), bigint as decimal. `undefined`
 *   object members are left out (an optional field that is not set); anything else (undefined in an
 *   array, functions, symbols, Dates, Maps, class instances, NaN, Infinity, cycles) is a bug and throws.
 */
export function canonicalJson(value: unknown, opts: CanonicalJsonOptions = {}): Buffer {
  const out: string[] = [];
  write(value, out, new Set<object>(), opts.htmlSafe === false ? quotePlain : quote);
  return Buffer.from(out.join(''), 'utf8');
}

export interface CanonicalJsonOptions {
  /**
   * false: strings as JSON.stringify writes them, without Go's HTML escapes (for documents that
   * are only hashed and always were written so, such as cache keys). Default true.
   */
  readonly htmlSafe?: boolean;
}

function write(value: unknown, out: string[], stack: Set<object>, q: (s: string) => string): void {
  switch (typeof value) {
    case 'string':
      out.push(q(value));
      return;
    case 'boolean':
      out.push(value ? 'true' : 'false');
      return;
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`canonicalJson: non-finite number ${value}`);
      out.push(Object.is(value, -0) ? '0' : String(value));
      return;
    case 'bigint':
      out.push(value.toString(10));
      return;
    case 'object': {
      if (value === null) {
        out.push('null');
        return;
      }
      if (stack.has(value)) throw new TypeError('canonicalJson: cyclic value');
      stack.add(value);
      if (Array.isArray(value)) {
        out.push('[');
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out.push(',');
          const item: unknown = value[i];
          if (item === undefined) throw new TypeError(`canonicalJson: undefined at array index ${i}`);
          write(item, out, stack, q);
        }
        out.push(']');
      } else {
        const proto: unknown = Object.getPrototypeOf(value);
        if (proto !== Object.prototype && proto !== null) {
          throw new TypeError(`canonicalJson: not a plain object (${value.constructor?.name ?? 'unknown'})`);
        }
        const record = value as Record<string, unknown>;
        const keys = Object.keys(record).sort(compareCodePoints);
        out.push('{');
        let first = true;
        for (const key of keys) {
          const member = record[key];
          if (member === undefined) continue;
          if (!first) out.push(',');
          first = false;
          out.push(q(key), ':');
          write(member, out, stack, q);
        }
        out.push('}');
      }
      stack.delete(value);
      return;
    }
    default:
      throw new TypeError(`canonicalJson: cannot encode a ${typeof value}`);
  }
}

const GO_HTML_ESCAPES: Readonly<Record<string, string>> = {
  '<': '\\u003c',
  '>': '\\u003e',
  '&': '\\u0026',
  '\u2028': '\\u2028',
  '\u2029': '\\u2029',
};

/** A high surrogate not followed by a low one, or a low one not preceded by a high one. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * A string as canonicalJson(s, { htmlSafe: false }) writes it (as JSON.stringify does, lone
 * surrogates replaced), as text: for callers that join many of them before encoding.
 */
export function plainJsonString(s: string): string {
  return quotePlain(s);
}

/** Printable ASCII but `"` and `\`: what JSON writes as it is. */
const JSON_AS_IS = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/**
 * plainJsonString(s) without its quotes. JSON escapes character by character, so the quoted
 * form of a concatenation is the concatenation of these (a surrogate pair split in two aside);
 * a string of plain ASCII, most paths, comes back as it is without the escaping machinery.
 */
export function plainJsonBody(s: string): string {
  return JSON_AS_IS.test(s) ? s : quotePlain(s).slice(1, -1);
}

function quotePlain(s: string): string {
  return JSON.stringify(s.replace(LONE_SURROGATE, '\uFFFD'));
}

function quote(s: string): string {
  const wellFormed = s.replace(LONE_SURROGATE, '\uFFFD');
  return JSON.stringify(wellFormed).replace(/[<>&\u2028\u2029]/g, (c) => GO_HTML_ESCAPES[c] ?? c);
}

/** Order strings by Unicode code point, i.e. by their UTF-8 bytes (Go's sort.Strings on keys). */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca === cb) continue;
    // UTF-16 order differs from code point order only when one side is a surrogate
    // (U+10000 and above) and the other is in U+E000..U+FFFF.
    const sa = ca >= 0xd800 && ca <= 0xdfff;
    const sb = cb >= 0xd800 && cb <= 0xdfff;
    if (sa !== sb) return sa ? 1 : -1;
    return ca - cb;
  }
  return a.length - b.length;
}

/**
 * Parse a small JSON document (manifest, index, config) from untrusted bytes.
 *
 * Refuses documents over `maxBytes` before decoding them (STYLE.md 4: small JSON only, with a cap),
 * invalid UTF-8, a byte-order mark (Go's decoder refuses it too) and malformed JSON, each with
 * MANIFEST_INVALID naming `what` ("manifest docker.io/library/busybox:latest").
 */
export function parseJsonCapped(bytes: Uint8Array, maxBytes: number, what: string): unknown {
  if (bytes.byteLength > maxBytes) {
    throw new TsbuildError(
      'MANIFEST_INVALID',
      `${what} is ${bytes.byteLength} bytes, over the ${maxBytes}-byte limit`,
      { hint: 'the document is larger than any image document should be; check the source' },
    );
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch (cause) {
    throw new TsbuildError('MANIFEST_INVALID', `${what} is not valid UTF-8`, { cause });
  }
  if (text.charCodeAt(0) === 0xfeff) {
    throw new TsbuildError('MANIFEST_INVALID', `${what} starts with a byte-order mark`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    const why = cause instanceof Error ? cause.message : String(cause);
    throw new TsbuildError('MANIFEST_INVALID', `${what} is not valid JSON: ${why}`, { cause });
  }
}
