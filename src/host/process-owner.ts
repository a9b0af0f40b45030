import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

/**
 * Who owns a lock file or a temp file, and whether that owner still runs.
 *
 * A pid alone is not an identity: pids are reused, and in containers every fresh run of
 * tsbuild may well be pid 1 again. On Linux the process start time (field 22 of
 * /proc/<pid>/stat, clock ticks since boot, see proc(5)) pins the pid to one process
 * lifetime, so "pid alive but started at another time" counts as dead. Where /proc is
 * missing we fall back to `process.kill(pid, 0)` and accept that a reused pid looks alive
 * (the failure mode is waiting for a timeout, never removing a live owner's files).
 */
export interface ProcessOwner {
  readonly pid: number;
  /** Start time in clock ticks since boot, or undefined where /proc is not available. */
  readonly start: number | undefined;
  readonly host: string;
}

function readStartTime(pid: number): number | undefined | 'gone' {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // ENOENT for /proc/<pid> but /proc itself present: the process is gone.
    if (code === 'ENOENT' || code === 'ESRCH') return procAvailable() ? 'gone' : undefined;
    return undefined;
  }
  // The command name (field 2) is in parentheses and may itself contain ") ", so split
  // after the last ')'. The remaining fields start at field 3 (state).
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const start = Number(rest[22 - 3]);
  return Number.isSafeInteger(start) ? start : undefined;
}

let procChecked: boolean | undefined;
function procAvailable(): boolean {
  if (procChecked === undefined) {
    try {
      readFileSync('/proc/self/stat');
      procChecked = true;
    } catch {
      procChecked = false;
    }
  }
  return procChecked;
}

let self: ProcessOwner | undefined;

/** This process, as recorded in lock files and temp names. */
export function currentOwner(): ProcessOwner {
  if (!self) {
    const start = readStartTime(process.pid);
    self = { pid: process.pid, start: typeof start === 'number' ? start : undefined, host: hostname() };
  }
  return self;
}

/**
 * 'alive', 'dead', or 'unknown' (another host: we cannot look at its processes).
 * `start` undefined means the recorder could not read its own start time; then only the pid
 * is compared.
 */
export function ownerState(owner: { pid: number; start?: number | undefined; host?: string | undefined }): 'alive' | 'dead' | 'unknown' {
  if (owner.host !== undefined && owner.host !== currentOwner().host) return 'unknown';
  if (!Number.isSafeInteger(owner.pid) || owner.pid <= 0) return 'dead';
  const start = readStartTime(owner.pid);
  if (start === 'gone') return 'dead';
  if (typeof start === 'number') {
    if (owner.start !== undefined && owner.start !== start) return 'dead';
    return 'alive';
  }
  try {
    process.kill(owner.pid, 0);
    return 'alive';
  } catch (e) {
    // EPERM: it exists but belongs to another user.
    return (e as NodeJS.ErrnoException).code === 'EPERM' ? 'alive' : 'dead';
  }
}

/**
 * Temp names carry their owner so gc can tell a live writer's file from a dead one's:
 * `<pid>-<start>-<random>.<kind>`; start is `x` when unknown. Host is not in the name: a
 * store shared by several hosts is not supported (see index.ts, known gaps).
 */
export function ownerTag(): string {
  const o = currentOwner();
  return `${o.pid}-${o.start ?? 'x'}`;
}

const TEMP_NAME_RE = /^(\d+)-(\d+|x)-[A-Za-z0-9]+(?:\.[a-z-]+)?$/;

/** The owner encoded in a temp name, or undefined for names tsbuild did not make. */
export function parseTempOwner(name: string): { pid: number; start: number | undefined } | undefined {
  const m = TEMP_NAME_RE.exec(name);
  if (!m) return undefined;
  return { pid: Number(m[1]), start: m[2] === 'x' ? undefined : Number(m[2]) };
}
