#!/usr/bin/env node
// The process edge: signals become one AbortSignal (or go to `run`'s process), main() returns the exit code.
import { exitWhenSettled, main } from '../src/cli/index.js';
import { adoptDeferredExtraCa, dropLauncherMallocSetting } from '../src/host/index.js';

// NODE_EXTRA_CA_CERTS, if dist/cmd/tsbuild moved it aside so that Node would not parse it at start.
adoptDeferredExtraCa(process.env);
// MALLOC_ARENA_MAX, if dist/cmd/tsbuild set it for this process alone.
dropLauncherMallocSetting(process.env);

const controller = new AbortController();
let interrupted = 0;
// `tsbuild run` forwards these to the container's process while it runs (docker's sig-proxy).
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'] as const;
const forwardTo = new Set<(sig: NodeJS.Signals) => void>();
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    if (forwardTo.size > 0) return; // the forwarding listener below has it
    interrupted++;
    if (interrupted > 1) process.exit(130); // second Ctrl-C: give up on cleanup
    controller.abort(new DOMException(`received ${sig}`, 'AbortError'));
  });
}
const forward = (sig: NodeJS.Signals): void => {
  for (const l of forwardTo) l(sig);
};

// No top-level await: the bundle (scripts/bundle-cli.mjs) is a CommonJS script.
// exitWhenSettled: a command that never settles exits 70, not 0.
exitWhenSettled(
  main(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    // A getter: process.stdin makes a stream (and a tty or pipe handle) when first read, which
    // only login --password-stdin, load and import from '-' need.
    get stdin() {
      return process.stdin;
    },
    env: process.env,
    cwd: process.cwd(),
    signal: controller.signal,
    signals: {
      subscribe(listener) {
        // SIGHUP, SIGQUIT and SIGUSR1/2 keep their default action (terminate) when nobody forwards.
        if (forwardTo.size === 0) for (const sig of FORWARDED) process.on(sig, forward);
        forwardTo.add(listener);
        return () => {
          if (!forwardTo.delete(listener) || forwardTo.size > 0) return;
          for (const sig of FORWARDED) process.off(sig, forward);
        };
      },
    },
  }),
);
