import { spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { Readable } from 'node:stream';
import { TsbuildError } from '../errors.js';
import type { RunResult } from './types.js';

export interface ChildOptions {
  readonly signal?: AbortSignal | undefined;
  readonly cwd?: string;
  /** Environment of the host-side process (not of the step). Defaults to a minimal PATH only. */
  readonly env?: NodeJS.ProcessEnv;
  readonly stdout?: (chunk: Buffer) => void;
  readonly stderr?: (chunk: Buffer) => void;
  /** Piped to the child's stdin (unpiped when the child is gone); without it stdin is /dev/null. */
  readonly stdin?: Readable;
  /** Called after the child exited or was killed, before the promise settles (runc delete). */
  readonly cleanup?: () => Promise<void>;
  /** Called on abort before the process group is killed (runc kill). */
  readonly onAbort?: () => void;
  /** Open a 4th pipe as the child's fd 3 and deliver what is written to it (bwrap --info-fd 3). */
  readonly fd3?: (chunk: Buffer) => void;
  /** Bytes the process reads on fd 4 (a pipe, closed after them): bwrap's --seccomp program. */
  readonly fd4?: Buffer;
  /**
   * Run the command on a new pseudo-terminal made by script(1) (`tsbuild run -t`): its stdin,
   * stdout and stderr are the terminal, and what it writes there arrives on `stdout`. With
   * `input` (a TTY stream: its fd is shared, not piped) the child stays in our process group,
   * the terminal's foreground group, so that script may read it and put it in raw mode
   * (Ctrl-C then reaches the command as a byte, through its own terminal); without it the
   * terminal gets no input. `stdin` is ignored.
   */
  readonly terminal?: { readonly script: string; readonly input?: Readable | undefined };
  /** Called with the pid once the process is spawned (signal forwarding). */
  readonly onSpawn?: (pid: number) => void;
  /** Run the host process as this uid/gid (isolation none only). */
  readonly uid?: number;
  readonly gid?: number;
}

export const HOST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Run a host command (argv array, never a shell string) in its own process group and wait
 * for it and its pipes to close. On abort the whole group gets SIGKILL and the promise
 * rejects with the signal's reason. After exit the group is killed again, so a helper that
 * double-forked out of the sandbox's PID namespace (it cannot, but belt and braces) dies too.
 */
export function runChild(cmd: string, args: readonly string[], opts: ChildOptions = {}): Promise<RunResult> {
  return new Promise<RunResult>((resolve, reject) => {
    const signal = opts.signal;
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    const term = opts.terminal;
    // In the terminal's foreground group (see `terminal`), the chain is not a group of its own.
    const detached = term?.input === undefined;
    const child = spawn(term ? term.script : cmd, term ? ['--quiet', '--return', '--flush', '--command', shellWords([cmd, ...args]), '/dev/null'] : args, {
      cwd: opts.cwd,
      env: opts.env ?? { PATH: HOST_PATH },
      stdio: [term ? (term.input ?? 'ignore') : opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', ...(opts.fd3 || opts.fd4 ? ([opts.fd3 ? 'pipe' : 'ignore'] as const) : []), ...(opts.fd4 ? (['pipe'] as const) : [])],
      // A new process group: kill(-pid) reaches every process of the chain (unshare, sh,
      // setpriv, bwrap and bwrap's init) at once.
      detached,
      ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
      ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
    });
    if (child.pid !== undefined) opts.onSpawn?.(child.pid);
    let settled = false;
    let exited = false;
    const killGroup = (): void => {
      if (child.pid === undefined) return;
      try {
        // Not a group of our own: script(1) gets SIGTERM, restores the terminal and hangs up
        // its pseudo-terminal, which ends the sandbox (bwrap --die-with-parent, runc delete).
        if (!detached) {
          if (!exited) process.kill(child.pid, 'SIGTERM');
          return;
        }
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // ESRCH: already gone.
      }
    };
    const onAbort = (): void => {
      opts.onAbort?.();
      killGroup();
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    const input = term ? undefined : opts.stdin;
    if (input && child.stdin) {
      // EPIPE when the process exits without reading all of its input is not our error.
      child.stdin.on('error', () => undefined);
      input.pipe(child.stdin);
    }
    child.stdout?.on('data', (c: Buffer) => opts.stdout?.(c));
    child.stderr?.on('data', (c: Buffer) => opts.stderr?.(c));
    const fd3 = child.stdio[3];
    if (opts.fd3 && fd3 && 'on' in fd3) fd3.on('data', (c: Buffer) => opts.fd3?.(c));
    const fd4 = child.stdio[4];
    if (opts.fd4 && fd4 && 'end' in fd4) {
      // EPIPE when the process exits before reading it (a failed exec) is not our error.
      fd4.on('error', () => undefined);
      fd4.end(opts.fd4);
    }
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (input && child.stdin) {
        input.unpipe(child.stdin);
        // A paused stream no longer keeps the event loop alive (process.stdin).
        input.pause();
      }
      killGroup();
      const done = opts.cleanup ? opts.cleanup().catch(() => undefined) : Promise.resolve();
      void done.then(fn);
    };
    child.on('error', (e) => finish(() => reject(e)));
    // When the main process exits, whatever it left in its group goes too: without a PID
    // namespace (chroot, none) a `sleep 1000 &` would otherwise survive the step and hold
    // the output pipes open.
    child.on('exit', () => {
      exited = true;
      killGroup();
    });
    // 'close' waits for stdout/stderr to close too: a background process that kept the pipes
    // open would hold it, which is why the sandbox must kill its whole PID namespace.
    child.on('close', (code, sig) => {
      finish(() => {
        if (signal?.aborted) reject(abortReason(signal));
        else resolve(sig !== null ? { exitCode: 128 + signalNumber(sig), signal: sig } : { exitCode: code ?? 1 });
      });
    });
  });
}

/** Run a short host command and collect its output (probes, getfattr, runc state). */
export async function captureChild(
  cmd: string,
  args: readonly string[],
  opts: Omit<ChildOptions, 'stdout' | 'stderr'> = {},
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const r = await runChild(cmd, args, { ...opts, stdout: (c) => out.push(c), stderr: (c) => err.push(c) });
  return { exitCode: r.exitCode, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

/** The script(1) path for `terminal`, or SANDBOX_UNAVAILABLE. */
export function terminalTool(script: string | undefined): string {
  if (!script) throw new TsbuildError('SANDBOX_UNAVAILABLE', 'a pseudo-terminal (-t) needs script(1), which is not installed', { hint: 'apt-get install util-linux (bsdutils)' });
  return script;
}

/** argv as one sh(1) command line (script(1) takes a string): every word single-quoted. */
function shellWords(argv: readonly string[]): string {
  return argv.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
}

function abortReason(signal: AbortSignal): unknown {
  const r: unknown = signal.reason;
  if (r instanceof Error) return r;
  return new DOMException('The operation was aborted', 'AbortError');
}

function signalNumber(sig: NodeJS.Signals): number {
  return constants.signals[sig] ?? 0;
}

/** Keeps the last `max` bytes written to it: the tail of a failed sandbox's stderr. */
export class Tail {
  #chunks: Buffer[] = [];
  #size = 0;
  constructor(readonly max = 8192) {}
  push(c: Buffer): void {
    this.#chunks.push(c);
    this.#size += c.length;
    while (this.#size - (this.#chunks[0]?.length ?? 0) >= this.max && this.#chunks.length > 1) {
      this.#size -= this.#chunks.shift()?.length ?? 0;
    }
  }
  text(): string {
    return Buffer.concat(this.#chunks).toString('utf8').slice(-this.max).trim();
  }
}
