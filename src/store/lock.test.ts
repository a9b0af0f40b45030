import { spawnSync } from 'node:child_process';
import { hostname } from 'node:os';
import { mkdtemp, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isAbortError, isTsbuildError } from '../errors.js';
import { StoreLock, readLockHolder } from './index.js';
import { currentOwner } from '../host/index.js';

let dir: string;
let lockPath: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tsbuild-lock-'));
  lockPath = join(dir, 'lock');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The pid of a process that has exited (reuse within a test run is vanishingly unlikely). */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

describe('StoreLock', () => {
  it('holds a lock file naming this process while fn runs, and removes it after', async () => {
    const lock = new StoreLock(lockPath);
    const seen = await lock.withLock(async () => {
      const h = await readLockHolder(lockPath);
      return h;
    });
    expect(seen?.pid).toBe(process.pid);
    expect(seen?.host).toBe(hostname());
    expect(await exists(lockPath)).toBe(false);
  });

  it('releases the lock when fn throws', async () => {
    const lock = new StoreLock(lockPath);
    await expect(lock.withLock(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await exists(lockPath)).toBe(false);
  });

  it('is re-entrant within one call chain', async () => {
    const lock = new StoreLock(lockPath, { timeoutMs: 500 });
    const v = await lock.withLock(() => lock.withLock(async () => 42));
    expect(v).toBe(42);
    // Also after the last critical section ended (its context tracking is switched off then),
    // and with an await between the outer and the inner one.
    const w = await lock.withLock(async () => {
      await new Promise((r) => setTimeout(r, 10));
      return lock.withLock(async () => 43);
    });
    expect(w).toBe(43);
  });

  it('serialises concurrent holders in one process, even through separate instances', async () => {
    const a = new StoreLock(lockPath);
    const b = new StoreLock(lockPath);
    let inside = 0;
    let maxInside = 0;
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        (i % 2 ? a : b).withLock(async () => {
          inside++;
          maxInside = Math.max(maxInside, inside);
          await new Promise((r) => setTimeout(r, 2));
          order.push(i);
          inside--;
        }),
      ),
    );
    expect(maxInside).toBe(1);
    expect(order).toHaveLength(10);
  });

  it('takes over a stale lock left by a dead pid', async () => {
    const pid = deadPid();
    await writeFile(lockPath, JSON.stringify({ pid, host: hostname(), token: 'old', acquiredAt: 'then' }));
    // No timing assertion (a loaded machine is slow): waiting instead of taking over would
    // end in STORE_LOCKED after the timeout, and fail the test that way.
    const lock = new StoreLock(lockPath, { timeoutMs: 30_000 });
    const holder = await lock.withLock(() => readLockHolder(lockPath));
    expect(holder?.pid).toBe(process.pid);
    expect(await exists(lockPath)).toBe(false);
    expect(await exists(`${lockPath}.steal`)).toBe(false);
  });

  it('takes over a lock whose pid was reused by another process (start time differs)', async () => {
    const me = currentOwner();
    if (me.start === undefined) return; // no /proc here: pid reuse cannot be detected
    await writeFile(lockPath, JSON.stringify({ pid: process.pid, start: me.start - 1, host: hostname(), token: 'old', acquiredAt: 'then' }));
    const lock = new StoreLock(lockPath, { timeoutMs: 2000 });
    expect(await lock.withLock(async () => 'got it')).toBe('got it');
  });

  it('takes over an unreadable lock file only once it is old', async () => {
    await writeFile(lockPath, '');
    const lock = new StoreLock(lockPath, { timeoutMs: 200, emptyGraceMs: 5000 });
    const err = await lock.withLock(async () => 1).catch((e: unknown) => e);
    expect(isTsbuildError(err) && err.code).toBe('STORE_LOCKED');
    const old = new Date(Date.now() - 60_000);
    await utimes(lockPath, old, old);
    expect(await lock.withLock(async () => 2)).toBe(2);
  });

  it('removes a steal guard left by a dead stealer', async () => {
    await writeFile(lockPath, JSON.stringify({ pid: deadPid(), host: hostname(), token: 'old', acquiredAt: 'then' }));
    await writeFile(`${lockPath}.steal`, '');
    const old = new Date(Date.now() - 60_000);
    await utimes(`${lockPath}.steal`, old, old);
    const lock = new StoreLock(lockPath, { timeoutMs: 2000 });
    expect(await lock.withLock(async () => 'ok')).toBe('ok');
  });

  it('times out with STORE_LOCKED naming the holder pid', async () => {
    // A live holder: this very process, as another handle that is not in our queue.
    const me = currentOwner();
    await writeFile(lockPath, JSON.stringify({ pid: process.pid, start: me.start, host: me.host, token: 'other', acquiredAt: 'now' }));
    const lock = new StoreLock(lockPath, { timeoutMs: 300 });
    const start = Date.now();
    const err = await lock.withLock(async () => 1).catch((e: unknown) => e);
    expect(Date.now() - start).toBeGreaterThanOrEqual(250);
    expect(isTsbuildError(err) && err.code).toBe('STORE_LOCKED');
    expect(isTsbuildError(err) && err.hint).toContain(String(process.pid));
    // The holder's file is untouched.
    expect(JSON.parse(await readFile(lockPath, 'utf8'))).toMatchObject({ token: 'other' });
  });

  it('waits for, but never steals, a lock from another host', async () => {
    await writeFile(lockPath, JSON.stringify({ pid: 1, host: 'some-other-host', token: 'x', acquiredAt: 'now' }));
    const lock = new StoreLock(lockPath);
    const err = await lock.withLock(async () => 1, { timeoutMs: 200 }).catch((e: unknown) => e);
    expect(isTsbuildError(err) && err.code).toBe('STORE_LOCKED');
    expect(isTsbuildError(err) && err.hint).toContain('some-other-host');
  });

  it('stops waiting when the signal aborts', async () => {
    const me = currentOwner();
    await writeFile(lockPath, JSON.stringify({ pid: process.pid, start: me.start, host: me.host, token: 'other', acquiredAt: 'now' }));
    // Without the abort this would end in STORE_LOCKED after the timeout, not an AbortError.
    const lock = new StoreLock(lockPath, { timeoutMs: 30_000 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    const err = await lock.withLock(async () => 1, { signal: ac.signal }).catch((e: unknown) => e);
    expect(isAbortError(err)).toBe(true);
  });

  it('stops waiting in the in-process queue when the signal aborts or time runs out', async () => {
    const lock = new StoreLock(lockPath);
    let release!: () => void;
    const holding = lock.withLock(() => new Promise<void>((r) => (release = r)));
    await new Promise((r) => setTimeout(r, 20));
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 30);
    expect(isAbortError(await lock.withLock(async () => 1, { signal: ac.signal }).catch((e: unknown) => e))).toBe(true);
    const err = await lock.withLock(async () => 1, { timeoutMs: 50 }).catch((e: unknown) => e);
    expect(isTsbuildError(err) && err.code).toBe('STORE_LOCKED');
    release();
    await holding;
    expect(await lock.withLock(async () => 3)).toBe(3);
  });
});
