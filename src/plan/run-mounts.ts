/**
 * `RUN --mount=...` values, parsed as BuildKit's instructions/commands_runmount.go parseMount:
 * one CSV record of `key=value` fields (and the bare flags `ro`, `rw`, `readonly`, `readwrite`,
 * `required`).
 *
 * BuildKit parses twice. At parse time, without an expander, only `from` is read, and a `from`
 * with a `$` in it is an error ("doesn't support variable expansion"): that is what the
 * planner uses to find stage dependencies (`mountSourceNames`). At dispatch, every value is
 * expanded against the stage env and the mount is validated (`parseMount` with an expander).
 * https://docs.docker.com/reference/dockerfile/#run---mount
 */
import { TsbuildError } from '../errors.js';

export type MountType = 'bind' | 'cache' | 'tmpfs' | 'secret' | 'ssh';
export type CacheSharing = 'shared' | 'private' | 'locked';

/** A parsed mount, values expanded; `from` still a name (resolved by the caller). */
export interface ParsedMount {
  readonly type: MountType;
  /** Stage name, image reference, or absent (build context; an empty dir for cache mounts). */
  readonly from?: string;
  readonly source?: string;
  readonly target?: string;
  readonly readOnly: boolean;
  /** `id=` (cache id, secret id, ssh id). */
  readonly id?: string;
  readonly sharing?: CacheSharing;
  readonly required: boolean;
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  /** `env=` of secret mounts: expose the secret as this environment variable. */
  readonly env?: string;
}

const TYPES: readonly MountType[] = ['bind', 'cache', 'tmpfs', 'secret', 'ssh'];
const SHARING: readonly CacheSharing[] = ['shared', 'private', 'locked'];

/** A mount problem; the caller adds the location. */
export class MountError extends Error {}

/**
 * Go encoding/csv Reader.Read of the first record (default options: `,` separator, `"` quotes
 * with `""` as an escaped quote, no lazy quotes, leading spaces kept).
 */
function readCsvRecord(text: string): string[] {
  const line = text.split('\n')[0]?.replace(/\r$/, '') ?? '';
  const fields: string[] = [];
  let i = 0;
  for (;;) {
    if (line[i] === '"') {
      let field = '';
      i++;
      for (;;) {
        const q = line.indexOf('"', i);
        if (q < 0) throw new MountError('failed to parse csv mounts: extraneous or missing " in quoted-field');
        field += line.slice(i, q);
        i = q + 1;
        if (line[i] === '"') {
          field += '"';
          i++;
          continue;
        }
        break;
      }
      if (i < line.length && line[i] !== ',') {
        throw new MountError('failed to parse csv mounts: extraneous or missing " in quoted-field');
      }
      fields.push(field);
    } else {
      const comma = line.indexOf(',', i);
      const field = comma < 0 ? line.slice(i) : line.slice(i, comma);
      if (field.includes('"')) throw new MountError('failed to parse csv mounts: bare " in non-quoted-field');
      fields.push(field);
      i = comma < 0 ? line.length : comma;
    }
    if (i >= line.length) break;
    i++; // the comma
    if (i >= line.length) {
      fields.push('');
      break;
    }
  }
  return fields;
}

/** Parse-time view: the `from=` of each mount, or undefined (runMountPostHook, no expander). */
export function mountSourceNames(value: string): string | undefined {
  let from: string | undefined;
  for (const field of readCsvRecord(value)) {
    const eq = field.indexOf('=');
    if (eq < 0) continue;
    if (field.slice(0, eq).toLowerCase() !== 'from') continue;
    const v = field.slice(eq + 1);
    if (/\$./.test(v)) throw new MountError("'from' doesn't support variable expansion, define alias stage instead");
    from = v;
  }
  return from === '' ? undefined : from;
}

const parseUint = (value: string, base: 8 | 10): number | undefined => {
  const re = base === 8 ? /^[0-7]+$/ : /^[0-9]+$/;
  if (!re.test(value)) return undefined;
  const n = parseInt(value, base);
  return n <= 0xffffffff ? n : undefined;
};

const parseBool = (value: string): boolean | undefined => {
  // Go strconv.ParseBool
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  return undefined;
};

/** Dispatch-time parse with every value expanded (parseMount with an expander). */
export function parseMount(value: string, expand: (word: string) => string): ParsedMount {
  let type: MountType = 'bind';
  let from: string | undefined;
  let source: string | undefined;
  let target: string | undefined;
  let readOnly = false;
  let roAuto = true;
  let id: string | undefined;
  let sharing: CacheSharing | undefined;
  let required = false;
  let mode: number | undefined;
  let uid: number | undefined;
  let gid: number | undefined;
  let env: string | undefined;

  for (const field of readCsvRecord(value)) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).toLowerCase();
    if (eq < 0) {
      if (key === 'readonly' || key === 'ro') {
        readOnly = true;
        roAuto = false;
        continue;
      }
      if (key === 'readwrite' || key === 'rw') {
        readOnly = false;
        roAuto = false;
        continue;
      }
      if (key === 'required') {
        if (type === 'secret' || type === 'ssh') {
          required = true;
          continue;
        }
        throw new MountError(`unexpected key '${key}' for mount type '${type}'`);
      }
      throw new MountError(`invalid field '${field}' must be a key=value pair`);
    }
    const v = expand(field.slice(eq + 1));
    switch (key) {
      case 'type': {
        const t = TYPES.find((x) => x === v.toLowerCase());
        if (t === undefined) throw new MountError(`unsupported mount type ${JSON.stringify(v)}`);
        type = t;
        break;
      }
      case 'from':
        from = v;
        break;
      case 'source':
      case 'src':
        source = v;
        break;
      case 'target':
      case 'dst':
      case 'destination':
        target = v;
        break;
      case 'readonly':
      case 'ro': {
        const b = parseBool(v);
        if (b === undefined) throw new MountError(`invalid value for ${key}: ${v}`);
        readOnly = b;
        roAuto = false;
        break;
      }
      case 'readwrite':
      case 'rw': {
        const b = parseBool(v);
        if (b === undefined) throw new MountError(`invalid value for ${key}: ${v}`);
        readOnly = !b;
        roAuto = false;
        break;
      }
      case 'required': {
        if (type !== 'secret' && type !== 'ssh') throw new MountError(`unexpected key '${key}' for mount type '${type}'`);
        const b = parseBool(v);
        if (b === undefined) throw new MountError(`invalid value for ${key}: ${v}`);
        required = b;
        break;
      }
      case 'id':
        id = v;
        break;
      case 'sharing': {
        const s = SHARING.find((x) => x === v.toLowerCase());
        if (s === undefined) throw new MountError(`unsupported sharing value ${JSON.stringify(v)}`);
        sharing = s;
        break;
      }
      case 'mode':
        mode = parseUint(v, 8);
        if (mode === undefined) throw new MountError(`invalid value ${v} for mode`);
        break;
      case 'uid':
        uid = parseUint(v, 10);
        if (uid === undefined) throw new MountError(`invalid value ${v} for uid`);
        break;
      case 'gid':
        gid = parseUint(v, 10);
        if (gid === undefined) throw new MountError(`invalid value ${v} for gid`);
        break;
      case 'env':
        env = v;
        break;
      default:
        throw new MountError(`unexpected key '${key}' in '${field}'`);
    }
  }

  const fileInfoAllowed = type === 'secret' || type === 'ssh' || type === 'cache';
  if (mode !== undefined && !fileInfoAllowed) throw new MountError(`mode not allowed for ${JSON.stringify(type)} type mounts`);
  if (uid !== undefined && !fileInfoAllowed) throw new MountError(`uid not allowed for ${JSON.stringify(type)} type mounts`);
  if (gid !== undefined && !fileInfoAllowed) throw new MountError(`gid not allowed for ${JSON.stringify(type)} type mounts`);
  if (roAuto) readOnly = !(type === 'cache' || type === 'tmpfs');
  if (sharing !== undefined && type !== 'cache') throw new MountError(`invalid cache sharing set for ${type} mount`);
  if (type === 'secret') {
    if (from !== undefined && from !== '') throw new MountError('secret mount should not have a from');
    if (sharing !== undefined) throw new MountError('secret mount should not define sharing');
    if (source !== undefined && source !== '' && id !== undefined && id !== '') {
      throw new MountError("both source and id can't be set");
    }
  }
  return {
    type,
    ...(from === undefined || from === '' ? {} : { from }),
    ...(source === undefined ? {} : { source }),
    ...(target === undefined ? {} : { target }),
    readOnly,
    ...(id === undefined ? {} : { id }),
    ...(sharing === undefined ? {} : { sharing }),
    required,
    ...(mode === undefined ? {} : { mode }),
    ...(uid === undefined ? {} : { uid }),
    ...(gid === undefined ? {} : { gid }),
    ...(env === undefined ? {} : { env }),
  };
}

/** Wraps a MountError into the located instruction error. */
export function mountError(e: unknown, location: TsbuildError['location']): unknown {
  if (e instanceof MountError) {
    return new TsbuildError('DOCKERFILE_INSTRUCTION', e.message, {
      ...(location === undefined ? {} : { location }),
      hint: 'see https://docs.docker.com/reference/dockerfile/#run---mount',
    });
  }
  return e;
}
