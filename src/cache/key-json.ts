type Json = string | number | boolean | null | readonly Json[] | { readonly [k: string]: Json };

/** JSON with object keys sorted, for hashing only (not the image's wire format). */
export function canonicalKeyJson(value: Json): string {
  if (Array.isArray(value)) return `[${value.map((v) => canonicalKeyJson(v as Json)).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const obj = value as { readonly [k: string]: Json };
    const keys = Object.keys(obj).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalKeyJson(obj[k] as Json)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
