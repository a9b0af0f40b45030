import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const run = promisify(execFile);
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(repoRoot, 'dist', 'cmd', 'tsbuild.cjs');

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

  it('--log-level sets what the structured log on stderr shows, before or after the command; a bad level exits 2', async () => {
    // A server that is no registry: the pull fails after one logged request.
    const server = http.createServer((_req, res) => {
      res.writeHead(404);
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const ref = `127.0.0.1:${(server.address() as AddressInfo).port}/x:1`;
    const root = await fs.mkdtemp('/tmp/tsbuild-cli-');
    try {
      const logLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { level: number; msg: string });
      const before = await tsbuild('--root', root, '--log-level', 'debug', 'pull', ref);
      expect(before.code).toBe(1);
      expect(logLines(before.stderr).some((l) => l.level === 20)).toBe(true);
      const after = await tsbuild('pull', ref, '--root', root, '--log-level', 'debug');
      expect(logLines(after.stderr).some((l) => l.level === 20)).toBe(true);
      const quiet = await tsbuild('--root', root, 'pull', ref); // default: warn
      expect(quiet.code).toBe(1);
      expect(logLines(quiet.stderr)).toEqual([]);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
      await fs.rm(root, { recursive: true, force: true });
    }
    const bad = await tsbuild('--log-level', 'loud', 'images');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/log-level/);
  });

  it('--root and TSBUILD_ROOT choose the store', async () => {
    const a = await fs.mkdtemp('/tmp/tsbuild-cli-');
    const b = await fs.mkdtemp('/tmp/tsbuild-cli-');
    try {
      await run(process.execPath, [bin, '--root', a, 'images']);
      await run(process.execPath, [bin, 'images'], { env: { ...process.env, TSBUILD_ROOT: b } });
      // Each command opened (and so laid out) the store it was pointed at.
      expect(await fs.readdir(a)).toContain('index.json');
      expect(await fs.readdir(b)).toContain('index.json');
      // --root wins over TSBUILD_ROOT.
      const c = path.join(a, 'nested');
      await run(process.execPath, [bin, 'images', '--root', c], { env: { ...process.env, TSBUILD_ROOT: path.join(b, 'unused') } });
      expect(await fs.readdir(c)).toContain('index.json');
      await expect(fs.access(path.join(b, 'unused'))).rejects.toThrow();
    } finally {
      await fs.rm(a, { recursive: true, force: true });
      await fs.rm(b, { recursive: true, force: true });
    }
  });

  it('shows an internal error with a stack in the TypeScript sources', async () => {
    // A bug is simulated by a preload that makes the first write to stdout throw: `parse`
    // then fails inside its command, which main() reports as an internal error (exit 70).
    const fs = await import('node:fs/promises');
    const dir = await fs.mkdtemp('/tmp/tsbuild-cli-');
    try {
      await fs.writeFile(path.join(dir, 'Dockerfile'), 'FROM scratch\n');
      await fs.writeFile(path.join(dir, 'bug.mjs'), "process.stdout.write = () => { throw new TypeError('simulated bug'); };\n");
      const r = await run(process.execPath, ['--import', path.join(dir, 'bug.mjs'), bin, 'parse', path.join(dir, 'Dockerfile')]).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => e,
      );
      expect(r.code).toBe(70);
      expect(r.stderr).toContain('TypeError: simulated bug');
      // The frame of the parse command's handler, as a line of its source file.
      expect(r.stderr).toMatch(new RegExp(`\\(${path.join(repoRoot, 'src', 'cli', 'commands', 'parse.ts')}:\\d+:\\d+\\)`));
      expect(r.stderr).not.toContain('dist/');
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it("keeps yargs' translations (LC_ALL picks the locale)", async () => {
    const { stdout } = await run(process.execPath, [bin, '--help'], { env: { ...process.env, LC_ALL: 'de_DE.UTF-8' } });
    expect(stdout).toContain('Hilfe anzeigen'); // "Show help"
  });

  it("answers to docker's management spellings (image ls, system df)", async () => {
    const root = await import('node:fs/promises').then((fs) => fs.mkdtemp('/tmp/tsbuild-cli-'));
    const ls = await run(process.execPath, [bin, '--root', root, 'image', 'ls']);
    expect(ls.stdout).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID/);
    const df = await run(process.execPath, [bin, '--root', root, 'system', 'df']);
    expect(df.stdout).toMatch(/^TYPE\s+TOTAL/);
    await import('node:fs/promises').then((fs) => fs.rm(root, { recursive: true, force: true }));
  });

  it('push of an image the store lacks fails at once, though the registry it started to reach does not answer', async () => {
    const dir = await fs.mkdtemp('/tmp/tsbuild-cli-push-');
    // Accepts connections and never answers: the early GET /v2/ would wait for its timeouts.
    const { createServer } = await import('node:net');
    const held: import('node:net').Socket[] = [];
    const server = createServer((sock) => held.push(sock));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const started = Date.now();
      const failed = await run(process.execPath, [path.join(repoRoot, 'dist', 'cmd', 'tsbuild.cjs'), '--root', path.join(dir, 'store'), 'push', 'nosuch:1', `127.0.0.1:${port}/x:1`]).then(
        () => undefined,
        (e: { code: number; stderr: string }) => e,
      );
      expect(failed?.code).toBe(1);
      expect(failed?.stderr).toMatch(/nosuch/);
      expect(held.length).toBeGreaterThan(0); // the registry was being reached
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      for (const s of held) s.destroy();
      server.close();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('a moved dist/ makes its own code caches; a registry command (V8 flags changed while it ran) writes one that later starts accept', async () => {
    const dir = await fs.mkdtemp('/tmp/tsbuild-cli-cache-');
    // A pull sets --liftoff-only when its first connection opens: this server answers every
    // request with 404, so the pull connects and fails at once.
    const server = http.createServer((_req, res) => res.writeHead(404, { 'content-length': '0' }).end());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      // A copy of the package in a new place, as an install is: the caches' names have the bundle's place, so there are none yet.
      await fs.cp(path.join(repoRoot, 'dist', 'cmd'), path.join(dir, 'dist', 'cmd'), { recursive: true, preserveTimestamps: true });
      await fs.copyFile(path.join(repoRoot, 'package.json'), path.join(dir, 'package.json'));
      const cmdDir = path.join(dir, 'dist', 'cmd');
      for (const f of await fs.readdir(cmdDir)) if (f.endsWith('.cache')) await fs.rm(path.join(cmdDir, f));
      const moved = path.join(cmdDir, 'tsbuild.cjs');
      const store = path.join(dir, 'store');
      const caches = async () => (await fs.readdir(cmdDir)).filter((f) => f.endsWith('.cache')).sort();
      const stamps = async () => Promise.all((await caches()).map((f) => fs.stat(path.join(cmdDir, f)).then((st) => [f, st.ino, st.mtimeMs])));
      const pull = () =>
        run(process.execPath, [moved, '--root', store, 'pull', `127.0.0.1:${port}/none:latest`]).then(
          () => 0,
          (e: { code: number }) => e.code,
        );
      expect(await pull()).toBe(1);
      expect((await caches()).filter((f) => f.endsWith('-pull.cache'))).toHaveLength(1);
      // The other commands write theirs: save one of its own.
      await run(process.execPath, [moved, '--version']);
      await run(process.execPath, [moved, '--root', store, 'save', '-o', path.join(dir, 'none.tar'), 'none']).catch(() => undefined);
      const made = await caches();
      expect(made).toHaveLength(3);
      expect(made.filter((f) => f.endsWith('-save.cache'))).toHaveLength(1);
      const before = await stamps();
      // Each accepted by the next start of its kind (a rejected cache would be written again), the
      // pull's too: its flags were set back before it was made.
      expect(await pull()).toBe(1);
      await run(process.execPath, [moved, '--version']);
      await run(process.execPath, [moved, '--root', store, 'save', '-o', path.join(dir, 'none.tar'), 'none']).catch(() => undefined);
      expect(await stamps()).toEqual(before);
      // Started with WebAssembly flags of its own, a pull cannot tell what to set back: it writes none.
      const pullCache = (await caches()).find((f) => f.endsWith('-pull.cache'))!;
      await fs.rm(path.join(cmdDir, pullCache));
      const flagged = await run(process.execPath, ['--no-wasm-dynamic-tiering', moved, '--root', store, 'pull', `127.0.0.1:${port}/none:latest`]).then(
        () => 0,
        (e: { code: number }) => e.code,
      );
      expect(flagged).toBe(1);
      expect(await caches()).not.toContain(pullCache);
    } finally {
      server.close();
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
