/**
 * Instruction flags (`--from=x`, `--link`, `--mount=...`), validated per instruction like
 * BuildKit's BFlags (frontend/dockerfile/instructions/bflag.go): unknown flags, missing values,
 * non-boolean values of boolean flags and repeated single-valued flags are errors.
 */
import { withSuggestion } from './suggest.js';

/** bool: `--x`, `--x=true|false`; string: `--x=v` once; strings: `--x=v`, repeatable. */
export type FlagType = 'bool' | 'string' | 'strings';

export type FlagSpec = Readonly<Record<string, FlagType>>;

export interface ParsedFlags {
  bool(name: string): boolean | undefined;
  string(name: string): string | undefined;
  strings(name: string): string[];
}

/** Parses raw `--name[=value]` flags against `spec`; throws `{ flagError }` on problems. */
export function parseFlags(raw: readonly string[], spec: FlagSpec): ParsedFlags {
  const bools = new Map<string, boolean>();
  const strings = new Map<string, string>();
  const lists = new Map<string, string[]>();
  const used = new Set<string>();
  for (const arg of raw) {
    if (!arg.startsWith('--')) throw flagError(`arg should start with -- : ${arg}`);
    const body = arg.slice(2);
    const eq = body.indexOf('=');
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const value = eq >= 0 ? body.slice(eq + 1) : '';
    const flagType = Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (flagType === undefined) {
      throw flagError(withSuggestion(`unknown flag: ${name}`, name, Object.keys(spec), true));
    }
    if (used.has(name) && flagType !== 'strings') throw flagError(`duplicate flag specified: ${name}`);
    used.add(name);
    switch (flagType) {
      case 'bool': {
        if (eq >= 0 && value === '') throw flagError(`missing a value on flag: ${name}`);
        const lower = value.toLowerCase();
        if (lower === '' || lower === 'true') bools.set(name, true);
        else if (lower === 'false') bools.set(name, false);
        else throw flagError(`expecting boolean value for flag ${name}, not: ${value}`);
        break;
      }
      case 'string':
        if (eq < 0) throw flagError(`missing a value on flag: ${name}`);
        strings.set(name, value);
        break;
      case 'strings': {
        if (eq < 0) throw flagError(`missing a value on flag: ${name}`);
        const list = lists.get(name) ?? [];
        list.push(value);
        lists.set(name, list);
        break;
      }
      default:
        flagType satisfies never;
    }
  }
  return {
    bool: (name) => bools.get(name),
    string: (name) => strings.get(name),
    strings: (name) => lists.get(name) ?? [],
  };
}

export interface FlagError {
  readonly flagError: string;
}

function flagError(message: string): FlagError {
  return { flagError: message };
}

export function isFlagError(e: unknown): e is FlagError {
  return typeof e === 'object' && e !== null && typeof (e as { flagError?: unknown }).flagError === 'string';
}
