import { createRequire } from 'node:module';
import { chmod, mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { TsbuildError, isAbortError } from '../errors.js';
import { DOCKER_HUB_REGISTRY, normalizeRegistry } from '../oci/index.js';

/**
 * Registry credentials from the files Docker and Podman write, and from credential helpers.
 *
 * Where they are looked for, first match wins (as containers/image's pkg/docker/config does,
 * which reads Docker's file last):
 *   $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
 *   $DOCKER_CONFIG/config.json (default ~/.docker/config.json).
 * In each: `credHelpers[registry]`, else `auths[...]` (`auth` = base64 user:password, or
 * `identitytoken`), else `credsStore` (a helper for every registry), as Docker's
 * cli/config/configfile does.
 *
 * The paths are computed from an environment handed in by the caller (the CLI); nothing here
 * reads process.env. Secrets are never logged and never put in error messages.
 */
export interface Credential {
  readonly username?: string;
  readonly password?: string;
  /** An OAuth2 refresh token (`identitytoken`, or a helper's Secret with Username `<token>`). */
  readonly identityToken?: string;
}

export interface CredentialSource {
  /** Credentials for `registry` (host[:port], normalised: `docker.io`), or undefined for anonymous. */
  get(registry: string, opts?: { readonly signal?: AbortSignal | undefined }): Promise<Credential | undefined>;
}

/** Runs `docker-credential-NAME ACTION` with `input` on stdin; resolves to stdout. */
export type HelperRunner = (name: string, action: 'get' | 'store' | 'erase', input: string, signal?: AbortSignal) => Promise<{ code: number; stdout: string; stderr: string }>;

/** Docker Hub's key in config.json (Docker writes its v1 index URL there). */
const DOCKER_HUB_AUTH_KEY = 'https://index.docker.io/v1/';

/** The auth files to read, most specific first, from an environment. */
export function authFilesFromEnv(env: Readonly<Record<string, string | undefined>>, home: string): string[] {
  const files: string[] = [];
  if (env['REGISTRY_AUTH_FILE']) files.push(env['REGISTRY_AUTH_FILE']);
  if (env['XDG_RUNTIME_DIR']) files.push(join(env['XDG_RUNTIME_DIR'], 'containers', 'auth.json'));
  files.push(dockerConfigPath(env, home));
  return files;
}

/** $DOCKER_CONFIG/config.json, else ~/.docker/config.json: where `tsbuild login` writes. */
export function dockerConfigPath(env: Readonly<Record<string, string | undefined>>, home: string): string {
  return join(env['DOCKER_CONFIG'] || join(home, '.docker'), 'config.json');
}

/** Fixed credentials (from `--creds` or tests), for one registry or all. */
export function staticCredentials(cred: Credential, registry?: string): CredentialSource {
  return {
    get: async (r) => (registry === undefined || normalizeRegistry(registry) === normalizeRegistry(r) ? cred : undefined),
  };
}

/** Credentials read from auth files (and the helpers they name). Files are read on each call. */
export function authFileCredentials(files: readonly string[], opts: { readonly runHelper?: HelperRunner } = {}): CredentialSource {
  const runHelper = opts.runHelper ?? runCredentialHelper;
  return {
    async get(registry, o = {}) {
      for (const file of files) {
        const config = await readAuthFile(file, o.signal);
        if (config === undefined) continue;
        const found = await lookup(config, file, registry, runHelper, o.signal);
        if (found !== undefined) return found;
      }
      return undefined;
    },
  };
}

interface AuthFile {
  auths?: Record<string, { auth?: string; identitytoken?: string; [k: string]: unknown }>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
  [k: string]: unknown;
}

async function readAuthFile(file: string, signal?: AbortSignal): Promise<AuthFile | undefined> {
  let text: string;
  try {
    text = await readFile(file, signal ? { encoding: 'utf8', signal } : { encoding: 'utf8' });
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    if (isAbortError(e)) throw e;
    throw new TsbuildError('AUTH_CONFIG_INVALID', `cannot read the credentials file ${file} (${String(code ?? e)})`, { cause: e });
  }
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new TsbuildError('AUTH_CONFIG_INVALID', `the credentials file ${file} is not valid JSON`, {
      hint: 'fix or remove the file; `tsbuild login` writes a new one',
    });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TsbuildError('AUTH_CONFIG_INVALID', `the credentials file ${file} is not a JSON object`);
  }
  return value as AuthFile;
}

/** Host part of an auths key: `https://host:5000/v1/` -> `host:5000`. */
function keyHost(key: string): string {
  let k = key.replace(/^[a-z]+:\/\//i, '');
  const slash = k.indexOf('/');
  if (slash !== -1) k = k.slice(0, slash);
  return normalizeRegistry(k === 'registry-1.docker.io' ? DOCKER_HUB_REGISTRY : k);
}

/** The name a helper knows a registry by: Docker Hub's v1 URL, else the host. */
function helperServerName(registry: string): string {
  return normalizeRegistry(registry) === DOCKER_HUB_REGISTRY ? DOCKER_HUB_AUTH_KEY : registry;
}

async function lookup(config: AuthFile, file: string, registry: string, runHelper: HelperRunner, signal?: AbortSignal): Promise<Credential | undefined> {
  const reg = normalizeRegistry(registry);
  const helpers = config.credHelpers ?? {};
  for (const [key, helper] of Object.entries(helpers)) {
    if (keyHost(key) === reg && typeof helper === 'string') return helperGet(helper, registry, runHelper, signal);
  }
  const auths = config.auths ?? {};
  for (const [key, entry] of Object.entries(auths)) {
    if (keyHost(key) !== reg || typeof entry !== 'object' || entry === null) continue;
    if (typeof entry.identitytoken === 'string' && entry.identitytoken !== '') {
      const user = typeof entry.auth === 'string' ? decodeAuth(entry.auth, file, key).username : undefined;
      return { ...(user ? { username: user } : {}), identityToken: entry.identitytoken };
    }
    if (typeof entry.auth === 'string' && entry.auth !== '') return decodeAuth(entry.auth, file, key);
    // An entry without secrets: Docker writes `{}` here when a credsStore holds the secret.
  }
  if (typeof config.credsStore === 'string' && config.credsStore !== '') return helperGet(config.credsStore, registry, runHelper, signal);
  return undefined;
}

function decodeAuth(auth: string, file: string, key: string): { username: string; password: string } {
  const text = Buffer.from(auth, 'base64').toString('utf8');
  const colon = text.indexOf(':');
  if (colon <= 0) {
    throw new TsbuildError('AUTH_CONFIG_INVALID', `the credentials for ${key} in ${file} are malformed (auth is not base64 of user:password)`, {
      hint: `log in again with \`tsbuild login ${keyHost(key)}\``,
    });
  }
  return { username: text.slice(0, colon), password: text.slice(colon + 1) };
}

async function helperGet(helper: string, registry: string, runHelper: HelperRunner, signal?: AbortSignal): Promise<Credential | undefined> {
  const res = await runHelper(helper, 'get', helperServerName(registry), signal);
  if (res.code !== 0) {
    if (/credentials not found/i.test(res.stdout + res.stderr)) return undefined;
    throw new TsbuildError('AUTH_HELPER_FAILED', `credential helper docker-credential-${helper} failed for ${registry} (exit ${res.code})`, {
      hint: `run \`echo ${helperServerName(registry)} | docker-credential-${helper} get\` to see why`,
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(res.stdout);
  } catch {
    throw new TsbuildError('AUTH_HELPER_FAILED', `credential helper docker-credential-${helper} printed something that is not JSON`);
  }
  const v = value as { Username?: unknown; Secret?: unknown };
  if (typeof v.Secret !== 'string') throw new TsbuildError('AUTH_HELPER_FAILED', `credential helper docker-credential-${helper} gave no Secret`);
  const username = typeof v.Username === 'string' ? v.Username : '';
  if (username === '<token>') return { identityToken: v.Secret };
  return { username, password: v.Secret };
}

/** The real helper protocol: docker/docker-credential-helpers client. */
const runCredentialHelper: HelperRunner = (name, action, input, signal) =>
  new Promise((resolve, reject) => {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) {
      reject(new TsbuildError('AUTH_CONFIG_INVALID', `invalid credential helper name ${JSON.stringify(name)}`));
      return;
    }
    // node:child_process loads only when a helper runs (most pushes and pulls have none).
    const { spawn } = createRequire(import.meta.url)('node:child_process') as typeof import('node:child_process');
    const child = spawn(`docker-credential-${name}`, [action], { stdio: ['pipe', 'pipe', 'pipe'], ...(signal ? { signal } : {}) });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (e) => {
      if (isAbortError(e)) reject(e);
      else
        reject(
          new TsbuildError('AUTH_HELPER_FAILED', `cannot run credential helper docker-credential-${name} (${(e as { code?: string }).code ?? e.message})`, {
            hint: `install docker-credential-${name}, or remove it from credsStore/credHelpers in your docker config`,
          }),
        );
    });
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(input);
  });

// ---- login / logout ---------------------------------------------------------------------------

export interface SaveCredentialOptions {
  readonly signal?: AbortSignal | undefined;
  readonly runHelper?: HelperRunner;
}

/**
 * `tsbuild login`: store credentials for `registry` in the docker config at `file` (created
 * with mode 0600, replaced atomically), or in the credential helper the file names for it.
 * Returns where they went.
 */
export async function saveCredential(file: string, registry: string, cred: { username: string; password: string }, opts: SaveCredentialOptions = {}): Promise<'file' | `helper:${string}`> {
  const config = (await readAuthFile(file, opts.signal)) ?? {};
  const key = authKey(registry);
  const helper = helperFor(config, registry);
  if (helper !== undefined) {
    const run = opts.runHelper ?? runCredentialHelper;
    const res = await run(helper, 'store', JSON.stringify({ ServerURL: helperServerName(registry), Username: cred.username, Secret: cred.password }), opts.signal);
    if (res.code !== 0) throw new TsbuildError('AUTH_HELPER_FAILED', `credential helper docker-credential-${helper} could not store the credentials for ${registry} (exit ${res.code})`);
    const auths = { ...(config.auths ?? {}) };
    if (config.credHelpers?.[registry] === undefined) auths[key] = {};
    await writeAuthFile(file, { ...config, auths });
    return `helper:${helper}`;
  }
  const auths = { ...(config.auths ?? {}) };
  for (const k of Object.keys(auths)) if (keyHost(k) === normalizeRegistry(registry)) delete auths[k];
  auths[key] = { auth: Buffer.from(`${cred.username}:${cred.password}`, 'utf8').toString('base64') };
  await writeAuthFile(file, { ...config, auths });
  return 'file';
}

/** `tsbuild logout`: remove the credentials for `registry`; false if there were none. */
export async function removeCredential(file: string, registry: string, opts: SaveCredentialOptions = {}): Promise<boolean> {
  const config = await readAuthFile(file, opts.signal);
  if (config === undefined) return false;
  let removed = false;
  const helper = helperFor(config, registry);
  if (helper !== undefined) {
    const run = opts.runHelper ?? runCredentialHelper;
    const res = await run(helper, 'erase', helperServerName(registry), opts.signal);
    removed = res.code === 0;
  }
  const auths = { ...(config.auths ?? {}) };
  for (const k of Object.keys(auths)) {
    if (keyHost(k) === normalizeRegistry(registry)) {
      delete auths[k];
      removed = true;
    }
  }
  if (removed) await writeAuthFile(file, { ...config, auths });
  return removed;
}

function authKey(registry: string): string {
  return normalizeRegistry(registry) === DOCKER_HUB_REGISTRY ? DOCKER_HUB_AUTH_KEY : registry;
}

function helperFor(config: AuthFile, registry: string): string | undefined {
  for (const [key, helper] of Object.entries(config.credHelpers ?? {})) {
    if (keyHost(key) === normalizeRegistry(registry)) return helper;
  }
  return typeof config.credsStore === 'string' && config.credsStore !== '' ? config.credsStore : undefined;
}

async function writeAuthFile(file: string, config: AuthFile): Promise<void> {
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  try {
    const h = await open(tmp, 'wx', 0o600);
    try {
      await h.writeFile(`${JSON.stringify(config, null, '\t')}\n`);
      await h.sync();
    } finally {
      await h.close();
    }
    await chmod(tmp, 0o600);
    await rename(tmp, file);
  } catch (e) {
    await rm(tmp, { force: true });
    throw new TsbuildError('AUTH_CONFIG_INVALID', `cannot write the credentials file ${file} (${String((e as { code?: unknown }).code ?? e)})`, { cause: e });
  }
}
