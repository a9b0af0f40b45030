// Lets a plain `node` child process (Node 20 has no --experimental-strip-types) run the
// store's TypeScript sources directly, so multi-process tests exercise the current source
// rather than a possibly stale dist/. Usage: node --import ./register-ts.mjs child.ts
import { register } from 'node:module';

register('./ts-hooks.mjs', import.meta.url);
