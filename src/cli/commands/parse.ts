import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { defineCommand } from '../command.js';
import { TsbuildError } from '../../errors.js';
import { dumpDockerfile, parseDockerfile } from '../../dockerfile/index.js';
import type { Node, ParsedDockerfile } from '../../dockerfile/index.js';

/** The name used in locations when the Dockerfile comes from stdin. */
const STDIN_NAME = '<stdin>';

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks);
}

/** Reads the Dockerfile as bytes (bytes that are not UTF-8 must survive for the dump). */
async function readDockerfile(file: string, stdin: Readable, cwd: string, signal: AbortSignal): Promise<Buffer> {
  if (file === '-') return readAll(stdin);
  try {
    return await readFile(path.resolve(cwd, file), { signal });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ABORT_ERR') throw err;
    const reason =
      code === 'ENOENT' || code === 'ENOTDIR'
        ? 'no such file'
        : code === 'EISDIR'
          ? 'is a directory'
          : code === 'EACCES'
            ? 'permission denied'
            : ((err as Error).message ?? String(err));
    throw new TsbuildError('DOCKERFILE_NOT_FOUND', `cannot read Dockerfile ${file}: ${reason}`, {
      cause: err,
      hint: 'give the path of a Dockerfile, or - to read it from stdin',
    });
  }
}

/** Indents every line but the first (for JSON pasted into an indented position). */
const indent = (json: string, pad: string): string => json.replaceAll('\n', `\n${pad}`);

/**
 * One node as JSON. ONBUILD chains can nest thousands deep, deeper than JSON.stringify's
 * recursion allows, so `next` is spliced in from the innermost node outwards.
 */
function nodeJson(node: Node): string {
  const chain: Node[] = [];
  for (let n: Node | undefined = node; n !== undefined; n = n.next) chain.push(n);
  let inner: string | undefined;
  for (let i = chain.length - 1; i >= 0; i--) {
    const { next: _next, ...fields } = chain[i] as Node;
    const own = JSON.stringify(fields, null, 2);
    // Nested levels are not re-indented: that would make deep chains quadratic in size.
    inner = inner === undefined ? own : `${own.slice(0, -2)},\n  "next": ${inner}\n}`;
  }
  return inner ?? '{}';
}

function treeJson(parsed: ParsedDockerfile): string {
  const head = JSON.stringify(
    { file: parsed.file, directives: parsed.directives, escapeToken: parsed.escapeToken },
    null,
    2,
  );
  const children = parsed.children.map((c) => `    ${indent(nodeJson(c), '    ')}`).join(',\n');
  return `${head.slice(0, -2)},\n  "children": [\n${children}\n  ]\n}\n`;
}

/**
 * `tsbuild parse [--dump] [--format dump|json] FILE`
 *
 * dump (default): BuildKit's parser dump, one `(keyword ["--flag"] "arg" ...)` line per
 * instruction (testdata/conformance/parser/FORMAT.md).
 *
 * json: the syntax tree (ParsedDockerfile) as JSON:
 *   { file, escapeToken, directives: { escape, syntax?, check? },
 *     children: [{ keyword, original, flags[], args[], json, next?, heredocs[], startLine, endLine }] }
 * where heredocs are { name, content, expand, chomp, fileDescriptor? } and lines are 1-based,
 * inclusive. Bytes that are not UTF-8 appear as lone surrogates \udc80..\udcff.
 *
 * Syntax errors leave with their location (`error: FILE:LINE: message`) and exit code 1.
 */
export const parseCommand = defineCommand({
  builder: (y) =>
    y
      .positional('file', { type: 'string', demandOption: true, describe: 'Dockerfile path, or - for stdin' })
      .option('dump', { type: 'boolean', default: false, describe: "Print BuildKit's parser dump format" })
      .option('format', { choices: ['dump', 'json'] as const, describe: 'Output format (default: dump)' }),
  run: async (args, ctx) => {
    const format = args.format ?? 'dump';
    if (args.dump && format !== 'dump') {
      throw new TsbuildError('USAGE', '--dump and --format json contradict each other');
    }
    // yargs-parser reads a lone "-" as an empty string (it treats it like an option), so an
    // empty FILE means stdin too; no real path is empty.
    const file = args.file === '' ? '-' : args.file;
    const bytes = await readDockerfile(file, ctx.io.stdin, ctx.io.cwd, ctx.io.signal);
    const parsed = parseDockerfile(bytes, { file: file === '-' ? STDIN_NAME : file });
    ctx.io.stdout.write(format === 'json' ? treeJson(parsed) : dumpDockerfile(parsed));
    return 0;
  },
});
