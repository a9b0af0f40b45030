import type { Writable } from 'node:stream';
import { parseFormatFlag, parseGoTemplate } from './go-template.js';

/**
 * Aligns tab-separated lines as docker's CLI does: Go's text/tabwriter with minwidth 10,
 * padding 3, padded with spaces (cli/command/formatter). The text after a line's last tab
 * is not a column and is never padded.
 */
export function alignTabs(lines: readonly string[]): string {
  const rows = lines.map((l) => l.split('\t'));
  const widths: number[] = [];
  for (const r of rows) {
    r.slice(0, -1).forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 10, c.length + 3);
    });
  }
  return rows.map((r) => `${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('')}\n`).join('');
}

/** One listing (images, history, df -v): what each row offers to `--format` and the default table. */
export interface Listing<R> {
  /** Field names of the default table, in order (`ID`, `Repository`, ...). */
  readonly columns: readonly string[];
  /** Header of each field as docker prints it (`ID` -> `IMAGE ID`). */
  readonly headers: Readonly<Record<string, string>>;
  /** The row as the template sees it: `{{.Repository}}` reads `fields(row).Repository`. */
  fields(row: R): Record<string, unknown>;
}

/**
 * Writes rows as docker's `--format` does: `table` (default) is the default columns with a
 * header; `json` is one JSON object per line; `table TEMPLATE` adds a header row to a
 * template; anything else is a Go template per row.
 */
export function writeListing<R>(out: Writable, rows: readonly R[], listing: Listing<R>, format: string | undefined): void {
  const f = format === undefined || format === '' ? 'table' : format;
  if (f === 'json') {
    for (const r of rows) out.write(`${JSON.stringify(listing.fields(r))}\n`);
    return;
  }
  const { table, template } = f === 'table' ? { table: true, template: listing.columns.map((c) => `{{.${c}}}`).join('\t') } : parseFormatFlag(f);
  const t = parseGoTemplate(template);
  const lines = rows.map((r) => t.render(listing.fields(r)));
  if (table) lines.unshift(t.render(listing.headers));
  if (lines.length === 0) return;
  out.write(alignTabs(lines.flatMap((l) => l.split('\n'))));
}

/** docker's units.HumanDuration (go-units/duration.go), e.g. "About an hour", "3 days". */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < 1) return 'Less than a second';
  if (seconds === 1) return '1 second';
  if (seconds < 60) return `${seconds} seconds`;
  const minutes = Math.floor(ms / 60000);
  if (minutes === 1) return 'About a minute';
  if (minutes < 60) return `${minutes} minutes`;
  const hours = Math.floor(ms / 3600000 + 0.5);
  if (hours === 1) return 'About an hour';
  if (hours < 48) return `${hours} hours`;
  if (hours < 24 * 7 * 2) return `${Math.floor(hours / 24)} days`;
  if (hours < 24 * 30 * 2) return `${Math.floor(hours / 24 / 7)} weeks`;
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24 / 30)} months`;
  return `${Math.floor(ms / 3600000 / 24 / 365)} years`;
}

/** CREATED as docker prints it: "2 hours ago", or "N/A" without a date. */
export function createdSince(created: string | undefined, now: Date): string {
  const t = created ? Date.parse(created) : NaN;
  if (Number.isNaN(t)) return 'N/A';
  return `${humanDuration(Math.max(0, now.getTime() - t))} ago`;
}

/** Go's time.Time String() in UTC as docker's CreatedAt: "2024-01-02 03:04:05 +0000 UTC". */
export function createdAt(created: string | undefined): string {
  const t = created ? new Date(created) : undefined;
  if (!t || Number.isNaN(t.getTime())) return '';
  return `${t.toISOString().replace('T', ' ').replace(/\.\d+Z$/, '')} +0000 UTC`;
}

/** docker's units.HumanSizeWithPrecision(size, 3): decimal units, 3 significant digits ("4.26MB"). */
export function humanSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toPrecision(3))}${units[i]}`;
}

/** "24h", "90m", "30s", "2h30m" -> milliseconds (Go's time.ParseDuration units h, m, s, ms). */
export function parseDuration(text: string): number | undefined {
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/gy;
  let total = 0;
  let matched = 0;
  for (const m of text.matchAll(re)) {
    const n = Number(m[1]);
    total += n * (m[2] === 'h' ? 3600000 : m[2] === 'm' ? 60000 : m[2] === 's' ? 1000 : 1);
    matched += m[0].length;
  }
  return matched === text.length && text.length > 0 ? total : undefined;
}
