import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import type { Io } from '../io.js';
import { renderError } from '../render-error.js';
import { parseCommand } from './parse.js';

type ParseArgs = Parameters<typeof parseCommand.run>[0];

/**
 * Runs the parse command in-process (its handler and the CLI's error rendering; yargs itself
 * is covered by test/cli.test.ts against the built CLI).
 */
async function run(
  file: string,
  opts: { dump?: boolean; format?: 'dump' | 'json'; input?: string } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough();
  const stdin = new PassThrough();
  let out = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stdin.end(opts.input ?? '');
  const io: Io = {
    stdout,
    stderr: new PassThrough(),
    stdin,
    env: {},
    cwd: os.tmpdir(),
    signal: new AbortController().signal,
  };
  const args = { _: [], $0: 'tsbuild', file, dump: opts.dump ?? false, format: opts.format, logLevel: 'warn' };
  try {
    const ctx: Parameters<typeof parseCommand.run>[1] = {
      io,
      root: os.tmpdir(),
      logger: () => {
        throw new Error('parse does not log');
      },
      store: () => Promise.reject(new Error('parse does not open the store')),
    };
    const code = await parseCommand.run(args as unknown as ParseArgs, ctx);
    return { code, stdout: out, stderr: '' };
  } catch (err) {
    const { text, exitCode } = renderError(err);
    return { code: exitCode, stdout: out, stderr: text };
  }
}

const dirs: string[] = [];
afterAll(async () => {
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
});

async function dockerfile(content: string | Buffer): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'tsbuild-parse-'));
  dirs.push(dir);
  const file = path.join(dir, 'Dockerfile');
  await writeFile(file, content);
  return file;
}

describe('tsbuild parse', () => {
  it('prints the dump by default and with --dump', async () => {
    const file = await dockerfile('FROM a\nRUN echo \\\n  hi\n');
    for (const opts of [{}, { dump: true }, { format: 'dump' as const }]) {
      const r = await run(file, opts);
      expect(r).toEqual({ code: 0, stdout: '(from "a")\n(run "echo   hi")\n', stderr: '' });
    }
  });

  it('reads stdin for - (which yargs hands over as an empty string)', async () => {
    expect((await run('', { input: 'CMD x\n' })).stdout).toBe('(cmd "x")\n');
    const r = await run('-', { input: 'CMD ["a"]\n' });
    expect(r.stdout).toBe('(cmd "a")\n');
  });

  it('prints the tree with line ranges for --format json', async () => {
    const file = await dockerfile('# syntax=x\nFROM a\nRUN <<EOF\nhi\nEOF\n');
    const r = await run(file, { format: 'json' });
    expect(r.code).toBe(0);
    const tree = JSON.parse(r.stdout) as { directives: object; children: { keyword: string; startLine: number; endLine: number }[] };
    expect(tree.directives).toEqual({ escape: '\\', syntax: 'x' });
    expect(tree.children.map((c) => [c.keyword, c.startLine, c.endLine])).toEqual([
      ['from', 2, 2],
      ['run', 3, 5],
    ]);
  });

  it('keeps bytes that are not UTF-8', async () => {
    const file = await dockerfile(Buffer.from([...Buffer.from('RUN a'), 0xff, 0x0a]));
    expect((await run(file)).stdout).toBe('(run "a\\xff")\n');
  });

  it('reports syntax errors as FILE:LINE: message, exit 1', async () => {
    const file = await dockerfile('FROM a\nENV x\n');
    const r = await run(file);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`error: ${file}:2: ENV must have two arguments\n`);
  });

  it('reports a missing file without a stack trace, exit 1', async () => {
    const r = await run('/no/such/Dockerfile');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: cannot read Dockerfile \/no\/such\/Dockerfile: no such file\n/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('rejects --dump together with --format json as a usage error', async () => {
    const file = await dockerfile('FROM a\n');
    expect((await run(file, { dump: true, format: 'json' })).code).toBe(2);
  });
});
