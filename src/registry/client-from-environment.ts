import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { TsbuildError } from '../errors.js';
import { RegistryClient } from './client.js';
import { authFileCredentials, authFilesFromEnv, type CredentialSource } from './credentials.js';

export interface RegistryEnvironment {
  /** The process environment as the CLI was given it (REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR, DOCKER_CONFIG, SSL_CERT_FILE). */
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly home: string;
  /** --insecure-registry */
  readonly insecureRegistries?: readonly string[] | undefined;
  /** --tls-ca-file (PEM files); SSL_CERT_FILE is added when set. */
  readonly caFiles?: readonly string[] | undefined;
  readonly logger?: Logger | undefined;
  readonly signal?: AbortSignal | undefined;
  /** Use these instead of the auth files (`tsbuild login` checks the credentials it was given). */
  readonly credentials?: CredentialSource | undefined;
}

/**
 * The registry client a CLI command uses: credentials from the auth files the environment
 * names, extra CA certificates, insecure hosts. The CLI calls this; library code is handed the
 * client (STYLE.md 3).
 */
export async function registryClientFromEnvironment(e: RegistryEnvironment): Promise<RegistryClient> {
  const files = [...(e.caFiles ?? [])];
  const sslCertFile = e.env['SSL_CERT_FILE'];
  if (sslCertFile !== undefined && sslCertFile !== '') files.push(sslCertFile);
  const caCertificates: string[] = [];
  for (const f of files) {
    try {
      caCertificates.push(await readFile(f, e.signal ? { encoding: 'utf8', signal: e.signal } : { encoding: 'utf8' }));
    } catch (err) {
      throw new TsbuildError('USAGE', `cannot read the CA certificate file ${f} (${String((err as { code?: unknown }).code ?? err)})`, {
        hint: 'pass a PEM file with --tls-ca-file or SSL_CERT_FILE',
      });
    }
  }
  return new RegistryClient({
    credentials: e.credentials ?? authFileCredentials(authFilesFromEnv(e.env, e.home)),
    insecureRegistries: e.insecureRegistries ?? [],
    caCertificates,
    ...(e.logger !== undefined ? { logger: e.logger } : {}),
  });
}
