import { createRequire } from 'node:module';
import { setFlagsFromString } from 'node:v8';
import AgentClass from 'undici/lib/dispatcher/agent.js';
import DispatcherClass from 'undici/lib/dispatcher/dispatcher.js';
import api from 'undici/lib/api/index.js';
import buildConnector from 'undici/lib/core/connect.js';
import type { buildConnector as BuildConnector } from 'undici';

type ConnectorOptions = BuildConnector.BuildOptions;
type ConnectorFn = BuildConnector.connector;

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
 *
 * The flag is set when the first connection is open, just before undici compiles llhttp
 * (connector()), not when this module loads. Node compiles its built-in modules from code cached
 * in its binary, made under the default V8 flags; after the change, each built-in loaded for the
 * first time is compiled from source. By then node:tls is loaded if the connection is TLS (undici
 * loads it to connect), and a plain-HTTP registry (a loopback one, --insecure-registry) never
 * loads it: loaded here up front, as before, it cost such a push ~6 ms. zlib and fs streams,
 * which every registry exchange uses afterwards, are loaded first.
 */
let liftoffOnly = false;
function useLiftoffOnly(): void {
  if (liftoffOnly) return;
  liftoffOnly = true;
  const load = createRequire(import.meta.url);
  load('node:zlib');
  void (load('node:fs') as typeof import('node:fs')).ReadStream;
  setFlagsFromString('--liftoff-only');
  // V8's code cache records the flags it was made under, and every later start (default flags)
  // would reject one made now: the CLI's launcher (cmd/bundle-launcher.cjs) sets these before it
  // writes one at exit. Each is V8's default; --no-liftoff-only alone leaves what
  // --liftoff-only implied (no tier-up), and a cache made so was rejected.
  (globalThis as Record<symbol, unknown>)[Symbol.for('tsbuild.v8FlagsChanged')] = '--no-liftoff-only --liftoff --wasm-tier-up --wasm-dynamic-tiering';
}

/**
 * undici's connector for `opts` (what an Agent's `connect` object would give each client), which
 * switches V8 to Liftoff alone once a connection is open, before llhttp is compiled for it.
 */
export function connector(opts: ConnectorOptions): ConnectorFn {
  const connect = buildConnector(opts);
  return (o, callback) =>
    connect(o, (...args) => {
      if (args[0] === null) useLiftoffOnly();
      callback(...args);
    });
}

export const Agent = AgentClass;

/** For the transport's low-speed limit (an interceptor wrapping the reader's handler). */
export { default as DecoratorHandler } from 'undici/lib/handler/decorator-handler.js';
export { default as undiciErrors } from 'undici/lib/core/errors.js';
