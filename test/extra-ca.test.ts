import fs from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bin, repoRoot, runProcess, tempDir, writeTree, type RunResult } from './support/cli.js';
import { makeCertificate, nonLoopbackAddress, startRegistry, type RunningRegistry } from './support/registry.js';

// The installed command (dist/cmd/tsbuild, cmd/tsbuild.sh) starts Node without
// NODE_EXTRA_CA_CERTS (Node 20 parses that file at every start) and the CLI reads the file
// when a verified TLS connection first needs it (src/host/extra-ca.ts). These run the launcher
// as a user's shell would, against a real registry behind TLS and an https file server, both
// with a self-signed certificate that only the file named by NODE_EXTRA_CA_CERTS vouches for.
const launcher = path.join(repoRoot, 'dist', 'cmd', 'tsbuild');
const TLS_HOST = nonLoopbackAddress();

let tmp: string;
let registry: RunningRegistry;
let server: https.Server;
let fileUrl: string;
let trusted: string; // the certificate of both servers
let unrelated: string; // a valid PEM file that vouches for neither

function run(cmd: readonly string[], env: NodeJS.ProcessEnv, input = ''): Promise<RunResult> {
  const base = { ...process.env };
  delete base['NODE_EXTRA_CA_CERTS'];
  delete base['TSBUILD_NODE_EXTRA_CA_CERTS'];
  return runProcess(cmd, { cwd: tmp, env: { ...base, TSBUILD_ROOT: path.join(tmp, 'store'), DOCKER_CONFIG: path.join(tmp, 'docker'), ...env }, input });
}

beforeAll(async () => {
  tmp = await tempDir('tsbuild-extra-ca-');
  registry = await startRegistry({ mode: { kind: 'basic-tls', users: { alice: 'correct horse' } }, listenHost: TLS_HOST });
  trusted = path.join(tmp, 'trusted.pem');
  await fs.writeFile(trusted, registry.caPem!);
  unrelated = (await makeCertificate(tmp, 'unrelated', ['127.0.0.1'])).cert;
  // The file server presents the registry's own certificate (made for TLS_HOST too) and key.
  const pair = { cert: registry.caPem!, key: await fs.readFile(path.join(registry.dir, 'registry.key')) };
  server = https.createServer(pair, (req, res) => {
    if (req.url === '/hello.txt') res.end('hello over verified TLS\n');
    else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, TLS_HOST, resolve));
  fileUrl = `https://${TLS_HOST}:${(server.address() as AddressInfo).port}/hello.txt`;
}, 120_000);

afterAll(async () => {
  server?.close();
  await registry?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

describe('NODE_EXTRA_CA_CERTS through the installed command', () => {
  it('is not parsed when Node starts, only when a TLS connection needs it', async () => {
    const missing = { NODE_EXTRA_CA_CERTS: path.join(tmp, 'no-such.pem') };
    // Node itself reads the file at start and warns that it cannot.
    const direct = await run([process.execPath, bin, '--version'], missing);
    expect(direct.code).toBe(0);
    expect(direct.stderr).toMatch(/Ignoring extra certs from/);
    // The launcher: a command without TLS never reads it.
    const launched = await run([launcher, '--version'], missing);
    expect(launched.code).toBe(0);
    expect(launched.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect(launched.stderr).toBe('');
  });

  it('verifies a registry with the certificates it names (tsbuild login over TLS)', async () => {
    const login = ['login', '-u', 'alice', '--password-stdin', registry.host];
    const ok = await run([launcher, ...login], { NODE_EXTRA_CA_CERTS: trusted }, 'correct horse');
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(JSON.parse(await fs.readFile(path.join(tmp, 'docker', 'config.json'), 'utf8')).auths).toHaveProperty([registry.host]);
    // The same command with a file that does not vouch for the registry is refused: the
    // certificates really come from the file.
    const refused = await run([launcher, ...login], { NODE_EXTRA_CA_CERTS: unrelated }, 'correct horse');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr, refused.stderr).toMatch(/certificate|TLS/i);
  });

  it('verifies ADD <https url> with them', async () => {
    const ctx = path.join(tmp, 'ctx');
    await writeTree(ctx, { Dockerfile: `FROM scratch\nADD ${fileUrl} /hello.txt\n` });
    const out = path.join(tmp, 'out');
    const ok = await run([launcher, 'build', '--progress', 'plain', '-o', `type=local,dest=${out}`, ctx], { NODE_EXTRA_CA_CERTS: trusted });
    expect(ok.stderr).not.toMatch(/Error|error:/);
    expect(ok.code).toBe(0);
    expect(await fs.readFile(path.join(out, 'hello.txt'), 'utf8')).toBe('hello over verified TLS\n');
    const refused = await run([launcher, 'build', '--progress', 'plain', '--no-cache', '-o', `type=local,dest=${path.join(tmp, 'out2')}`, ctx], { NODE_EXTRA_CA_CERTS: unrelated });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr, refused.stderr).toMatch(/certificate|TLS/i);
  });
});
