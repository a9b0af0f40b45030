/**
 * .dockerignore with Docker's semantics.
 *
 * - Reading the file: moby/patternmatcher ignorefile.ReadAll
 *   (https://github.com/moby/patternmatcher/blob/main/ignorefile/ignorefile.go).
 * - Patterns and matching: moby/patternmatcher New / MatchesOrParentMatches /
 *   MatchesUsingParentResults (https://github.com/moby/patternmatcher/blob/main/patternmatcher.go).
 * - Which directories a walk must still enter: tonistiigi/fsutil filterFS.Walk
 *   (https://github.com/tonistiigi/fsutil/blob/master/filter.go).
 * - Which file is read: BuildKit's dockerui prefers `<Dockerfile name>.dockerignore` next to
 *   the Dockerfile over `<context>/.dockerignore`.
 *
 * The conformance tables in testdata/conformance/dockerignore pin the behaviour.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { TsbuildError } from '../errors.js';
import { BadPatternError, goClean, goDir, goFilepathMatch, goTrimSpace } from './go-path.js';
import { compileGoRegexp, GoRegexpError } from './go-regexp.js';

export interface IgnorePattern {
  /** The cleaned pattern without its `!` (what patternmatcher's Pattern.String() returns). */
  readonly pattern: string;
  /** True for a `!` exception: a path it matches is put back into the context. */
  readonly exclusion: boolean;
  /** The pattern as listed after ReadAll's normalisation, `!` included (for messages). */
  readonly text: string;
  /** 1-based line of the ignore file it came from, when it came from one. */
  readonly line?: number;
  /** The ignore file it came from, when known. */
  readonly file?: string;
}

const HINT = 'Fix or remove the pattern; see https://docs.docker.com/build/concepts/context/#dockerignore-files';

function invalid(p: { text: string; line?: number }, file: string | undefined, reason: string): TsbuildError {
  const where = file ?? '.dockerignore';
  const line = p.line === undefined ? '' : ` on line ${p.line}`;
  return new TsbuildError('DOCKERIGNORE_INVALID', `${where}: invalid pattern ${JSON.stringify(p.text)}${line}: ${reason}`, {
    hint: HINT,
  });
}

/**
 * ignorefile.ReadAll: one pattern per line (bufio.ScanLines, so a trailing `\r` is dropped); a
 * UTF-8 BOM on the first line is dropped; a line is a comment only when `#` is its first
 * character; whitespace around a pattern is trimmed; blank lines are skipped; the part after a
 * `!` is trimmed and cleaned (filepath.Clean) and loses one leading `/`.
 */
export function readIgnoreLines(text: string): { text: string; line: number }[] {
  const out: { text: string; line: number }[] = [];
  const lines = text.split('\n');
  // ScanLines yields no final empty line after a trailing newline.
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  lines.forEach((raw, index) => {
    let line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (index === 0 && line.startsWith('\ufeff')) line = line.slice(1);
    if (line.startsWith('#')) return;
    let pattern = goTrimSpace(line);
    if (pattern === '') return;
    const invert = pattern.startsWith('!');
    if (invert) pattern = goTrimSpace(pattern.slice(1));
    if (pattern.length > 0) {
      pattern = goClean(pattern);
      if (pattern.length > 1 && pattern.startsWith('/')) pattern = pattern.slice(1);
    }
    if (invert) pattern = '!' + pattern;
    out.push({ text: pattern, line: index + 1 });
  });
  return out;
}

/**
 * patternmatcher.New over an already-read list: trims and cleans each entry, splits off `!`,
 * rejects a bare `!` and anything filepath.Match calls malformed. Unlike New, it also compiles
 * each pattern now, so a pattern Go would only reject at the first match (`[Local-Only]`, an
 * inverted range) fails here too, naming the file and the pattern.
 */
export function patternsFromList(
  list: readonly (string | { text: string; line?: number })[],
  file?: string,
): IgnorePattern[] {
  const out: IgnorePattern[] = [];
  for (const entry of list) {
    const item = typeof entry === 'string' ? { text: entry } : entry;
    let p = goTrimSpace(item.text);
    if (p === '') continue;
    p = goClean(p);
    let exclusion = false;
    if (p.startsWith('!')) {
      if (p.length === 1) throw invalid(item, file, 'illegal exclusion pattern: "!"');
      exclusion = true;
      p = p.slice(1);
    }
    try {
      goFilepathMatch(p, '.');
    } catch (e) {
      if (e instanceof BadPatternError) throw invalid(item, file, e.message);
      throw e;
    }
    const pattern: IgnorePattern = {
      pattern: p,
      exclusion,
      text: item.text,
      ...(item.line === undefined ? {} : { line: item.line }),
      ...(file === undefined ? {} : { file }),
    };
    compilePattern(pattern);
    out.push(pattern);
  }
  return out;
}

/** Parses .dockerignore text (ReadAll, then New). Throws DOCKERIGNORE_INVALID. */
export function parseDockerignore(text: string, file?: string): IgnorePattern[] {
  return patternsFromList(readIgnoreLines(text), file);
}

type MatchKind = 'exact' | 'prefix' | 'suffix' | 'regexp';

interface CompiledPattern {
  readonly source: IgnorePattern;
  readonly kind: MatchKind;
  readonly regexp: RegExp | undefined;
}

/** Pattern.compile: picks the cheapest way to match and builds the Go regex otherwise. */
function compilePattern(p: IgnorePattern): CompiledPattern {
  const runes = Array.from(p.pattern);
  let k = runes[0] === '\ufeff' ? 1 : 0; // text/scanner skips a leading BOM
  let reg = '^';
  let kind: MatchKind = 'exact';
  for (let i = 0; k < runes.length; i++) {
    const ch = runes[k++] as string;
    if (ch === '*') {
      if (runes[k] === '*') {
        k++;
        // Treat **/ as ** so eat the "/".
        if (runes[k] === '/') k++;
        if (k >= runes.length) {
          // "**" at the end matches everything below, as in .gitignore.
          if (kind === 'exact') {
            kind = 'prefix';
          } else {
            reg += '.*';
            kind = 'regexp';
          }
        } else {
          // Any number of directories, including none.
          reg += '(.*/)?';
          kind = 'regexp';
        }
        if (i === 0) kind = 'suffix';
      } else {
        reg += '[^/]*';
        kind = 'regexp';
      }
    } else if (ch === '?') {
      reg += '[^/]';
      kind = 'regexp';
    } else if ('.+()|{}$'.includes(ch)) {
      reg += '\\' + ch;
    } else if (ch === '\\') {
      if (k < runes.length) {
        reg += '\\' + (runes[k++] as string);
        kind = 'regexp';
      } else {
        reg += '\\';
      }
    } else if (ch === '[' || ch === ']') {
      reg += ch;
      kind = 'regexp';
    } else {
      reg += ch;
    }
  }
  if (kind !== 'regexp') return { source: p, kind, regexp: undefined };
  try {
    return { source: p, kind, regexp: compileGoRegexp(reg + '$') };
  } catch (e) {
    if (e instanceof GoRegexpError) throw invalid(p, p.file, `syntax error in pattern (${e.message})`);
    throw e;
  }
}

function matchOne(p: CompiledPattern, file: string): boolean {
  const cleaned = p.source.pattern;
  switch (p.kind) {
    case 'exact':
      return file === cleaned;
    case 'prefix':
      return file.startsWith(cleaned.slice(0, -2));
    case 'suffix': {
      const suffix = cleaned.slice(2);
      if (file.endsWith(suffix)) return true;
      // "**/foo" matches "foo".
      return suffix.startsWith('/') && file === suffix.slice(1);
    }
    case 'regexp':
      return (p.regexp as RegExp).test(file);
  }
}

/** Whether `p` matches `file` or one of its parent directories. */
function matchOrParent(p: CompiledPattern, file: string, parentDirs: readonly string[] | undefined): boolean {
  if (matchOne(p, file)) return true;
  if (parentDirs === undefined) return false;
  for (let i = 0; i < parentDirs.length; i++) {
    if (matchOne(p, parentDirs.slice(0, i + 1).join('/'))) return true;
  }
  return false;
}

function parentDirsOf(file: string): string[] | undefined {
  const parent = goDir(file);
  return parent === '.' ? undefined : parent.split('/');
}

/** Per-pattern results for a directory, handed to its children (patternmatcher MatchInfo). */
export type MatchInfo = readonly boolean[];

/** The characters that make an exception pattern more than a plain path prefix (fsutil). */
const PATTERN_CHARS = '*[]?^\\';

/** fsutil patternWithoutTrailingGlob: the pattern minus a trailing `/**` or `/*`. */
function withoutTrailingGlob(pattern: string): string {
  let s = pattern;
  if (s.endsWith('/**')) s = s.slice(0, -3);
  if (s.endsWith('/*')) s = s.slice(0, -2);
  return s;
}

const NOTHING_MATCHED: { excluded: boolean; info: MatchInfo } = Object.freeze({ excluded: false, info: Object.freeze([]) });

export class IgnoreMatcher {
  private readonly compiled: CompiledPattern[];
  private readonly hasExceptions: boolean;
  private readonly onlyPrefixExceptions: boolean;

  constructor(patterns: readonly IgnorePattern[]) {
    this.compiled = patterns.map(compilePattern);
    this.hasExceptions = patterns.some((p) => p.exclusion);
    this.onlyPrefixExceptions = !patterns.some(
      (p) => p.exclusion && [...withoutTrailingGlob(p.pattern)].some((c) => PATTERN_CHARS.includes(c)),
    );
  }

  get patterns(): readonly IgnorePattern[] {
    return this.compiled.map((c) => c.source);
  }

  /**
   * MatchesOrParentMatches: true when the path is excluded from the context. Patterns apply in
   * order and the last one that matches the path or one of its parents wins. The context root
   * ("." or "") is never excluded.
   */
  matches(relPath: string): boolean {
    return this.matchingPattern(relPath) !== undefined;
  }

  /** The pattern that excluded `relPath` (the last one that set it excluded), if excluded. */
  matchingPattern(relPath: string): IgnorePattern | undefined {
    const file = goClean(relPath);
    if (file === '.') return undefined;
    const parentDirs = parentDirsOf(file);
    let by: CompiledPattern | undefined;
    for (const p of this.compiled) {
      // An include pattern only matters while not excluded, an exception only while excluded.
      if (p.source.exclusion !== (by !== undefined)) continue;
      if (matchOrParent(p, file, parentDirs)) by = p.source.exclusion ? undefined : p;
    }
    return by?.source;
  }

  /**
   * MatchesUsingParentResults, as fsutil's walker calls it: a pattern that matched the parent
   * directory counts as matching the child without being evaluated again; without parent
   * results (top-level entries) it falls back to the parent-path check of matches().
   * This differs from matches() in corner cases (["d/x", "!d"] excludes d/x here, not there);
   * the walk uses this one because that is what decides what BuildKit sends.
   */
  matchesUsingParent(relPath: string, parent: MatchInfo | undefined): { excluded: boolean; info: MatchInfo } {
    // No patterns (no .dockerignore): nothing to clean, match or allocate, for every entry of a walk.
    if (this.compiled.length === 0) return NOTHING_MATCHED;
    const file = goClean(relPath);
    const info = new Array<boolean>(this.compiled.length).fill(false);
    let matched = false;
    const parentDirs = parent === undefined ? parentDirsOf(file) : undefined;
    this.compiled.forEach((p, i) => {
      let m = parent?.[i] ?? false;
      if (!m) {
        if (p.source.exclusion !== matched) return;
        m = matchOrParent(p, file, parentDirs);
      }
      info[i] = m;
      if (m) matched = !p.source.exclusion;
    });
    return { excluded: matched, info };
  }

  /**
   * Whether a walk must enter the excluded directory `relDir` because an exception could put
   * back something below it (fsutil: always when an exception has glob characters, else when
   * an exception's path lies under the directory). False when there are no exceptions.
   */
  mustDescend(relDir: string): boolean {
    if (!this.hasExceptions) return false;
    if (!this.onlyPrefixExceptions) return true;
    const dirSlash = goClean(relDir) + '/';
    return this.compiled.some((p) => p.source.exclusion && (withoutTrailingGlob(p.source.pattern) + '/').startsWith(dirSlash));
  }
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return new TextDecoder('utf-8').decode(await readFile(file));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new TsbuildError('DOCKERIGNORE_INVALID', `cannot read ${file}: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Finds and parses the ignore file for a build: `<Dockerfile>.dockerignore` next to the
 * Dockerfile wins (for the default Dockerfile that is `<context>/Dockerfile.dockerignore`),
 * else `<context>/.dockerignore`, else no patterns. A relative `dockerfilePath` is taken
 * relative to `contextDir`; callers pass the path the user gave, resolved.
 */
export async function readDockerignore(
  contextDir: string,
  dockerfilePath?: string,
): Promise<{ patterns: IgnorePattern[]; file?: string }> {
  const dockerfile = path.resolve(contextDir, dockerfilePath ?? 'Dockerfile');
  for (const candidate of [`${dockerfile}.dockerignore`, path.join(contextDir, '.dockerignore')]) {
    const text = await readIfExists(candidate);
    if (text !== undefined) return { patterns: parseDockerignore(text, candidate), file: candidate };
  }
  return { patterns: [] };
}
