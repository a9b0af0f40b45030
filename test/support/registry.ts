import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

/**
 * Starts the real CNCF distribution registry (Debian package docker-registry) for tests, on a
 * free port with a temp storage directory, in one of three set-ups (TESTING.md):
 *   open        plain HTTP, no auth
 *   basic-tls   htpasswd Basic auth behind TLS with a self-signed certificate made by openssl
 *   token       Bearer token auth; the token issuer (token-issuer.ts) signs with a key whose
 *               certificate is the registry's rootcertbundle
 * A missing docker-registry fails loudly: CI always installs it.
 */
const run = promisify(execFile);

export type RegistryMode =
  | { readonly kind: 'open'; readonly relativeUrls?: boolean }
  | { readonly kind: 'basic-tls'; readonly users: Readonly<Record<string, string>> }
  | { readonly kind: 'token'; readonly realm: string; readonly service: string; readonly issuer: string; readonly rootCertBundle: string };

export interface RunningRegistry {
  /** host:port as a registry name: `127.0.0.1:PORT`. */
  readonly host: string;
  readonly port: number;
  readonly storageDir: string;
  /** PEM of the TLS certificate (basic-tls only). */
  readonly caPem: string | undefined;
  readonly dir: string;
  stop(): Promise<void>;
}

export async function requireRegistryBinary(): Promise<void> {
  try {
    await run('sh', ['-c', 'command -v docker-registry']);
  } catch {
    throw new Error('docker-registry is not installed (Debian package docker-registry); run scripts/setup');
  }
}

/**
 * A non-loopback IPv4 address of this machine: a registry there is not "loopback", so the client
 * must verify its TLS certificate (the path a real remote registry takes).
 */
export function nonLoopbackAddress(): string {
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  throw new Error('this machine has no non-loopback IPv4 address; the TLS tests need one');
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr !== null ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** A self-signed certificate (EC P-256) for the given IPs and names; returns PEM paths. */
export async function makeCertificate(dir: string, name: string, ips: readonly string[], dns: readonly string[] = ['localhost']): Promise<{ cert: string; key: string }> {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  const san = [...ips.map((i) => `IP:${i}`), ...dns.map((d) => `DNS:${d}`)].join(',');
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`, '-addext', `subjectAltName=${san}`,
  ]);
  return { cert, key };
}

export interface StartRegistryOptions {
  readonly mode: RegistryMode;
  /** Address to listen on (default 127.0.0.1). */
  readonly listenHost?: string;
}

export async function startRegistry(opts: StartRegistryOptions): Promise<RunningRegistry> {
  await requireRegistryBinary();
  const listenHost = opts.listenHost ?? '127.0.0.1';
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-registry-'));
  const storageDir = path.join(dir, 'storage');
  await fs.mkdir(storageDir);
  const port = await freePort(listenHost);
  const mode = opts.mode;
  let tls = '';
  let auth = '';
  let caPem: string | undefined;
  if (mode.kind === 'basic-tls') {
    const { cert, key } = await makeCertificate(dir, 'registry', ['127.0.0.1', listenHost]);
    caPem = await fs.readFile(cert, 'utf8');
    tls = `  tls:\n    certificate: ${cert}\n    key: ${key}\n`;
    const htpasswd = path.join(dir, 'htpasswd');
    let lines = '';
    for (const [user, password] of Object.entries(mode.users)) {
      const { stdout } = await run('htpasswd', ['-Bbn', '-C', '4', user, password]);
      lines += stdout.trim() + '\n';
    }
    await fs.writeFile(htpasswd, lines);
    auth = `auth:\n  htpasswd:\n    realm: tsbuild-test\n    path: ${htpasswd}\n`;
  } else if (mode.kind === 'token') {
    auth = `auth:\n  token:\n    realm: ${mode.realm}\n    service: ${mode.service}\n    issuer: ${mode.issuer}\n    rootcertbundle: ${mode.rootCertBundle}\n`;
  }
  const relative = mode.kind === 'open' && mode.relativeUrls === true;
  const config =
    `version: 0.1\n` +
    `log:\n  level: warn\n  accesslog:\n    disabled: true\n` +
    `storage:\n  filesystem:\n    rootdirectory: ${storageDir}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n` +
    `http:\n  addr: ${listenHost}:${port}\n  secret: tsbuild-test-secret\n  relativeurls: ${relative}\n${tls}` +
    auth;
  const configPath = path.join(dir, 'config.yml');
  await fs.writeFile(configPath, config);
  const logPath = path.join(dir, 'registry.log');
  const log = await fs.open(logPath, 'w');
  const child: ChildProcess = spawn('docker-registry', ['serve', configPath], { stdio: ['ignore', log.fd, log.fd], detached: false });
  await log.close();
  let exited = false;
  child.on('exit', () => (exited = true));

  const scheme = mode.kind === 'basic-tls' ? 'https' : 'http';
  const host = `${listenHost}:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited) throw new Error(`docker-registry exited during start-up:\n${await fs.readFile(logPath, 'utf8')}`);
    const status = await probe(`${scheme}://${host}/v2/`).catch(() => 0);
    if (status === 200 || status === 401) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`docker-registry did not answer GET /v2/ within 15 s:\n${await fs.readFile(logPath, 'utf8')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    host,
    port,
    storageDir,
    caPem,
    dir,
    async stop() {
      if (!exited && child.pid !== undefined) {
        const done = new Promise((r) => child.once('exit', r));
        process.kill(child.pid, 'SIGTERM');
        await Promise.race([done, new Promise((r) => setTimeout(r, 3000))]);
        if (!exited) process.kill(child.pid, 'SIGKILL');
      }
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

function probe(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const mod = url.startsWith('https') ? https : http;
    const req = mod.get(url, { rejectUnauthorized: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}
