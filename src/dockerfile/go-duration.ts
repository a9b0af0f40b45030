/**
 * Go's time.ParseDuration, for HEALTHCHECK --interval and friends (BuildKit parses them with
 * it, so `1m30s`, `1.5h`, `300ms`, `10us` are accepted and a bare `5` is not).
 * https://pkg.go.dev/time#ParseDuration
 */

const UNIT_NS: Readonly<Record<string, number>> = {
  ns: 1,
  us: 1e3,
  'µs': 1e3, // U+00B5
  'μs': 1e3, // U+03BC
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};

/** The duration in nanoseconds, or an error message in Go's words. */
export function parseGoDuration(text: string): { ns: number } | { error: string } {
  const quoted = JSON.stringify(text);
  let s = text;
  let negative = false;
  if (s.startsWith('-') || s.startsWith('+')) {
    negative = s.startsWith('-');
    s = s.slice(1);
  }
  if (s === '0') return { ns: 0 };
  if (s === '') return { error: `time: invalid duration ${quoted}` };
  let total = 0;
  while (s !== '') {
    const m = /^([0-9]*)(?:\.([0-9]*))?/.exec(s);
    const whole = m?.[1] ?? '';
    const frac = m?.[2];
    if (whole === '' && (frac === undefined || frac === '')) return { error: `time: invalid duration ${quoted}` };
    s = s.slice(m?.[0].length ?? 0);
    let i = 0;
    for (; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c === 0x2e || (c >= 0x30 && c <= 0x39)) break;
    }
    if (i === 0) return { error: `time: missing unit in duration ${quoted}` };
    const unit = s.slice(0, i);
    s = s.slice(i);
    const scale = UNIT_NS[unit];
    if (scale === undefined) return { error: `time: unknown unit ${JSON.stringify(unit)} in duration ${quoted}` };
    total += Number(`${whole === '' ? '0' : whole}.${frac ?? ''}0`) * scale;
  }
  return { ns: negative ? -total : total };
}
