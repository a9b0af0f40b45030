import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import type { Logger } from 'pino';
import type { Store } from '../store/index.js';
import type { Credential, CredentialSource, RegistryClient } from '../registry/index.js';

/**
 * Where the store lives: the given root, else $TSBUILD_ROOT, else $XDG_DATA_HOME/tsbuild,
 * else ~/.local/share/tsbuild (the XDG base directory spec). The CLI's --root and the API's
 * `root` option both come here.
 */
export function resolveStoreRoot(root: string | undefined, io: { readonly env: NodeJS.ProcessEnv; readonly cwd: string }): string {
  if (root) return path.resolve(io.cwd, root);
  const env = io.env;
  if (env.TSBUILD_ROOT) return path.resolve(io.cwd, env.TSBUILD_ROOT);
  if (env.XDG_DATA_HOME) return path.join(env.XDG_DATA_HOME, 'tsbuild');
  return path.join(env.HOME || os.homedir(), '.local', 'share', 'tsbuild');
}

/** Opens (creating if needed) the store at `root`; store and sandbox code load on first use. */
export async function openStoreAt(root: string, signal: AbortSignal): Promise<Store> {
  const { openStore } = await import('../store/index.js');
  return openStore(root, {
    signal,
    // Trees of other IDs (rootless steps) go inside a user namespace; the sandbox code loads
    // only when a tree is removed.
    removeTree: async (p, s) => (await import('../engine/index.js')).removeTreeAnyOwner(p, s),
  });
}

/**
 * Registry credentials for a program: a function from a registry host (`docker.io`,
 * `localhost:5000`) to a credential or undefined (anonymous), or a CredentialSource.
 * Without one, the auth files are read as the CLI reads them ($REGISTRY_AUTH_FILE,
 * $XDG_RUNTIME_DIR/containers/auth.json, $DOCKER_CONFIG/config.json or ~/.docker/config.json,
 * with their credential helpers): what `docker login` and docker/login-action write.
 */
export type CredentialsProvider = ((registry: string) => Credential | undefined | Promise<Credential | undefined>) | CredentialSource;

export interface RegistryAccess {
  readonly env: NodeJS.ProcessEnv;
  readonly credentials?: CredentialsProvider | undefined;
  readonly insecureRegistries?: readonly string[] | undefined;
  readonly caFiles?: readonly string[] | undefined;
  readonly logger: Logger;
  readonly signal: AbortSignal;
}

/** The registry client of a command or an API call (undici and the client load here, on first use). */
export async function openRegistryClient(a: RegistryAccess): Promise<RegistryClient> {
  const { registryClientFromEnvironment } = await import('../registry/index.js');
  const c = a.credentials;
  const credentials: CredentialSource | undefined = c === undefined ? undefined : typeof c === 'function' ? { get: async (registry) => c(registry) } : c;
  return registryClientFromEnvironment({
    env: a.env,
    home: a.env.HOME || os.homedir(),
    insecureRegistries: a.insecureRegistries ?? [],
    caFiles: a.caFiles ?? [],
    logger: a.logger,
    signal: a.signal,
    ...(credentials !== undefined ? { credentials } : {}),
  });
}

/**
 * A structured logger on stderr at `level` (silent by default for programs: a library does not
 * write to its host's stderr unless asked). pino is loaded on first use, as in the CLI.
 */
export function defaultLogger(level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent' = 'silent'): Logger {
  const { pino } = createRequire(import.meta.url)('pino') as typeof import('pino');
  return pino(
    {
      level,
      base: undefined,
      redact: {
        paths: ['password', 'token', 'auth', 'authorization', '*.password', '*.token', '*.auth', '*.authorization', 'headers.authorization'],
        censor: '[redacted]',
      },
    },
    pino.destination({ fd: 2, sync: true }),
  );
}
