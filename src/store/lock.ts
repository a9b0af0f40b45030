import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { closeSync, fstatSync, openSync, readSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { TsbuildError } from '../errors.js';
import { errnoCode, storeIoError } from './atomic-file.js';
import { currentOwner, ownerState } from '../host/index.js';

/**
 * A cross-process lock for one store, so several tsbuild processes can share a root.
 *
 * Node has no flock(2), so this is the classic lock-file protocol:
 *  - acquire = create `ROOT/lock` with O_CREAT|O_EXCL (`open(path, 'wx')`), holding JSON
 *    `{pid, start, host, token, acquiredAt}`; EEXIST means someone holds it;
 *  - release = unlink it, after checking the token is still ours;
 *  - a holder that died (pid gone, or pid reused by a process with another start time; see
 *    process-owner.ts) leaves a stale lock. A waiter steals it only while holding a second
 *    exclusive file, `ROOT/lock.steal`, and only if the lock file is still byte-for-byte and
 *    inode-for-inode the one it judged stale. Without that guard two waiters could both judge
 *    the same stale file, the first remove it and take a fresh lock, and the second then remove
 *    the first one's live lock.
 *  - a lock file with unreadable content is a holder between create and write; it counts as
 *    stale only after `emptyGraceMs`. A steal guard older than `stealGraceMs` belongs to a
 *    process that died in the microseconds it holds the guard, and is removed.
 *  - a lock from another host cannot be judged (its pid means nothing here), so it is only
 *    waited for; the STORE_LOCKED hint says so.
 *
 * Within one process, callers are queued on an in-memory mutex first (kept on globalThis so two
 * copies of this module share it), and a nested `withLock` on the same store runs directly
 * instead of deadlocking (AsyncLocalStorage tracks what the current async context holds).
 *
 * Critical sections are meant to be short (index.json and meta/ updates, gc): blob writes never
 * take the lock, they rely on atomic renames.
 *
 * The lock file is created, read and removed with synchronous calls (atomic-file.ts says why):
 * an uncontended lock and unlock is then ~50 µs instead of ~300 µs, and a fully cached build
 * takes the lock about ten times. Only waiting for a holder is asynchronous.
 */

export interface LockOptions {
  readonly signal?: AbortSignal | undefined;
  /** How long to wait for the lock before STORE_LOCKED; defaults to the lock's own timeout. */
  readonly timeoutMs?: number | undefined;
}

export interface StoreLockOptions {
  /** Default wait before STORE_LOCKED. 60 s. */
  readonly timeoutMs?: number;
  /** A lock file whose content cannot be parsed is stale after this long. 5 s. */
  readonly emptyGraceMs?: number;
  /** A steal guard file is stale after this long. 10 s. */
  readonly stealGraceMs?: number;
}

/** What a lock file says about its holder. */
export interface LockHolder {
  readonly pid: number;
  readonly start?: number | undefined;
  readonly host: string;
  readonly token: string;
  readonly acquiredAt: string;
}

interface LockFileView {
  readonly raw: string;
  readonly ino: number;
  readonly mtimeMs: number;
  readonly holder: LockHolder | undefined;
}

class AsyncMutex {
  #locked = false;
  readonly #waiters: Array<() => void> = [];

  /** Takes the mutex if it is free; false if someone holds it. */
  tryAcquire(): boolean {
    if (this.#locked) return false;
    this.#locked = true;
    return true;
  }

  async acquire(signal: AbortSignal): Promise<void> {
    if (this.tryAcquire()) return;
    signal.throwIfAborted();
    await new Promise<void>((resolve, reject) => {
      const wake = (): void => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = (): void => {
        const i = this.#waiters.indexOf(wake);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.push(wake);
    });
  }

  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#locked = false;
  }
}

const REGISTRY_KEY = Symbol.for('tsbuild.store.lock-mutexes');
function mutexFor(path: string): AsyncMutex {
  const g = globalThis as unknown as Record<symbol, Map<string, AsyncMutex> | undefined>;
  const map = (g[REGISTRY_KEY] ??= new Map<string, AsyncMutex>());
  let m = map.get(path);
  if (!m) {
    m = new AsyncMutex();
    map.set(path, m);
  }
  return m;
}

const held = new AsyncLocalStorage<ReadonlySet<string>>();
/**
 * Critical sections running now, in this process. An AsyncLocalStorage turns on Node's promise
 * hooks, a cost on every promise of the process (~15% of the CPU of a big COPY), and keeps them
 * on until it is disabled: it is, whenever no critical section runs (nothing then has a store to
 * ask for; the next `run` turns it on again).
 */
let running = 0;

class LockTimeout extends Error {}

export class StoreLock {
  readonly path: string;
  readonly #timeoutMs: number;
  readonly #emptyGraceMs: number;
  readonly #stealGraceMs: number;

  /** `path` should be absolute and canonical: it also keys the in-process mutex. */
  constructor(path: string, opts: StoreLockOptions = {}) {
    this.path = path;
    this.#timeoutMs = opts.timeoutMs ?? 60_000;
    this.#emptyGraceMs = opts.emptyGraceMs ?? 5_000;
    this.#stealGraceMs = opts.stealGraceMs ?? 10_000;
  }

  /** Run `fn` holding the lock. Re-entrant within one async call chain. */
  async withLock<T>(fn: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
    const mine = held.getStore();
    if (mine?.has(this.path)) return fn();

    const userSignal = opts.signal;
    userSignal?.throwIfAborted();
    const timeoutMs = opts.timeoutMs ?? this.#timeoutMs;
    const deadline = Date.now() + timeoutMs;
    // The timers exist only once there is something to wait for: the usual lock is free.
    let waitSignal: { timeout: AbortSignal; signal: AbortSignal } | undefined;
    const waiting = (): { timeout: AbortSignal; signal: AbortSignal } => {
      if (!waitSignal) {
        const timeout = AbortSignal.timeout(Math.max(0, deadline - Date.now()));
        waitSignal = { timeout, signal: userSignal ? AbortSignal.any([userSignal, timeout]) : timeout };
      }
      return waitSignal;
    };

    const mutex = mutexFor(this.path);
    if (!mutex.tryAcquire()) {
      const w = waiting();
      try {
        await mutex.acquire(w.signal);
      } catch (e) {
        if (userSignal?.aborted) throw userSignal.reason;
        if (w.timeout.aborted) throw this.#lockedError(this.#inspectQuietly());
        throw e;
      }
    }
    try {
      let token: string;
      try {
        token = await this.#acquireFile(deadline, userSignal);
      } catch (e) {
        if (e instanceof LockTimeout) throw this.#lockedError(this.#inspectQuietly());
        throw e;
      }
      running++;
      try {
        const next = new Set(mine ?? []);
        next.add(this.path);
        return await held.run(next, fn);
      } finally {
        if (--running === 0) held.disable();
        this.#releaseFile(token);
      }
    } finally {
      mutex.release();
    }
  }

  /** Who holds the lock file now, if anyone (diagnostics; racy by nature). */
  async holder(): Promise<LockHolder | undefined> {
    return this.#inspect()?.holder;
  }

  async #acquireFile(deadline: number, signal: AbortSignal | undefined): Promise<string> {
    const me = currentOwner();
    let delay = 5;
    for (;;) {
      signal?.throwIfAborted();
      const token = randomBytes(12).toString('hex');
      const holder: LockHolder = {
        pid: me.pid,
        start: me.start,
        host: me.host,
        token,
        acquiredAt: new Date().toISOString(),
      };
      if (this.#tryCreate(`${JSON.stringify(holder)}\n`)) return token;

      const seen = this.#inspect();
      if (seen === undefined) continue; // released between our open and our read
      if (this.#judge(seen) === 'dead' && this.#steal(seen)) continue;

      const left = deadline - Date.now();
      if (left <= 0) throw new LockTimeout();
      // Exponential backoff with jitter, capped, so many waiters do not poll in lockstep.
      const wait = Math.min(left, delay * (0.5 + Math.random()));
      await sleep(wait, undefined, signal ? { signal } : {});
      delay = Math.min(delay * 2, 100);
    }
  }

  #tryCreate(content: string): boolean {
    let fd: number;
    try {
      fd = openSync(this.path, 'wx', 0o644);
    } catch (e) {
      if (errnoCode(e) === 'EEXIST') return false;
      throw storeIoError(e, 'lock the store');
    }
    try {
      // No fsync: after a crash the holder is dead and its lock stale either way.
      const bytes = Buffer.from(content, 'utf8');
      for (let off = 0; off < bytes.length; ) off += writeSync(fd, bytes, off, bytes.length - off);
      closeSync(fd);
      return true;
    } catch (e) {
      try {
        closeSync(fd);
      } catch {
        // already closed
      }
      try {
        unlinkSync(this.path);
      } catch {
        // gone already
      }
      throw storeIoError(e, 'lock the store');
    }
  }

  #judge(seen: LockFileView): 'alive' | 'dead' | 'unknown' {
    if (!seen.holder) return Date.now() - seen.mtimeMs > this.#emptyGraceMs ? 'dead' : 'alive';
    return ownerState(seen.holder);
  }

  /** Remove a lock file judged stale, under the steal guard. True if the caller should retry now. */
  #steal(seen: LockFileView): boolean {
    const guard = `${this.path}.steal`;
    try {
      closeSync(openSync(guard, 'wx', 0o644));
    } catch (e) {
      if (errnoCode(e) !== 'EEXIST') throw e;
      const st = statIfPresent(guard);
      if (st && Date.now() - st.mtimeMs > this.#stealGraceMs) {
        unlinkIfPresent(guard);
        return true;
      }
      return false;
    }
    try {
      const now = this.#inspect();
      if (now && now.ino === seen.ino && now.raw === seen.raw) unlinkIfPresent(this.path);
      return true;
    } finally {
      unlinkIfPresent(guard);
    }
  }

  #releaseFile(token: string): void {
    const seen = this.#inspect();
    // Never remove a lock that is not ours (it would only be another's if ours had been
    // judged stale, which cannot happen while we run on this host; be safe anyway).
    if (seen?.holder?.token === token) unlinkIfPresent(this.path);
  }

  #inspectQuietly(): LockFileView | undefined {
    try {
      return this.#inspect();
    } catch {
      return undefined;
    }
  }

  #inspect(): LockFileView | undefined {
    let fd: number;
    try {
      fd = openSync(this.path, 'r');
    } catch (e) {
      if (errnoCode(e) === 'ENOENT') return undefined;
      throw e;
    }
    try {
      const st = fstatSync(fd);
      // A lock file is a few hundred bytes; anything large is not ours, read only a prefix.
      const buf = Buffer.alloc(Math.min(st.size, 4096));
      const bytesRead = readSync(fd, buf, 0, buf.length, 0);
      const raw = buf.subarray(0, bytesRead).toString('utf8');
      return { raw, ino: st.ino, mtimeMs: st.mtimeMs, holder: parseHolder(raw) };
    } finally {
      closeSync(fd);
    }
  }

  #lockedError(seen: LockFileView | undefined): TsbuildError {
    const h = seen?.holder;
    const who = h ? `pid ${h.pid} on host ${h.host} (since ${h.acquiredAt})` : 'an unknown process';
    const foreign = h && h.host !== currentOwner().host;
    return new TsbuildError('STORE_LOCKED', `timed out waiting for the store lock ${this.path}, held by ${who}`, {
      hint: h
        ? foreign
          ? `the lock belongs to pid ${h.pid} on another host (${h.host}); tsbuild cannot check whether it still runs. If it does not, delete ${this.path}`
          : h.pid === process.pid
            ? `this tsbuild process (pid ${h.pid}) holds the lock in another task; this is a bug unless that task is legitimately slow`
            : `wait for pid ${h.pid} to finish; if no tsbuild process with pid ${h.pid} is running, delete ${this.path}`
        : `if no other tsbuild process is running, delete ${this.path}`,
    });
  }
}

function statIfPresent(path: string): { mtimeMs: number } | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

function unlinkIfPresent(path: string): void {
  try {
    unlinkSync(path);
  } catch (e) {
    if (errnoCode(e) !== 'ENOENT') throw e;
  }
}

function parseHolder(raw: string): LockHolder | undefined {
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null) return undefined;
  const o = v as Record<string, unknown>;
  if (typeof o.pid !== 'number' || typeof o.host !== 'string' || typeof o.token !== 'string') return undefined;
  return {
    pid: o.pid,
    start: typeof o.start === 'number' ? o.start : undefined,
    host: o.host,
    token: o.token,
    acquiredAt: typeof o.acquiredAt === 'string' ? o.acquiredAt : 'unknown',
  };
}

/** Read a lock file without a StoreLock (fsck and tests). */
export async function readLockHolder(path: string): Promise<LockHolder | undefined> {
  try {
    return parseHolder(await readFile(path, 'utf8'));
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return undefined;
    throw e;
  }
}
