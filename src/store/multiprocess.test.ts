import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isTsbuildError } from '../errors.js';
import { collectGarbage, fsckStore, openStore } from './index.js';

/**
 * Real child processes against one store. The children run the TypeScript sources through
 * testdata/register-ts.mjs (see testdata/README.md), so no build step is needed.
 */
const here = dirname(fileURLToPath(import.meta.url));
const REGISTER = join(here, 'testdata', 'register-ts.mjs');
const CHILD = join(here, 'testdata', 'store-child.ts');

interface Child {
  readonly proc: ChildProcess;
  readonly lines: string[];
  waitFor(prefix: string, timeoutMs?: number): Promise<string>;
  readonly exited: Promise<number | null>;
}

const children: ChildProcess[] = [];

function startChild(args: readonly string[]): Child {
  const proc = spawn(process.execPath, ['--import', REGISTER, CHILD, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  const lines: string[] = [];
  const waiters: Array<{ prefix: string; resolve: (l: string) => void }> = [];
  let stderr = '';
  proc.stderr?.on('data', (c: Buffer) => (stderr += c.toString()));
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    lines.push(line);
    for (const w of waiters.splice(0)) {
      if (line.startsWith(w.prefix)) w.resolve(line);
      else waiters.push(w);
    }
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return {
    proc,
    lines,
    exited,
    waitFor(prefix, timeoutMs = 30_000) {
      const already = lines.find((l) => l.startsWith(prefix));
      if (already) return Promise.resolve(already);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error(`child never printed ${prefix}; stderr: ${stderr}`)), timeoutMs);
        waiters.push({
          prefix,
          resolve: (l) => {
            clearTimeout(t);
            resolve(l);
          },
        });
        void exited.then((code) => reject(new Error(`child exited ${code} before ${prefix}; stderr: ${stderr}`)));
      });
    },
  };
}

let dir: string;
let root: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-mp-'));
  root = join(dir, 'root');
  await openStore(root);
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

describe('several processes sharing one store', () => {
  it('keeps index.json valid and complete while processes tag concurrently', async () => {
    const kids = ['a', 'b', 'c', 'd'].map((p) => startChild(['tags', root, p, '25']));
    const codes = await Promise.all(kids.map((k) => k.exited));
    expect(codes).toEqual([0, 0, 0, 0]);
    const index = JSON.parse(await readFile(join(root, 'index.json'), 'utf8')) as { manifests: unknown[] };
    expect(index.manifests).toHaveLength(100);
    const store = await openStore(root);
    expect(new Set((await store.listTags()).map((t) => t.name)).size).toBe(100);
    expect(await store.readMeta('counter')).toBe(100);
    expect(await readdir(join(root, 'tmp'))).toEqual([]);
    expect(await fsckStore(store)).toEqual([]);
  });

  it('waits for a lock held by another process, with STORE_LOCKED naming it on timeout', async () => {
    const kid = startChild(['hold-lock', root, '1500']);
    await kid.waitFor('locked');
    const store = await openStore(root);
    const err = await store.withLock(async () => 1, { timeoutMs: 200 }).catch((e: unknown) => e);
    expect(isTsbuildError(err) && err.code).toBe('STORE_LOCKED');
    expect(isTsbuildError(err) && err.hint).toContain(String(kid.proc.pid));
    // Given time, we get it once the child lets go.
    expect(await store.withLock(async () => 'mine', { timeoutMs: 30_000 })).toBe('mine');
    // The child printed this before it let go; its line may reach us after we took the lock.
    await expect(kid.waitFor('unlocking', 5_000)).resolves.toMatch(/^unlocking/);
  });

  it('takes over the lock of a process killed while holding it', async () => {
    const kid = startChild(['hold-lock', root, '60000']);
    await kid.waitFor('locked');
    kid.proc.kill('SIGKILL');
    await kid.exited;
    const holder = JSON.parse(await readFile(join(root, 'lock'), 'utf8')) as { pid: number };
    expect(holder.pid).toBe(kid.proc.pid);
    const store = await openStore(root);
    // The holder is dead: waiting for it would end in STORE_LOCKED, not in a takeover.
    expect(await store.withLock(async () => 'taken over', { timeoutMs: 30_000 })).toBe('taken over');
  });

  it('lets exactly one of several processes steal a stale lock at a time', async () => {
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    await writeFile(join(root, 'lock'), JSON.stringify({ pid: Number(dead.stdout), host: hostname(), token: 'stale', acquiredAt: 'then' }));
    const kids = Array.from({ length: 4 }, () => startChild(['hold-lock', root, '150']));
    expect(await Promise.all(kids.map((k) => k.exited))).toEqual([0, 0, 0, 0]);
    const spans = kids
      .map((k) => {
        const from = Number(k.lines.find((l) => l.startsWith('locked'))?.split(' ')[1]);
        const to = Number(k.lines.find((l) => l.startsWith('unlocking'))?.split(' ')[1]);
        return [from, to] as const;
      })
      .sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < spans.length; i++) expect(spans[i]![0]).toBeGreaterThanOrEqual(spans[i - 1]![1]);
  });

  it('kill -9 in the middle of putBlob leaves no visible blob, and the store opens and cleans up', async () => {
    const kid = startChild(['slow-put', root]);
    await kid.waitFor('writing');
    const temps = await readdir(join(root, 'tmp'));
    expect(temps).toHaveLength(1);
    expect((await stat(join(root, 'tmp', temps[0]!))).size).toBeGreaterThan(0);
    kid.proc.kill('SIGKILL');
    await kid.exited;

    const store = await openStore(root);
    expect(await readdir(join(root, 'blobs', 'sha256'))).toEqual([]);
    expect(await store.blobs.listBlobs()).toEqual([]);
    expect(await fsckStore(store)).toEqual([expect.objectContaining({ kind: 'stale-temp', pid: kid.proc.pid })]);
    expect((await collectGarbage(store)).removedTemps).toBe(1);
    expect(await readdir(join(root, 'tmp'))).toEqual([]);
    expect(await fsckStore(store)).toEqual([]);
  });
});
