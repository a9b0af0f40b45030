import { TsbuildError } from '../errors.js';

/**
 * The subset of Go's text/template (https://pkg.go.dev/text/template) that docker's
 * `--format` users write: literal text, `{{.Field.Sub}}`, `{{.}}`, string and number
 * literals, function calls (`json`, `join`, `upper`, `lower`, `title`, `len`, `index`,
 * `println`), pipes (`{{.X | json}}`), `{{if}}`/`{{else}}`/`{{end}}`, `{{range}}` and the
 * trim markers `{{-` / `-}}`. Values print as Go's `%v` does: `[a b]` for lists,
 * `map[k:v]` for objects, `<no value>` for a missing field.
 *
 * Pure: parse once with `parseGoTemplate`, then `render(data)` as often as needed.
 * Errors are TsbuildError USAGE (a bad --format is a usage error).
 */
export interface GoTemplate {
  render(data: unknown): string;
}

type Arg =
  | { readonly kind: 'field'; readonly path: readonly string[] } // [] is `.`
  | { readonly kind: 'string'; readonly value: string }
  | { readonly kind: 'number'; readonly value: number }
  | { readonly kind: 'bool'; readonly value: boolean }
  | { readonly kind: 'call'; readonly name: string; readonly args: readonly Arg[] };

/** One pipeline: the first command's value is passed as the last argument of the next. */
type Pipeline = readonly Arg[];

type Node =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'action'; readonly pipe: Pipeline }
  | { readonly kind: 'if'; readonly pipe: Pipeline; readonly then: readonly Node[]; readonly else: readonly Node[] }
  | { readonly kind: 'range'; readonly pipe: Pipeline; readonly body: readonly Node[]; readonly else: readonly Node[] };

const FUNCS: Readonly<Record<string, (args: readonly unknown[]) => unknown>> = {
  json: (a) => JSON.stringify(a[0] ?? null),
  upper: (a) => printValue(a[0]).toUpperCase(),
  lower: (a) => printValue(a[0]).toLowerCase(),
  title: (a) => printValue(a[0]).replace(/\b\w/g, (c) => c.toUpperCase()),
  // docker's join: join LIST SEP
  join: (a) => (Array.isArray(a[0]) ? a[0].map(printValue).join(printValue(a[1] ?? '')) : printValue(a[0])),
  len: (a) => {
    const v = a[0];
    if (typeof v === 'string' || Array.isArray(v)) return v.length;
    if (isObject(v)) return Object.keys(v).length;
    throw fail(`len of ${printValue(v)}`);
  },
  index: (a) => {
    let v = a[0];
    for (const k of a.slice(1)) v = Array.isArray(v) ? v[Number(k)] : isObject(v) ? v[String(k)] : undefined;
    return v;
  },
  println: (a) => `${a.map(printValue).join(' ')}\n`,
};

function fail(msg: string): TsbuildError {
  return new TsbuildError('USAGE', `template: ${msg}`, { hint: "a --format value is a Go template, e.g. '{{.ID}}' or '{{json .Config}}'" });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Go's `%v`. */
export function printValue(v: unknown): string {
  if (v === undefined) return '<no value>';
  if (v === null) return '<nil>';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return `[${v.map(printValue).join(' ')}]`;
  if (isObject(v)) {
    const keys = Object.keys(v).sort();
    return `map[${keys.map((k) => `${k}:${printValue(v[k])}`).join(' ')}]`;
  }
  return String(v);
}

function truthy(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === 0 || v === '') return false;
  if (Array.isArray(v)) return v.length > 0;
  if (isObject(v)) return Object.keys(v).length > 0;
  return true;
}

// ---- lexing of one action ----

function tokenize(src: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '"' || c === '`') {
      let j = i + 1;
      while (j < src.length && src[j] !== c) j += c === '"' && src[j] === '\\' ? 2 : 1;
      if (j >= src.length) throw fail(`unterminated string in {{${src}}}`);
      out.push(src.slice(i, j + 1));
      i = j + 1;
    } else if (c === '|' || c === '(' || c === ')') {
      out.push(c);
      i++;
    } else {
      let j = i;
      while (j < src.length && !/[\s|()"`]/.test(src[j]!)) j++;
      out.push(src.slice(i, j));
      i = j;
    }
  }
  return out;
}

function parseOperand(tokens: string[], pos: { i: number }): Arg {
  const t = tokens[pos.i++];
  if (t === undefined) throw fail('missing value');
  if (t === '(') {
    const inner = parseCommand(tokens, pos);
    if (tokens[pos.i++] !== ')') throw fail('unclosed (');
    return inner;
  }
  if (t === '.') return { kind: 'field', path: [] };
  if (t.startsWith('.')) {
    const path = t.slice(1).split('.');
    if (path.some((p) => !/^[A-Za-z_][A-Za-z0-9_]*$/.test(p))) throw fail(`bad field ${t}`);
    return { kind: 'field', path };
  }
  if (t.startsWith('"')) return { kind: 'string', value: JSON.parse(t) as string };
  if (t.startsWith('`')) return { kind: 'string', value: t.slice(1, -1) };
  if (/^-?\d+(\.\d+)?$/.test(t)) return { kind: 'number', value: Number(t) };
  if (t === 'true' || t === 'false') return { kind: 'bool', value: t === 'true' };
  if (FUNCS[t]) return { kind: 'call', name: t, args: [] };
  throw fail(`function ${JSON.stringify(t)} not defined`);
}

/** A command: an operand, or a function applied to operands. */
function parseCommand(tokens: string[], pos: { i: number }): Arg {
  const first = parseOperand(tokens, pos);
  if (first.kind !== 'call') return first;
  const args: Arg[] = [];
  while (pos.i < tokens.length && tokens[pos.i] !== '|' && tokens[pos.i] !== ')') args.push(parseOperand(tokens, pos));
  return { kind: 'call', name: first.name, args };
}

function parsePipeline(src: string): Pipeline {
  const tokens = tokenize(src);
  if (tokens.length === 0) throw fail('empty action {{}}');
  const pos = { i: 0 };
  const cmds: Arg[] = [parseCommand(tokens, pos)];
  while (pos.i < tokens.length) {
    if (tokens[pos.i] !== '|') throw fail(`unexpected ${JSON.stringify(tokens[pos.i])} in {{${src}}}`);
    pos.i++;
    const next = parseCommand(tokens, pos);
    if (next.kind !== 'call') throw fail(`non-function after | in {{${src}}}`);
    cmds.push(next);
  }
  return cmds;
}

// ---- parsing of the whole template ----

type Token = { readonly kind: 'text'; readonly text: string } | { readonly kind: 'action'; readonly src: string };

function split(text: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const open = text.indexOf('{{', i);
    if (open < 0) {
      out.push({ kind: 'text', text: text.slice(i) });
      break;
    }
    let lit = text.slice(i, open);
    const close = text.indexOf('}}', open + 2);
    if (close < 0) throw fail('unclosed action {{');
    let src = text.slice(open + 2, close);
    if (src.startsWith('- ')) {
      lit = lit.trimEnd();
      src = src.slice(2);
    }
    let end = close + 2;
    if (src.endsWith(' -')) {
      src = src.slice(0, -2);
      const rest = /^\s*/.exec(text.slice(end));
      end += rest?.[0].length ?? 0;
    }
    if (lit !== '') out.push({ kind: 'text', text: lit });
    out.push({ kind: 'action', src: src.trim() });
    i = end;
  }
  return out;
}

function parseNodes(tokens: Token[], pos: { i: number }, inBlock: boolean): { nodes: Node[]; stop: 'end' | 'else' | 'eof' } {
  const nodes: Node[] = [];
  while (pos.i < tokens.length) {
    const t = tokens[pos.i++]!;
    if (t.kind === 'text') {
      nodes.push({ kind: 'text', text: t.text });
      continue;
    }
    if (t.src.startsWith('/*')) continue; // {{/* comment */}}
    const [word] = t.src.split(/\s/, 1);
    if (word === 'end' || word === 'else') {
      if (!inBlock) throw fail(`unexpected {{${word}}}`);
      return { nodes, stop: word };
    }
    if (word === 'if' || word === 'range') {
      const pipe = parsePipeline(t.src.slice(word.length));
      const body = parseNodes(tokens, pos, true);
      let other: Node[] = [];
      if (body.stop === 'else') {
        const e = parseNodes(tokens, pos, true);
        if (e.stop !== 'end') throw fail(`missing {{end}} of {{${word}}}`);
        other = e.nodes;
      } else if (body.stop !== 'end') throw fail(`missing {{end}} of {{${word}}}`);
      nodes.push(word === 'if' ? { kind: 'if', pipe, then: body.nodes, else: other } : { kind: 'range', pipe, body: body.nodes, else: other });
      continue;
    }
    nodes.push({ kind: 'action', pipe: parsePipeline(t.src) });
  }
  return { nodes, stop: 'eof' };
}

// ---- evaluation ----

function evalArg(arg: Arg, dot: unknown, piped: readonly unknown[]): unknown {
  switch (arg.kind) {
    case 'string':
    case 'number':
    case 'bool':
      return arg.value;
    case 'field': {
      let v = dot;
      for (const name of arg.path) {
        if (v === undefined || v === null) return undefined;
        if (!isObject(v)) throw fail(`can't evaluate field ${name} in ${printValue(v)}`);
        v = v[name];
      }
      return v;
    }
    case 'call': {
      const fn = FUNCS[arg.name];
      if (!fn) throw fail(`function ${arg.name} not defined`);
      return fn([...arg.args.map((a) => evalArg(a, dot, [])), ...piped]);
    }
    default: {
      const never: never = arg;
      return never;
    }
  }
}

function evalPipe(pipe: Pipeline, dot: unknown): unknown {
  let value: unknown;
  pipe.forEach((cmd, i) => {
    value = evalArg(cmd, dot, i === 0 ? [] : [value]);
  });
  return value;
}

function renderNodes(nodes: readonly Node[], dot: unknown, out: string[]): void {
  for (const n of nodes) {
    switch (n.kind) {
      case 'text':
        out.push(n.text);
        break;
      case 'action':
        out.push(printValue(evalPipe(n.pipe, dot)));
        break;
      case 'if':
        renderNodes(truthy(evalPipe(n.pipe, dot)) ? n.then : n.else, dot, out);
        break;
      case 'range': {
        const v = evalPipe(n.pipe, dot);
        const items = Array.isArray(v) ? v : isObject(v) ? Object.keys(v).sort().map((k) => v[k]) : [];
        if (items.length === 0) renderNodes(n.else, dot, out);
        for (const item of items) renderNodes(n.body, item, out);
        break;
      }
      default: {
        const never: never = n;
        return never;
      }
    }
  }
}

export function parseGoTemplate(text: string): GoTemplate {
  const tokens = split(text);
  const { nodes } = parseNodes(tokens, { i: 0 }, false);
  return {
    render(data: unknown): string {
      const out: string[] = [];
      renderNodes(nodes, data, out);
      return out.join('');
    },
  };
}

/**
 * docker's `--format` preprocessing (cli/command/formatter): `table` prefix means "with a
 * header row", and the two-character escapes `\t` and `\n` become tab and newline.
 */
export function parseFormatFlag(format: string): { table: boolean; template: string } {
  const table = format.startsWith('table');
  const body = (table ? format.slice('table'.length) : format).trim().replace(/\\t/g, '\t').replace(/\\n/g, '\n');
  return { table, template: body };
}
