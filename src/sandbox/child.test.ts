import { describe, expect, it } from 'vitest';
import { Readable } from 'node:stream';
import { captureChild, runChild } from './child.js';
import { runtimeConfig } from './runc-runner.js';
import type { RunSpec } from './types.js';

// stdin passthrough (`tsbuild run -i`) and the read-only root (`tsbuild run --read-only`).
describe('runChild stdin', () => {
  it('pipes the given stream to the child and ends it', async () => {
    const out: Buffer[] = [];
    const r = await runChild('cat', [], { stdin: Readable.from([Buffer.from('line 1\n'), Buffer.from('line 2\n')]), stdout: (c) => out.push(c) });
    expect(r.exitCode).toBe(0);
    expect(Buffer.concat(out).toString()).toBe('line 1\nline 2\n');
  });

  it('gives /dev/null without one, and survives a child that ignores its input', async () => {
    expect((await captureChild('cat', [])).stdout).toBe('');
    const big = Readable.from((function* () {
      for (let i = 0; i < 1000; i++) yield Buffer.alloc(64 * 1024, 'x');
    })());
    const r = await runChild('true', [], { stdin: big });
    expect(r.exitCode).toBe(0);
  });
});

describe('read-only root', () => {
  it('runc: root.readonly follows readonlyRoot', () => {
    const step: RunSpec = { rootfs: { dir: '/x' }, args: ['true'], env: [], cwd: '/', user: { uid: 0, gid: 0 }, network: 'host' };
    expect((runtimeConfig(step, '/x', false).root as { readonly: boolean }).readonly).toBe(false);
    expect((runtimeConfig({ ...step, readonlyRoot: true }, '/x', false).root as { readonly: boolean }).readonly).toBe(true);
  });
});
