import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);
const bin = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'cmd', 'tsbuild.js');

async function tsbuild(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args]);
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

// The compiled CLI (npm run build), exactly as users run it.
describe('tsbuild CLI shell', () => {
  it('prints its version', async () => {
    const r = await tsbuild('--version');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('prints help listing commands, exit 0', async () => {
    const r = await tsbuild('--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('tsbuild parse');
  });

  it('exits 2 with a short message for an unknown command', async () => {
    const r = await tsbuild('frobnicate');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^error: /);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('exits 2 for an unknown flag', async () => {
    const r = await tsbuild('parse', 'Dockerfile', '--no-such-flag');
    expect(r.code).toBe(2);
  });

  it('exits 2 with no command', async () => {
    const r = await tsbuild();
    expect(r.code).toBe(2);
  });

  it('has --help on every command', async () => {
    const top = await tsbuild('--help');
    const names = [...top.stdout.matchAll(/^\s+tsbuild (\S+)/gm)].map((m) => m[1]!);
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) {
      const r = await tsbuild(name, '--help');
      expect(r.code, name).toBe(0);
      expect(r.stdout, name).toContain(`tsbuild ${name}`);
    }
  });

  it("answers to docker's management spellings (image ls, system df)", async () => {
    const root = await import('node:fs/promises').then((fs) => fs.mkdtemp('/tmp/tsbuild-cli-'));
    const ls = await run(process.execPath, [bin, '--root', root, 'image', 'ls']);
    expect(ls.stdout).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID/);
    const df = await run(process.execPath, [bin, '--root', root, 'system', 'df']);
    expect(df.stdout).toMatch(/^TYPE\s+TOTAL/);
    await import('node:fs/promises').then((fs) => fs.rm(root, { recursive: true, force: true }));
  });
});
