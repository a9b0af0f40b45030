import { Override, RESET } from './yaml-file.js';

/**
 * Merging of compose files and of `extends`, after the Compose Specification's merge page
 * (https://docs.docker.com/reference/compose-file/merge/):
 * - mappings merge key by key, the later file winning on conflicts;
 * - sequences append (dns, expose, env_file, cap_add, ...);
 * - command, entrypoint and healthcheck.test are replaced, not appended;
 * - ports, volumes, secrets and configs are unique resources: an entry of a later file replaces
 *   the earlier entry with the same unique key (volume target, secret/config target, the port
 *   binding), others append;
 * - environment, labels, args and the other "mapping or list" keys are merged as mappings
 *   (normaliseService turns their list forms into mappings first);
 * - `!reset` removes the earlier value, `!override` replaces it whole.
 */
export type Tree = Record<string, unknown>;

export function isTree(v: unknown): v is Tree {
  return v !== null && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype;
}

const REPLACED = new Set(['services.*.command', 'services.*.entrypoint', 'services.*.healthcheck.test']);
const UNIQUE: Record<string, (entry: unknown) => string> = {
  'services.*.ports': portKey,
  'services.*.volumes': volumeKey,
  'services.*.secrets': fileRefKey,
  'services.*.configs': fileRefKey,
};

/** Merges `over` onto `base` at `path` (dot-separated, service names as `*`). Neither input is modified. */
export function mergeValue(base: unknown, over: unknown, path: string): unknown {
  if (over === RESET) return undefined;
  if (over instanceof Override) return stripMarkers(over.value);
  if (base === undefined) return stripMarkers(over);
  if (isTree(base) && isTree(over)) {
    const out: Tree = { ...base };
    for (const [k, v] of Object.entries(over)) {
      const childPath = path === '' ? k : path === 'services' ? 'services.*' : `${path}.${k}`;
      const merged = mergeValue(base[k], v, childPath);
      if (merged === undefined) delete out[k];
      else out[k] = merged;
    }
    return out;
  }
  if (Array.isArray(base) && Array.isArray(over)) {
    if (REPLACED.has(path)) return stripMarkers(over);
    const keyOf = UNIQUE[path];
    if (keyOf) {
      const out = [...base];
      for (const item of over.map(stripMarkers)) {
        const at = out.findIndex((b) => keyOf(b) === keyOf(item));
        if (at >= 0) out[at] = item;
        else out.push(item);
      }
      return out;
    }
    return [...base, ...over.map(stripMarkers)];
  }
  return stripMarkers(over);
}

/** Drops markers of a value that has nothing under it to reset or override. */
export function stripMarkers(v: unknown): unknown {
  if (v === RESET) return undefined;
  if (v instanceof Override) return stripMarkers(v.value);
  if (Array.isArray(v)) return v.map(stripMarkers).filter((x) => x !== undefined);
  if (isTree(v)) {
    const out: Tree = {};
    for (const [k, x] of Object.entries(v)) {
      const s = stripMarkers(x);
      if (s !== undefined) out[k] = s;
    }
    return out;
  }
  return v;
}

function portKey(p: unknown): string {
  if (isTree(p)) return `${String(p.host_ip ?? '')}:${String(p.published ?? '')}:${String(p.target ?? '')}/${String(p.protocol ?? 'tcp')}`;
  const s = String(p);
  const [spec, proto = 'tcp'] = s.split('/');
  const parts = spec!.split(':');
  const target = parts.pop() ?? '';
  const published = parts.pop() ?? '';
  return `${parts.join(':')}:${published}:${target}/${proto}`;
}

function volumeKey(v: unknown): string {
  if (isTree(v)) return String(v.target ?? '');
  const parts = String(v).split(':');
  return parts.length === 1 ? parts[0]! : parts[1]!;
}

function fileRefKey(v: unknown): string {
  if (isTree(v)) return String(v.target ?? v.source ?? '');
  return String(v);
}
