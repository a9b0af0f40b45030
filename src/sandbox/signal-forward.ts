import { readFileSync } from 'node:fs';
import type { SignalSource } from './types.js';

/**
 * Forwards the signals of `source` to a step's process for the life of the step. Signals
 * that arrive before the process is known (the sandbox is still being set up) wait for it,
 * so an early SIGTERM is not lost.
 */
export class SignalForwarder {
  readonly #pending: NodeJS.Signals[] = [];
  #deliver: ((sig: NodeJS.Signals) => void) | undefined;
  readonly #unsubscribe: (() => void) | undefined;

  constructor(source: SignalSource | undefined) {
    this.#unsubscribe = source?.subscribe((sig) => {
      if (this.#deliver) this.#deliver(sig);
      else this.#pending.push(sig);
    });
  }

  /** The process is running: deliver what waited, then every later signal. */
  target(deliver: (sig: NodeJS.Signals) => void): void {
    this.#deliver = deliver;
    for (const sig of this.#pending.splice(0)) deliver(sig);
  }

  stop(): void {
    this.#unsubscribe?.();
    this.#deliver = undefined;
  }
}

/** kill(2) that ignores a process already gone. */
export function signalProcess(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // ESRCH: it exited meanwhile.
  }
}

/** The children of `pid` (Linux /proc/PID/task/PID/children); empty when it is gone. */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .split(' ')
      .filter((w) => w !== '')
      .map(Number);
  } catch {
    return [];
  }
}
