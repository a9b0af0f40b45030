import path from 'node:path';
import { TsbuildError } from '../errors.js';

/**
 * `--cache-from` / `--cache-to` values, buildx's grammar (https://docs.docker.com/build/cache/backends/):
 * CSV `key=value` fields with a `type`, or a bare reference (`--cache-from REF`: an image
 * pushed with inline cache, or a cache ref). Parsed into typed specs here, before anything runs.
 */

/** Where build cache is read from. A registry ref may hold a cache manifest or an image with inline cache. */
export type CacheImportSpec = { readonly type: 'registry'; readonly ref: string } | { readonly type: 'local'; readonly src: string };

/** Defaults of the bound on an exported cache (README, docs/remote-cache.md). */
export const DEFAULT_MAX_EXPORTS = 10;
export const DEFAULT_MAX_AGE_SECONDS = 30 * 24 * 3600;

/** `mounts=`: the `RUN --mount=type=cache` ids an export carries, or every one the build mounted. */
export type CacheMountSelection = readonly string[] | 'all';

interface ExportCommon {
  /** min: the steps of the final image's stage; max: every step of every stage built. */
  readonly mode: 'min' | 'max';
  /** An export failure is a warning, not a failed build. */
  readonly ignoreError: boolean;
}

export type CacheExportSpec =
  | (ExportCommon & {
      readonly type: 'registry';
      readonly ref: string;
      readonly compression: 'gzip' | 'zstd' | 'uncompressed';
      /** Entries not used by the last `maxExports` exports are dropped. */
      readonly maxExports: number;
      /** Entries last used longer ago than this are dropped. */
      readonly maxAgeSeconds: number;
      /** Cache mounts exported with the steps (docs/remote-cache.md, "Cache mounts"). */
      readonly mounts?: CacheMountSelection | undefined;
    })
  | (ExportCommon & {
      readonly type: 'local';
      readonly dest: string;
      readonly compression: 'gzip' | 'zstd' | 'uncompressed';
      readonly maxExports: number;
      readonly maxAgeSeconds: number;
      readonly mounts?: CacheMountSelection | undefined;
    })
  | (ExportCommon & { readonly type: 'inline' });

/** buildx's cache backends: the ones tsbuild has, and the ones it names as unsupported. */
const KNOWN_TYPES = ['registry', 'local', 'inline', 'gha', 's3', 'azblob'] as const;

/** A field whose value is a list: parts without `=` after it are more of its items (`mounts=npm,pip`). */
const LIST_FIELDS = new Set(['mounts']);

function fieldsOf(spec: string, flag: string): Map<string, string> {
  const fields = new Map<string, string>();
  let list: string | undefined;
  for (const raw of splitCsv(spec)) {
    const part = raw.trim();
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq < 0 && list !== undefined) {
      fields.set(list, `${fields.get(list)},${part}`);
      continue;
    }
    list = undefined;
    if (eq <= 0) throw new TsbuildError('USAGE', `invalid ${flag} field ${JSON.stringify(part)} in ${JSON.stringify(spec)}`, { hint: 'use type=registry,ref=NAME or type=local,src=DIR' });
    const key = part.slice(0, eq).trim().toLowerCase();
    if (fields.has(key)) throw new TsbuildError('USAGE', `${flag} ${JSON.stringify(spec)} gives ${key} twice`);
    fields.set(key, part.slice(eq + 1).trim());
    if (LIST_FIELDS.has(key)) list = key;
  }
  return fields;
}

/** Splits on commas outside double quotes (buildx's CSV). */
function splitCsv(text: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  for (const ch of text) {
    if (ch === '"') quoted = !quoted;
    else if (ch === ',' && !quoted) {
      out.push(cur);
      cur = '';
    } else cur += ch;
  }
  out.push(cur);
  return out;
}

function typeOf(fields: Map<string, string>, spec: string, flag: string): 'registry' | 'local' | 'inline' {
  const type = fields.get('type') ?? 'registry';
  if (!(KNOWN_TYPES as readonly string[]).includes(type)) throw new TsbuildError('USAGE', `unknown ${flag} type ${JSON.stringify(type)} in ${JSON.stringify(spec)}`, { hint: 'use one of registry, local, inline' });
  if (type === 'gha' || type === 's3' || type === 'azblob') {
    throw new TsbuildError('UNSUPPORTED', `${flag.slice(2)} type=${type} is not supported: tsbuild keeps build cache in a registry or a directory`, {
      hint: `use ${flag} type=registry,ref=REGISTRY/REPO:cache (any registry the build can push to) or type=local`,
    });
  }
  return type as 'registry' | 'local' | 'inline';
}

function checkKnownFields(fields: Map<string, string>, allowed: readonly string[], spec: string, flag: string): void {
  for (const k of fields.keys()) {
    if (!allowed.includes(k)) throw new TsbuildError('USAGE', `${flag} ${JSON.stringify(spec)}: unknown field ${JSON.stringify(k)}`, { hint: `fields of this type: ${allowed.join(', ')}` });
  }
}

/** One `--cache-from` value; `cwd` resolves a local directory. */
export function parseCacheImport(spec: string, cwd: string): CacheImportSpec {
  const flag = '--cache-from';
  if (spec.trim() === '') throw new TsbuildError('USAGE', `${flag} needs a value`);
  if (!spec.includes('=')) return { type: 'registry', ref: spec.trim() };
  const fields = fieldsOf(spec, flag);
  const type = typeOf(fields, spec, flag);
  if (type === 'inline') throw new TsbuildError('USAGE', `${flag} type=inline is for --cache-to: import an inline cache with --cache-from REF`);
  if (type === 'registry') {
    checkKnownFields(fields, ['type', 'ref'], spec, flag);
    const ref = fields.get('ref');
    if (!ref) throw new TsbuildError('USAGE', `${flag} type=registry needs ref=NAME`);
    return { type, ref };
  }
  checkKnownFields(fields, ['type', 'src', 'digest', 'tag'], spec, flag);
  const src = fields.get('src');
  if (!src) throw new TsbuildError('USAGE', `${flag} type=local needs src=DIR`);
  return { type, src: path.resolve(cwd, src) };
}

/** One `--cache-to` value; `cwd` resolves a local directory. */
export function parseCacheExport(spec: string, cwd: string): CacheExportSpec {
  const flag = '--cache-to';
  if (spec.trim() === '') throw new TsbuildError('USAGE', `${flag} needs a value`);
  // buildx reads a bare value as type=registry,ref=VALUE.
  const fields = spec.includes('=') ? fieldsOf(spec, flag) : new Map([['ref', spec.trim()]]);
  const type = typeOf(fields, spec, flag);
  const mode = choice(fields, 'mode', ['min', 'max'] as const, 'min', spec, flag);
  const ignoreError = choice(fields, 'ignore-error', ['true', 'false'] as const, 'false', spec, flag) === 'true';
  if (type === 'inline') {
    if (fields.has('mounts')) {
      throw new TsbuildError('USAGE', `${flag} type=inline cannot carry cache mounts (mounts=): an image config holds no blobs of its own`, {
        hint: 'export cache mounts with --cache-to type=registry,ref=REF,mounts=... or type=local,dest=DIR,mounts=...',
      });
    }
    checkKnownFields(fields, ['type', 'mode', 'ignore-error'], spec, flag);
    return { type, mode, ignoreError };
  }
  const bounds = ['max-exports', 'max-age', 'compression', 'compression-level', 'force-compression', 'oci-mediatypes', 'image-manifest'];
  const compression = choice(fields, 'compression', ['gzip', 'zstd', 'uncompressed'] as const, 'gzip', spec, flag);
  const maxExportsText = fields.get('max-exports');
  let maxExports = DEFAULT_MAX_EXPORTS;
  if (maxExportsText !== undefined) {
    if (!/^[1-9]\d{0,5}$/.test(maxExportsText)) throw new TsbuildError('USAGE', `${flag} max-exports must be a whole number from 1, not ${JSON.stringify(maxExportsText)}`);
    maxExports = Number(maxExportsText);
  }
  const maxAgeText = fields.get('max-age');
  const maxAgeSeconds = maxAgeText === undefined ? DEFAULT_MAX_AGE_SECONDS : parseAge(maxAgeText, flag);
  const mountsText = fields.get('mounts');
  const mounts = mountsText === undefined ? {} : { mounts: parseMounts(mountsText, spec, flag) };
  if (type === 'registry') {
    checkKnownFields(fields, ['type', 'ref', 'mode', 'ignore-error', 'mounts', ...bounds], spec, flag);
    const ref = fields.get('ref');
    if (!ref) throw new TsbuildError('USAGE', `${flag} type=registry needs ref=NAME`);
    return { type, ref, mode, ignoreError, compression, maxExports, maxAgeSeconds, ...mounts };
  }
  checkKnownFields(fields, ['type', 'dest', 'mode', 'ignore-error', 'mounts', ...bounds], spec, flag);
  const dest = fields.get('dest');
  if (!dest) throw new TsbuildError('USAGE', `${flag} type=local needs dest=DIR`);
  return { type, dest: path.resolve(cwd, dest), mode, ignoreError, compression, maxExports, maxAgeSeconds, ...mounts };
}

/** `mounts=all` or `mounts=ID[,ID...]` (ids as RUN --mount=type=cache gives them: `id`, else the target). */
function parseMounts(text: string, spec: string, flag: string): CacheMountSelection {
  const ids = text.split(',').map((s) => s.trim());
  if (ids.length === 1 && ids[0] === 'all') return 'all';
  const out: string[] = [];
  for (const id of ids) {
    if (id === '') throw new TsbuildError('USAGE', `${flag} ${JSON.stringify(spec)}: mounts= needs cache mount ids (the id=, or the target, of RUN --mount=type=cache) or all`);
    if (id === 'all') throw new TsbuildError('USAGE', `${flag} ${JSON.stringify(spec)}: mounts=all stands alone, not in a list of ids`);
    // eslint-disable-next-line no-control-regex
    if (/[\x00-\x1f\x7f]/.test(id) || id.length > 4096) throw new TsbuildError('USAGE', `${flag} ${JSON.stringify(spec)}: cache mount id ${JSON.stringify(id)} is not valid`);
    if (!out.includes(id)) out.push(id);
  }
  return out;
}

function choice<T extends string>(fields: Map<string, string>, name: string, choices: readonly T[], dflt: T, spec: string, flag: string): T {
  const v = fields.get(name);
  if (v === undefined) return dflt;
  if (!(choices as readonly string[]).includes(v)) throw new TsbuildError('USAGE', `${flag} ${JSON.stringify(spec)}: ${name} must be ${choices.join(' or ')}, not ${JSON.stringify(v)}`);
  return v as T;
}

/** `90d`, `12h`, `30m`, `45s` or a sum of them (`1d12h`). */
function parseAge(text: string, flag: string): number {
  const units: Record<string, number> = { d: 86400, h: 3600, m: 60, s: 1 };
  const m = /^(?:\d+[dhms])+$/.exec(text);
  if (!m) throw new TsbuildError('USAGE', `${flag} max-age must be a duration like 30d, 12h or 1d12h, not ${JSON.stringify(text)}`);
  let total = 0;
  for (const part of text.matchAll(/(\d+)([dhms])/g)) total += Number(part[1]) * units[part[2]!]!;
  if (total <= 0) throw new TsbuildError('USAGE', `${flag} max-age must be longer than 0`);
  return total;
}

/** The name a cache source has in messages. */
export function cacheSourceName(spec: CacheImportSpec | CacheExportSpec): string {
  switch (spec.type) {
    case 'registry':
      return `registry cache ${spec.ref}`;
    case 'local':
      return `local cache ${'src' in spec ? spec.src : spec.dest}`;
    case 'inline':
      return 'inline cache';
    default:
      return spec satisfies never;
  }
}
