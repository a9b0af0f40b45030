import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import AgentClass from 'undici/lib/dispatcher/agent.js';
import DispatcherClass from 'undici/lib/dispatcher/dispatcher.js';
import api from 'undici/lib/api/index.js';

/**
 * undici's Agent with its request API, without the rest of undici: its index also evaluates
 * fetch, WebSocket, EventSource, the cache and the mock agent, which no registry exchange uses.
 * Measured on this machine: requiring the index costs about 19 MB of RSS and three times the
 * load time of these three files (8 MB). `Object.assign` is what undici's index does itself
 * (index.js: `Object.assign(Dispatcher.prototype, api)`), so loading both is harmless.
 */
Object.assign(DispatcherClass.prototype, api);

/**
 * undici parses HTTP/1.1 with llhttp compiled to WebAssembly, compiled when the first connection
 * opens. V8's optimising tier (TurboFan) for that module cost 34 MB of transient memory: a
 * push of a 1 MB image peaked at 102 MB RSS, 68 MB with Liftoff (the baseline compiler) alone,
 * and took no longer. llhttp's work per byte of a blob is a bounds check (bodies are handed
 * over as slices), so the baseline code is enough. tsbuild runs no other WebAssembly.
 */
// Node compiles its built-in modules from code cached in its binary, made under the default V8
// flags; after the flag changes, each built-in loaded for the first time is compiled from source.
// The ones every registry exchange loads after this point are loaded first: TLS (a registry is
// tried over HTTPS first), zlib, and fs streams (ReadStream is a lazy getter).
const load = createRequire(import.meta.url);
load('node:tls');
load('node:zlib');
void (load('node:fs') as typeof import('node:fs')).ReadStream;
setFlagsFromString('--liftoff-only');
// V8's code cache records the flags it was made under: the CLI's launcher (cmd/bundle-launcher.cjs)
// writes none from this process, as every later start (default flags) would reject it.
(globalThis as Record<symbol, unknown>)[Symbol.for('tsbuild.v8FlagsChanged')] = true;

export const Agent = AgentClass;

/** For the transport's low-speed limit (an interceptor wrapping the reader's handler). */
export { default as DecoratorHandler } from 'undici/lib/handler/decorator-handler.js';
export { default as undiciErrors } from 'undici/lib/core/errors.js';
