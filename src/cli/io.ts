import type { Readable, Writable } from 'node:stream';
import type { SignalSource } from '../sandbox/index.js';

/** Everything the CLI touches of its process, passed in so tests can run main() in-process. */
export interface Io {
  readonly stdout: Writable;
  readonly stderr: Writable;
  readonly stdin: Readable;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  readonly signal: AbortSignal;
  /**
   * The process's signals, for a command that hands them to a child (`run`): while someone is
   * subscribed, SIGINT and SIGTERM go to them instead of aborting `signal`. Absent in tests
   * that run main() in-process.
   */
  readonly signals?: SignalSource;
}
