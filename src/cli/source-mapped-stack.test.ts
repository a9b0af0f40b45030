import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { pathToFileURL } from 'node:url';
import { transform } from 'esbuild';
import { sourceMappedStack } from './source-mapped-stack.js';

// A real compiled module with a linked source map (as esbuild writes the bundle), made to
// throw in a plain node process (vitest maps stacks itself), so the stack is one V8 produced.
const SOURCE = ['// line 1', 'interface Unused { a: number }', '', 'export function explode(): never {', "  throw new TypeError('boom');", '}', ''].join('\n');

let dir: string;
let compiled: string;
beforeAll(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-stack-'));
  const out = await transform(SOURCE, { loader: 'ts', format: 'esm', sourcemap: 'external', sourcefile: 'explode.ts' });
  compiled = path.join(dir, 'explode.js');
  await fs.writeFile(path.join(dir, 'explode.ts'), SOURCE);
  await fs.writeFile(compiled, `${out.code}//# sourceMappingURL=explode.js.map\n`);
  await fs.writeFile(`${compiled}.map`, out.map);
});
afterAll(async () => {
  await fs.rm(dir, { recursive: true, force: true });
});

async function rawStack(): Promise<string> {
  const script = `import(${JSON.stringify(pathToFileURL(compiled).href)}).then((m) => m.explode()).catch((e) => process.stdout.write(e.stack))`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
  return stdout;
}

describe('sourceMappedStack', () => {
  it('points frames of compiled code at the source line', async () => {
    const stack = await rawStack();
    expect(stack).toContain(`${pathToFileURL(compiled).href}:`);
    const mapped = sourceMappedStack(stack);
    expect(mapped).toContain(`${path.join(dir, 'explode.ts')}:5:`);
    expect(mapped).not.toContain(pathToFileURL(compiled).href);
  });

  it('leaves frames without a map alone', () => {
    const stack = 'Error: x\n    at f (file:///nonexistent/dir/a.js:3:7)\n    at node:internal/process/task_queues:95:5';
    expect(sourceMappedStack(stack)).toBe(stack);
  });
});
