// The process edge of the GitHub Action (action.yml runs dist/cmd/action.cjs, bundled by
// scripts/bundle-cli.mjs): SIGINT/SIGTERM (the runner's cancel) become one AbortSignal.
import { pino } from 'pino';
import { runAction } from '../src/action/index.js';

const controller = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => controller.abort(new DOMException(`received ${sig}`, 'AbortError')));

// pino is imported (so bundled), not loaded from node_modules: an action runs from its
// repository as checked out, with no npm install.
const logger = pino({ level: process.env.RUNNER_DEBUG === '1' ? 'debug' : 'warn', base: undefined, redact: { paths: ['password', 'token', 'auth', 'authorization', '*.password', '*.token', '*.auth', '*.authorization', 'headers.authorization'], censor: '[redacted]' } }, pino.destination({ fd: 2, sync: true }));

runAction({ env: process.env, cwd: process.cwd(), stdout: process.stdout, signal: controller.signal, logger }).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stdout.write(`::error title=tsbuild internal error::${String(err)}\n`);
    process.exitCode = 1;
  },
);
