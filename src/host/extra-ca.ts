import { readFileSync } from 'node:fs';

/**
 * NODE_EXTRA_CA_CERTS without its start-up cost. Node 20 reads and parses every certificate of
 * the file it names when the process starts, before any JavaScript runs, whether or not the
 * command makes a TLS connection: ~0.04 s of CPU for the 144 certificates of Debian's bundle,
 * half of what `node -e 0` costs (Node 23 made it lazy). The installed command (dist/cmd/tsbuild,
 * made from cmd/tsbuild.sh) therefore hands the file name over in TSBUILD_NODE_EXTRA_CA_CERTS
 * and starts Node without the variable; adoptDeferredExtraCa() puts it back into the
 * environment (child processes see what the user set) and the certificates are read when a
 * verified TLS connection is first made: the registry client's (registry/transport.ts) and the
 * downloads of ADD <url> and remote contexts (registry/ fetchDispatcher).
 */
let deferredFile: string | undefined;
let certificates: readonly string[] | undefined;

/** At the process edge: takes over the file that the launcher moved aside, if any. */
export function adoptDeferredExtraCa(env: NodeJS.ProcessEnv): void {
  const file = env['TSBUILD_NODE_EXTRA_CA_CERTS'];
  if (file === undefined) return;
  delete env['TSBUILD_NODE_EXTRA_CA_CERTS'];
  // Set again by something between the launcher and Node: then Node has read it itself.
  if (env['NODE_EXTRA_CA_CERTS'] !== undefined) return;
  env['NODE_EXTRA_CA_CERTS'] = file;
  if (file !== '') deferredFile = file;
}

/** Whether Node's default CA store lacks certificates the user named (they were deferred). */
export function hasDeferredExtraCa(): boolean {
  return deferredFile !== undefined;
}

/**
 * The deferred NODE_EXTRA_CA_CERTS file's PEM text (one entry), read once; [] when nothing was
 * deferred. A file that cannot be read is skipped with Node's own warning, as Node does.
 */
export function deferredExtraCaCertificates(warn: (message: string) => void = (m) => process.emitWarning(m)): readonly string[] {
  if (deferredFile === undefined) return [];
  if (certificates !== undefined) return certificates;
  try {
    certificates = [readFileSync(deferredFile, 'utf8')];
  } catch (e) {
    certificates = [];
    warn(`Ignoring extra certs from \`${deferredFile}\`, load failed: ${(e as { code?: string }).code ?? String(e)}`);
  }
  return certificates;
}
