import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gunzipSync } from 'node:zlib';
import { storeWithBusybox, tool, tsbuild, writeTree, type RunResult } from './support/cli.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { startTokenIssuer, type TokenIssuer } from './support/token-issuer.js';

// The compiled CLI (npx tsc -p . first) against the real registry with token auth:
// login/logout, push, pull, tag, and secrets never in the output.
let tmp: string;
let issuer: TokenIssuer;
let reg: RunningRegistry;
let env: NodeJS.ProcessEnv;
let rootfsTar: string;
const PASSWORD = 'pw-s3cret-bob';
const BASIC = Buffer.from(`bob:${PASSWORD}`).toString('base64');

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'tsbuild-regcli-'));
  issuer = await startTokenIssuer({ dir: tmp, users: { bob: PASSWORD }, acl: (user, repo) => (user === 'bob' ? ['pull', 'push'] : repo.startsWith('public/') ? ['pull'] : []) });
  reg = await startRegistry({ mode: { kind: 'token', realm: issuer.realm, service: issuer.service, issuer: issuer.issuer, rootCertBundle: issuer.rootCertBundle } });
  env = { DOCKER_CONFIG: path.join(tmp, 'docker'), REGISTRY_AUTH_FILE: '', XDG_RUNTIME_DIR: path.join(tmp, 'xdg') };
  const rootfs = path.join(tmp, 'rootfs');
  await fs.mkdir(path.join(rootfs, 'etc'), { recursive: true });
  await fs.writeFile(path.join(rootfs, 'etc', 'hello'), 'hello from the registry test\n');
  rootfsTar = path.join(tmp, 'rootfs.tar');
  await tool('tar', ['-C', rootfs, '-cf', rootfsTar, '.']);
});

afterAll(async () => {
  await reg?.stop();
  await issuer?.stop();
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

function noSecrets(r: RunResult): void {
  const all = r.stdout + r.stderr;
  expect(all).not.toContain(PASSWORD);
  expect(all).not.toContain(BASIC);
  expect(all).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}/); // a JWT
  expect(all).not.toMatch(/\n\s+at /); // no stack trace
}

const root = (name: string) => path.join(tmp, `root-${name}`);

describe('tsbuild login, push, pull, tag, logout', () => {
  it('round-trips an image through the registry with stored credentials', async () => {
    const bad = await tsbuild(['login', reg.host, '-u', 'bob', '--password-stdin'], { env, input: 'wrong\n' });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^error: /);
    noSecrets(bad);

    const login = await tsbuild(['login', reg.host, '-u', 'bob', '--password-stdin'], { env, input: `${PASSWORD}\n` });
    expect(login.code, login.stderr).toBe(0);
    expect(login.stdout).toContain('Login Succeeded');
    noSecrets(login);
    const configFile = path.join(tmp, 'docker', 'config.json');
    expect((await fs.stat(configFile)).mode & 0o777).toBe(0o600);
    const config = JSON.parse(await fs.readFile(configFile, 'utf8')) as { auths: Record<string, { auth: string }> };
    expect(config.auths[reg.host]?.auth).toBe(BASIC);

    const imported = await tsbuild(['import', rootfsTar, 'hello:v1'], { root: root('a'), env });
    expect(imported.code, imported.stderr).toBe(0);
    const id = imported.stdout.trim();

    const push = await tsbuild(['push', 'hello:v1', `${reg.host}/private/hello:v1`, '--log-level', 'debug'], { root: root('a'), env });
    expect(push.code, push.stderr).toBe(0);
    expect(push.stdout.trim()).toMatch(/^sha256:[a-f0-9]{64}$/);
    expect(push.stderr).toContain('Pushed');
    noSecrets(push);

    const pull = await tsbuild(['pull', `${reg.host}/private/hello:v1`, '--log-level', 'debug'], { root: root('b'), env });
    expect(pull.code, pull.stderr).toBe(0);
    expect(pull.stdout.trim()).toBe(id);
    expect(pull.stderr).toContain('Pull complete');
    expect(pull.stderr).toContain(`Digest: ${push.stdout.trim()}`);
    noSecrets(pull);

    const again = await tsbuild(['pull', `${reg.host}/private/hello:v1`], { root: root('b'), env });
    expect(again.stderr).toContain('Already exists');

    const tag = await tsbuild(['tag', `${reg.host}/private/hello:v1`, 'mine:latest'], { root: root('b'), env });
    expect(tag.code, tag.stderr).toBe(0);
    const images = await tsbuild(['images'], { root: root('b'), env });
    expect(images.stdout).toContain('mine');

    const logout = await tsbuild(['logout', reg.host], { env });
    expect(logout.code, logout.stderr).toBe(0);
    const after = JSON.parse(await fs.readFile(configFile, 'utf8')) as { auths: Record<string, unknown> };
    expect(after.auths[reg.host]).toBeUndefined();
    const denied = await tsbuild(['pull', `${reg.host}/private/hello:v1`], { root: root('c'), env });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/^error: .*private\/hello/);
    noSecrets(denied);
    const again2 = await tsbuild(['logout', reg.host], { env });
    expect(again2.code).toBe(1);
  });

  it('pulls what skopeo pushed from a tsbuild OCI archive', async () => {
    const imported = await tsbuild(['import', rootfsTar, 'sk:v1'], { root: root('d'), env });
    expect(imported.code, imported.stderr).toBe(0);
    const archive = path.join(tmp, 'sk.tar');
    const save = await tsbuild(['save', '--format', 'oci', '-o', archive, 'sk:v1'], { root: root('d'), env });
    expect(save.code, save.stderr).toBe(0);
    await tool('skopeo', ['copy', '--dest-tls-verify=false', '--dest-creds', `bob:${PASSWORD}`, `oci-archive:${archive}`, `docker://${reg.host}/public/sk:v1`]);
    const pull = await tsbuild(['pull', `${reg.host}/public/sk:v1`], { root: root('e'), env });
    expect(pull.code, pull.stderr).toBe(0);
    expect(pull.stdout.trim()).toBe(imported.stdout.trim());
  });

  it('build --push with a --secret and stored credentials leaves neither in the store or the logs', async () => {
    const SECRET = 'tok-9f1c2e7a-never-in-a-layer';
    const login = await tsbuild(['login', reg.host, '-u', 'bob', '--password-stdin'], { env, input: `${PASSWORD}\n` });
    expect(login.code, login.stderr).toBe(0);
    const store = root('secrets');
    await storeWithBusybox(store);
    const ctx = path.join(tmp, 'secret-ctx');
    await writeTree(ctx, {
      Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=tok cat /run/secrets/tok | sha256sum > /tok.sha && echo "$(wc -c < /run/secrets/tok)" > /tok.len\n',
    });
    const secretFile = path.join(tmp, 'tok.txt');
    await fs.writeFile(secretFile, SECRET);
    const build = await tsbuild(['build', '--progress', 'plain', '--log-level', 'trace', '--secret', `id=tok,src=${secretFile}`, '--push', '-t', `${reg.host}/private/sec:v1`, ctx], { root: store, env });
    expect(build.code, build.stderr).toBe(0);
    noSecrets(build);
    expect(build.stdout + build.stderr).not.toContain(SECRET);
    const hist = await tsbuild(['history', '--no-trunc', `${reg.host}/private/sec:v1`], { root: store, env });
    const insp = await tsbuild(['inspect', `${reg.host}/private/sec:v1`], { root: store, env });
    for (const r of [hist, insp]) {
      expect(r.code, r.stderr).toBe(0);
      noSecrets(r);
      expect(r.stdout).not.toContain(SECRET);
    }
    // Every file of the store (layers, configs, manifests, cache keys, meta, leases), gzip
    // blobs decompressed: none holds the secret, the password, the Basic credential or a token.
    let files = 0;
    for (const rel of await fs.readdir(store, { recursive: true })) {
      const f = path.join(store, String(rel));
      const st = await fs.lstat(f);
      if (!st.isFile()) continue;
      files++;
      let bytes = await fs.readFile(f);
      if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
      const text = bytes.toString('latin1');
      for (const needle of [SECRET, PASSWORD, BASIC]) expect(text.includes(needle), `${needle} in ${f}`).toBe(false);
      expect(text, f).not.toMatch(/eyJ[A-Za-z0-9_-]{20,}\.eyJ/);
    }
    expect(files).toBeGreaterThan(10);
    // The step did see the secret: its digest and length went into the image.
    const out = path.join(tmp, 'secret-out');
    const local = await tsbuild(['build', '--secret', `id=tok,src=${secretFile}`, '--output', `type=local,dest=${out}`, ctx], { root: store, env });
    expect(local.code, local.stderr).toBe(0);
    expect((await fs.readFile(path.join(out, 'tok.len'), 'utf8')).trim()).toBe(String(SECRET.length));
    await tsbuild(['logout', reg.host], { env });
  });

  it('reads REGISTRY_AUTH_FILE, then $XDG_RUNTIME_DIR/containers/auth.json, before the docker config', async () => {
    const dir = path.join(tmp, 'authfiles');
    const entry = (pw: string) => JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`bob:${pw}`).toString('base64') } } });
    await fs.mkdir(path.join(dir, 'docker'), { recursive: true });
    await fs.mkdir(path.join(dir, 'xdg', 'containers'), { recursive: true });
    await fs.mkdir(path.join(dir, 'xdg-empty'), { recursive: true });
    // The docker config holds a wrong password: only the files read before it can make these work.
    await fs.writeFile(path.join(dir, 'docker', 'config.json'), entry('wrong-docker'));
    await fs.writeFile(path.join(dir, 'xdg', 'containers', 'auth.json'), entry(PASSWORD));
    await fs.writeFile(path.join(dir, 'good.json'), entry(PASSWORD));
    await fs.writeFile(path.join(dir, 'bad.json'), entry('wrong-authfile'));
    const base = { DOCKER_CONFIG: path.join(dir, 'docker'), XDG_RUNTIME_DIR: path.join(dir, 'xdg-empty'), REGISTRY_AUTH_FILE: '' };

    const imported = await tsbuild(['import', rootfsTar, 'envauth:v1'], { root: root('g'), env });
    expect(imported.code, imported.stderr).toBe(0);
    const dest = `${reg.host}/private/envauth:v1`;
    const push = await tsbuild(['push', 'envauth:v1', dest], { root: root('g'), env: { ...base, REGISTRY_AUTH_FILE: path.join(dir, 'good.json') } });
    expect(push.code, push.stderr).toBe(0);
    noSecrets(push);
    const xdg = await tsbuild(['pull', dest], { root: root('h'), env: { ...base, XDG_RUNTIME_DIR: path.join(dir, 'xdg') } });
    expect(xdg.code, xdg.stderr).toBe(0);
    expect(xdg.stdout.trim()).toBe(imported.stdout.trim());

    // REGISTRY_AUTH_FILE wins over the XDG file; and a wrong password is a clear 401, exit 1.
    for (const e of [{ ...base, XDG_RUNTIME_DIR: path.join(dir, 'xdg'), REGISTRY_AUTH_FILE: path.join(dir, 'bad.json') }, base]) {
      const denied = await tsbuild(['pull', dest], { root: root('i'), env: e });
      expect(denied.code).toBe(1);
      const first = denied.stderr.split('\n')[0] ?? '';
      expect(first).toMatch(/^error: /);
      expect(first).toContain('private/envauth:v1');
      expect(first).toContain(reg.host);
      expect(first).toMatch(/401|refused the credentials/);
      noSecrets(denied);
      expect(denied.stderr).not.toContain('wrong-');
    }
    const images = await tsbuild(['images', '-q'], { root: root('i'), env });
    expect(images.stdout.trim()).toBe('');
  });

  it('exit 1 with a clear message for an unreachable registry and a bad reference', async () => {
    const r = await tsbuild(['pull', '127.0.0.1:1/x/y:z'], { root: root('f'), env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^error: manifest 127\.0\.0\.1:1\/x\/y:z: .*127\.0\.0\.1:1/);
    noSecrets(r);
    const bad = await tsbuild(['pull', 'team/App:v1'], { root: root('f'), env });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^error: invalid reference/);
  });
});

describe('what a push, a pull and a save load', () => {
  it('at the default log level, over plain HTTP (pull with --no-unpack): neither pino, node:http2 nor node:child_process', async () => {
    const open = await startRegistry({ mode: { kind: 'open' } });
    try {
      // Every module the process loaded, written when it exits (Node's own list and CommonJS's cache).
      const preload = path.join(tmp, 'loaded-modules.cjs');
      await fs.writeFile(
        preload,
        "process.on('exit', () => require('fs').writeFileSync(process.env.TSBUILD_TEST_LOADED, JSON.stringify([...process.moduleLoadList, ...Object.keys(require.cache)])));\n",
      );
      const loaded = async (name: string, args: string[]): Promise<string[]> => {
        const out = path.join(tmp, `loaded-${name}.json`);
        const r = await tsbuild(args, { root: root('modules'), env: { ...env, NODE_OPTIONS: `--require ${preload}`, TSBUILD_TEST_LOADED: out } });
        expect(r.code, r.stderr).toBe(0);
        return JSON.parse(await fs.readFile(out, 'utf8')) as string[];
      };
      expect((await tsbuild(['import', rootfsTar, 'mods:v1'], { root: root('modules'), env })).code).toBe(0);
      const heavy = (mods: string[]) => mods.filter((m) => /^NativeModule (http2|child_process)$/.test(m) || /[\\/]pino[\\/]/.test(m));
      expect(heavy(await loaded('push', ['push', 'mods:v1', `${open.host}/mods/x:v1`]))).toEqual([]);
      // A pull that unpacks for RUN steps probes the sandbox (child processes); --no-unpack does not.
      expect(heavy(await loaded('pull', ['pull', '--no-unpack', `${open.host}/mods/x:v1`]))).toEqual([]);
      expect(heavy(await loaded('save', ['save', '--format', 'oci', '-o', path.join(tmp, 'mods.tar'), 'mods:v1']))).toEqual([]);
      // The same push at --log-level debug does log, through pino.
      const debug = await tsbuild(['push', 'mods:v1', `${open.host}/mods/y:v1`, '--log-level', 'debug'], { root: root('modules'), env });
      expect(debug.code, debug.stderr).toBe(0);
      expect(debug.stderr).toMatch(/"msg":"registry request"/);
    } finally {
      await open.stop();
    }
  });
});
