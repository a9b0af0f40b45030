/**
 * Dockerfile text -> syntax tree with line ranges, as BuildKit's parser builds it
 * (frontend/dockerfile/parser/parser.go Parse, moby/buildkit @ 73ed6825; the rules in prose are
 * testdata/conformance/parser/FORMAT.md, and the conformance suite pins them).
 *
 * Contract:
 * - Pure: text or bytes in, tree out; no I/O.
 * - Never hangs and never throws anything but TsbuildError, always with a location:
 *   DOCKERFILE_EMPTY for a file without instructions, DOCKERFILE_SYNTAX otherwise.
 * - Nothing is expanded or unquoted here beyond what BuildKit's parser does (flags lose their
 *   quotes, exec-form JSON is decoded); expansion belongs to the shell lexer and the planner.
 * - Strings in the tree are ordinary JS strings. A byte of the file that is not part of valid
 *   UTF-8 is kept as the lone surrogate U+DC00+byte, so `dumpDockerfile` prints it as `\xNN`
 *   like BuildKit; see go-text.ts.
 */
import { TsbuildError } from '../errors.js';
import type { SourceLocation } from '../errors.js';
import { newDirectiveState, offerDirectiveLine } from './directives.js';
import { bytesToByteString, fromByteString, toByteString, trimLeftSpace } from './go-text.js';
import { heredocLexFailure, heredocsFromLine } from './heredoc.js';
import type { Heredoc } from './heredoc.js';
import { isLineParseError, parseArguments, splitCommand } from './line-parsers.js';

export type { Heredoc } from './heredoc.js';

export type EscapeToken = '\\' | '`';

/** One instruction of the file (BuildKit's parser.Node, flattened). */
export interface Node {
  /** The instruction word as written, lower-cased (`Run` -> `run`); unknown words are kept. */
  readonly keyword: string;
  /** The logical line: continuation lines joined, comments inside it dropped. */
  readonly original: string;
  /** Raw `--name=value` flags in order, quotes and escapes already removed by the parser. */
  readonly flags: readonly string[];
  /** The arguments exactly as the dump prints them (empty for ONBUILD: see `next`). */
  readonly args: readonly string[];
  /** True when the arguments were written in exec (JSON array) form. */
  readonly json: boolean;
  /** ONBUILD's nested instruction (same lines as its parent; heredocs stay on the parent). */
  readonly next?: Node;
  /** Here-documents of RUN/COPY/ADD (and ONBUILD of those), in marker order. */
  readonly heredocs: readonly Heredoc[];
  /** First physical line, 1-based. */
  readonly startLine: number;
  /** Last physical line, 1-based, inclusive; includes continuation and heredoc body lines. */
  readonly endLine: number;
  /** Set when a blank line sat inside the continuation (BuildKit's NoEmptyContinuation). */
  readonly emptyContinuation?: true;
  /**
   * The comment lines right above the instruction (text after `#`, trimmed), as BuildKit keeps
   * them for stage and ARG descriptions; a blank line or an empty `#` clears them. Absent when none.
   */
  readonly comments?: readonly string[];
}

export interface Directives {
  readonly escape: EscapeToken;
  readonly syntax?: string;
  readonly check?: string;
}

export interface ParsedDockerfile {
  /** The name the caller gave; used in every location. */
  readonly file: string;
  readonly directives: Directives;
  /** The 1-based line of each directive given, for errors about its value. */
  readonly directiveLines: Readonly<Partial<Record<keyof Directives, number>>>;
  readonly escapeToken: EscapeToken;
  readonly children: readonly Node[];
}

export interface ParseOptions {
  /** The file name used in locations (a path as the user wrote it, or `<stdin>`). */
  readonly file: string;
}

/** bufio.MaxScanTokenSize - 1: BuildKit's scanner gives up on longer physical lines. */
const MAX_LINE_BYTES = 65535;

const BOM = '\xef\xbb\xbf';

/** A node while parsing: byte strings, before conversion to the public shape. */
interface RawNode {
  readonly value: string;
  readonly original: string;
  readonly flags: string[];
  readonly args: string[];
  readonly json: boolean;
  next?: RawNode;
}

/** bytes.TrimRight(s, "\r\n"). */
function trimNewline(s: string): string {
  let end = s.length;
  while (end > 0) {
    const c = s.charCodeAt(end - 1);
    if (c !== 0x0a && c !== 0x0d) break;
    end--;
  }
  return end === s.length ? s : s.slice(0, end);
}

function isComment(s: string): boolean {
  return trimLeftSpace(s).startsWith('#');
}

/**
 * The line-continuation test (BuildKit's lineContinuationRegex
 * `([^E])E[ \t]*$|^E[ \t]*$` for escape E): the line ends in the escape character plus
 * optional blanks, and that escape is not itself escaped. Returns the line without them.
 */
function trimContinuation(line: string, escape: number): [string, boolean] {
  let end = line.length;
  while (end > 0) {
    const c = line.charCodeAt(end - 1);
    if (c !== 0x20 && c !== 0x09) break;
    end--;
  }
  if (end === 0 || line.charCodeAt(end - 1) !== escape) return [line, true];
  if (end >= 2 && line.charCodeAt(end - 2) === escape) return [line, true];
  return [line.slice(0, end - 1), false];
}

/**
 * newNodeFromLine, with ONBUILD's recursion unrolled so that `ONBUILD ONBUILD ...` nested
 * thousands deep cannot exhaust the stack.
 */
function newNodeFromLine(line: string, escape: number): RawNode {
  const chain: RawNode[] = [];
  let current = line;
  for (;;) {
    const { cmd, flags, args } = splitCommand(current);
    if (cmd === 'onbuild') {
      chain.push({ value: cmd, original: current, flags, args: [], json: false });
      if (args === '') break;
      current = args;
      continue;
    }
    const parsed = parseArguments(cmd, args, escape);
    chain.push({ value: cmd, original: current, flags, args: parsed.args, json: parsed.json });
    break;
  }
  for (let i = chain.length - 2; i >= 0; i--) {
    const parent = chain[i];
    if (parent !== undefined) parent.next = chain[i + 1];
  }
  const root = chain[0];
  if (root === undefined) throw new Error('unreachable: empty node chain');
  return root;
}

const HEREDOC_KEYWORDS = new Set(['add', 'copy', 'run']);

/** canContainHeredoc: RUN/COPY/ADD not in JSON form, also one level inside ONBUILD. */
function canContainHeredoc(node: RawNode): boolean {
  let n = node;
  if (n.value === 'onbuild' && n.next !== undefined) n = n.next;
  return HEREDOC_KEYWORDS.has(n.value) && !n.json;
}

function toPublic(raw: RawNode, heredocs: readonly Heredoc[], startLine: number, endLine: number, notes: { emptyContinuation: boolean; comments: readonly string[] }): Node {
  const chain: RawNode[] = [];
  for (let n: RawNode | undefined = raw; n !== undefined; n = n.next) chain.push(n);
  let inner: Node | undefined;
  for (let i = chain.length - 1; i >= 0; i--) {
    const n = chain[i] as RawNode;
    const node: Node = {
      keyword: fromByteString(n.value),
      original: fromByteString(n.original),
      flags: n.flags.map(fromByteString),
      args: n.args.map(fromByteString),
      json: n.json,
      ...(inner === undefined ? {} : { next: inner }),
      heredocs: i === 0 ? heredocs : [],
      startLine,
      endLine,
      ...(i === 0 && notes.emptyContinuation ? { emptyContinuation: true as const } : {}),
      ...(i === 0 && notes.comments.length > 0 ? { comments: notes.comments.map(fromByteString) } : {}),
    };
    inner = node;
  }
  return inner as Node;
}

/**
 * Parses a Dockerfile. `input` is the file's bytes (preferred: bytes that are not UTF-8 are
 * kept) or its text.
 */
export function parseDockerfile(input: string | Uint8Array, opts: ParseOptions): ParsedDockerfile {
  const { file } = opts;
  const src = typeof input === 'string' ? toByteString(input) : bytesToByteString(input);
  const at = (startLine: number, endLine: number): SourceLocation => ({
    file,
    startLine: Math.max(1, startLine),
    endLine: Math.max(1, startLine, endLine),
  });
  const syntax = (message: string, startLine: number, endLine = startLine): TsbuildError =>
    new TsbuildError('DOCKERFILE_SYNTAX', message, { location: at(startLine, endLine) });

  // The physical-line scanner: lines end at \n (kept, like BuildKit's scanLines). A line of
  // more than MAX_LINE_BYTES bytes stops the scan, as bufio.ErrTooLong does; the error is
  // reported once everything before it has been parsed.
  let pos = 0;
  let tooLong = false;
  const scan = (): string | undefined => {
    if (tooLong || pos >= src.length) return undefined;
    const nl = src.indexOf('\n', pos);
    const end = nl < 0 ? src.length : nl;
    if (end - pos > MAX_LINE_BYTES) {
      tooLong = true;
      return undefined;
    }
    const token = src.slice(pos, nl < 0 ? end : nl + 1);
    pos = nl < 0 ? src.length : nl + 1;
    return token;
  };

  const directives = newDirectiveState();
  const directiveLines: Partial<Record<keyof Directives, number>> = {};
  let escape = 0x5c;

  /** processLine: strip the line ending (and leading blanks), feed the directive parser. */
  const processLine = (token: string, stripLeft: boolean, lineNo: number): string => {
    let t = trimNewline(token);
    if (stripLeft) t = trimLeftSpace(t);
    const offered = offerDirectiveLine(directives, t);
    if (offered.error !== undefined) throw syntax(offered.error.message, lineNo);
    if (offered.directive !== undefined) directiveLines[offered.directive] = lineNo;
    if (offered.directive === 'escape') {
      const value = directives.values.get('escape') ?? '';
      if (value !== '\\' && value !== '`') {
        throw syntax(`invalid escape token '${value}' does not match \` or \\`, lineNo);
      }
      escape = value.charCodeAt(0);
    }
    return isComment(t) ? '' : t;
  };

  const children: Node[] = [];
  let currentLine = 0;
  // Comment lines since the last instruction or blank line (descriptions, for the checks).
  let comments: string[] = [];
  for (;;) {
    let token = scan();
    if (token === undefined) break;
    if (currentLine === 0 && token.startsWith(BOM)) token = token.slice(BOM.length);
    const bare = trimLeftSpace(trimNewline(token));
    if (bare.startsWith('#')) {
      const text = bare.slice(1).trim();
      if (text === '') comments = [];
      else comments.push(text);
    } else if (bare === '') {
      comments = [];
    }
    const first = processLine(token, true, currentLine + 1);
    currentLine++;
    const startLine = currentLine;
    let [line, endOfLine] = trimContinuation(first, escape);
    if (endOfLine && line === '') continue;
    let emptyContinuation = false;

    let logical = line;
    while (!endOfLine) {
      const next = scan();
      if (next === undefined) break;
      const processed = processLine(next, false, currentLine + 1);
      currentLine++;
      // Comment lines inside a continuation are dropped; so are blank ones (BuildKit warns).
      if (isComment(next)) continue;
      if (trimLeftSpace(processed) === '') {
        emptyContinuation = true;
        continue;
      }
      [line, endOfLine] = trimContinuation(processed, escape);
      logical += line;
    }

    let raw: RawNode;
    try {
      raw = newNodeFromLine(logical, escape);
    } catch (e) {
      if (isLineParseError(e)) throw syntax(e.lineParseError, startLine, currentLine);
      throw e;
    }

    const heredocs: Heredoc[] = [];
    if (canContainHeredoc(raw) && logical.includes('<<')) {
      let markers;
      try {
        markers = heredocsFromLine(logical);
      } catch (e) {
        const message = heredocLexFailure(e);
        if (message !== undefined) throw syntax(message, startLine, currentLine);
        throw e;
      }
      for (const marker of markers) {
        let content = '';
        let terminated = false;
        for (;;) {
          const body = scan();
          if (body === undefined) break;
          currentLine++;
          let candidate = trimNewline(body);
          if (marker.chomp) candidate = candidate.replace(/^\t+/, '');
          if (candidate === marker.name) {
            terminated = true;
            break;
          }
          content += body;
        }
        if (!terminated) throw syntax('unterminated heredoc', startLine, currentLine);
        heredocs.push({
          name: fromByteString(marker.name),
          content: fromByteString(content),
          expand: marker.expand,
          chomp: marker.chomp,
          ...(marker.fileDescriptor === undefined ? {} : { fileDescriptor: marker.fileDescriptor }),
        });
      }
    }
    children.push(toPublic(raw, heredocs, startLine, currentLine, { emptyContinuation, comments }));
    comments = [];
  }

  if (tooLong) {
    throw syntax(`dockerfile line greater than max allowed size of ${MAX_LINE_BYTES}`, currentLine + 1);
  }
  if (children.length === 0) {
    throw new TsbuildError('DOCKERFILE_EMPTY', 'file with no instructions', {
      location: at(currentLine, currentLine),
      hint: 'a Dockerfile needs at least one instruction, usually FROM',
    });
  }

  const escapeToken: EscapeToken = escape === 0x60 ? '`' : '\\';
  const syntaxValue = directives.values.get('syntax');
  const checkValue = directives.values.get('check');
  return {
    file,
    directives: {
      escape: escapeToken,
      ...(syntaxValue === undefined ? {} : { syntax: syntaxValue }),
      ...(checkValue === undefined ? {} : { check: checkValue }),
    },
    directiveLines,
    escapeToken,
    children,
  };
}
