import type { Readable, Writable } from 'node:stream';

/** Everything the CLI touches of its process, passed in so tests can run main() in-process. */
export interface Io {
  readonly stdout: Writable;
  readonly stderr: Writable;
  readonly stdin: Readable;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  readonly signal: AbortSignal;
}
