#!/usr/bin/env node
// The process edge: signals become one AbortSignal, main() returns the exit code.
import { main } from '../src/cli/index.js';

const controller = new AbortController();
let interrupted = 0;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    interrupted++;
    if (interrupted > 1) process.exit(130); // second Ctrl-C: give up on cleanup
    controller.abort(new DOMException(`received ${sig}`, 'AbortError'));
  });
}

const code = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  stdin: process.stdin,
  env: process.env,
  cwd: process.cwd(),
  signal: controller.signal,
});
process.exitCode = code;
