import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requireTool, storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';
import { CLI, MAKE_BUSYBOX, withTestUser } from './support/rootless.js';

// RUN --mount=type=ssh against a real ssh-agent: the host's ssh-add (with its shared libraries)
// is copied into the image so a step can ask the forwarded agent for its keys.
let work: string;
let root: string;
let agent: ChildProcess;
let agentSock: string;
let keyFile: string;
let fingerprint: string;

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('these tests run RUN steps as root; run the suite as root (CI does)');
  for (const t of ['bwrap', 'ssh-agent', 'ssh-add', 'ssh-keygen', 'ldd']) await requireTool(t);
  work = await tempDir('e2e-ssh');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
  keyFile = path.join(work, 'id_test');
  await tool('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'tsbuild-test-key', '-f', keyFile]);
  fingerprint = (await tool('ssh-keygen', ['-l', '-f', `${keyFile}.pub`])).stdout.split(' ')[1]!;
  agentSock = path.join(work, 'agent.sock');
  agent = spawn('ssh-agent', ['-D', '-a', agentSock], { stdio: 'ignore' });
  for (let i = 0; i < 200 && !(await fs.stat(agentSock).then((s) => s.isSocket(), () => false)); i++) await new Promise((r) => setTimeout(r, 10));
  await tool('ssh-add', ['-q', keyFile], { env: { ...process.env, SSH_AUTH_SOCK: agentSock } });
  // ssh-add and the libraries it needs, at their host paths, for COPY into the image.
  const bits = path.join(work, 'bits');
  const libs = (await tool('ldd', ['/usr/bin/ssh-add'])).stdout.match(/\/\S+/g) ?? [];
  for (const f of ['/usr/bin/ssh-add', ...libs]) {
    await fs.mkdir(path.join(bits, path.dirname(f)), { recursive: true });
    await fs.copyFile(await fs.realpath(f), path.join(bits, f));
    await fs.chmod(path.join(bits, f), 0o755);
  }
});
afterAll(async () => {
  agent?.kill();
  await fs.rm(work, { recursive: true, force: true });
});

async function ctxWith(dockerfile: string[]): Promise<string> {
  const ctx = await fs.mkdtemp(path.join(work, 'ctx-'));
  await writeTree(ctx, { Dockerfile: `${dockerfile.join('\n')}\n` });
  await fs.cp(path.join(work, 'bits'), path.join(ctx, 'bits'), { recursive: true });
  return ctx;
}

async function listTree(dir: string): Promise<string[]> {
  return (await fs.readdir(dir, { recursive: true })).map(String).sort();
}

describe('RUN --mount=type=ssh', () => {
  it('forwards the agent to root and to another USER, and leaves no trace in the image', async () => {
    const ctx = await ctxWith([
      'FROM busybox',
      'COPY bits/ /',
      'RUN --mount=type=ssh ssh-add -l > /root-keys && echo "$SSH_AUTH_SOCK" > /root-sock',
      'RUN mkdir -p /home && chown 1000 /home',
      'USER 1000',
      'RUN --mount=type=ssh,id=keys,uid=1000,target=/home/agent ssh-add -l > /home/user-keys && echo "$SSH_AUTH_SOCK" > /home/user-sock',
      'RUN --mount=type=ssh,id=absent echo optional > /home/optional',
      // Default targets under /run, which the image lacks: the USER must be able to reach them.
      'RUN --mount=type=ssh,uid=1000 --mount=type=secret,id=tok,uid=1000 ssh-add -l > /home/user-keys2 && cat /run/secrets/tok > /home/tok',
    ]);
    const out = path.join(work, 'out');
    // In a 0700 directory (mkdtemp): the step's USER could not reach it there.
    const tok = path.join(work, 'token');
    await fs.writeFile(tok, 'tok-value\n');
    const r = await tsbuild(['build', '--progress', 'plain', '--ssh', `default=${agentSock}`, '--ssh', `keys=${keyFile}`, '--secret', `id=tok,src=${tok}`, '--output', `type=local,dest=${out}`, ctx], { root });
    expect(r.stderr).not.toContain('OPENSSH PRIVATE KEY');
    expect(r.code, r.stderr).toBe(0);
    expect(await fs.readFile(path.join(out, 'root-keys'), 'utf8')).toContain(fingerprint);
    expect((await fs.readFile(path.join(out, 'root-sock'), 'utf8')).trim()).toBe('/run/buildkit/ssh_agent.0');
    expect(await fs.readFile(path.join(out, 'home/user-keys'), 'utf8')).toContain(fingerprint);
    expect((await fs.readFile(path.join(out, 'home/user-sock'), 'utf8')).trim()).toBe('/home/agent');
    expect(await fs.readFile(path.join(out, 'home/optional'), 'utf8')).toBe('optional\n');
    // Neither the sockets nor their mount points end up in the image.
    expect(await fs.readFile(path.join(out, 'home/user-keys2'), 'utf8')).toContain(fingerprint);
    expect(await fs.readFile(path.join(out, 'home/tok'), 'utf8')).toBe('tok-value\n');
    expect(await listTree(path.join(out, 'home'))).toEqual(['optional', 'tok', 'user-keys', 'user-keys2', 'user-sock']);
    expect(await fs.stat(path.join(out, 'run/buildkit')).catch(() => undefined)).toBeUndefined();
    // The private agent tsbuild started for the key file is gone.
    expect((await fs.readdir('/tmp')).filter((f) => f.startsWith('tsbuild-ssh-') || f.startsWith('tsbuild-agent-'))).toEqual([]);
  });

  it('works for an ordinary user (rootless), with a secret and an agent for a non-root USER', async () => {
    await withTestUser('ssh', async ({ dir, give, ok }) => {
      await fs.cp(path.join(work, 'bits'), path.join(dir, 'ctx', 'bits'), { recursive: true });
      await writeTree(path.join(dir, 'ctx'), {
        Dockerfile: [
          'FROM busybox',
          'COPY bits/ /',
          'RUN --mount=type=ssh ssh-add -l > /root-keys',
          'USER 1000',
          'RUN --mount=type=ssh,uid=1000 --mount=type=secret,id=tok,uid=1000 ssh-add -l > /tmp/user-keys && cat /run/secrets/tok > /tmp/tok',
          '',
        ].join('\n'),
      });
      await fs.writeFile(path.join(dir, 'token'), 'rootless-tok\n');
      await fs.copyFile(keyFile, path.join(dir, 'key'));
      await give();
      await ok(`${MAKE_BUSYBOX} >/dev/null && ${CLI} build --progress plain --ssh default=${dir}/key --secret id=tok,src=${dir}/token --output type=local,dest=${dir}/out ${dir}/ctx`);
      expect(await fs.readFile(path.join(dir, 'out/root-keys'), 'utf8')).toContain(fingerprint);
      expect(await fs.readFile(path.join(dir, 'out/tmp/user-keys'), 'utf8')).toContain(fingerprint);
      expect(await fs.readFile(path.join(dir, 'out/tmp/tok'), 'utf8')).toBe('rootless-tok\n');
      expect(await fs.stat(path.join(dir, 'out/run')).catch(() => undefined)).toBeUndefined();
    });
  });

  it('a required agent that was not given: a located error, exit 1', async () => {
    const ctx = await ctxWith(['FROM busybox', 'RUN --mount=type=ssh,id=deploy,required true']);
    const r = await tsbuild(['build', '--progress', 'plain', ctx], { root });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:2/);
    expect(r.stderr).toContain('ssh agent "deploy" is required but was not given');
    expect(r.stderr).toContain('--ssh deploy');
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('--ssh default with no SSH_AUTH_SOCK, and a path that is neither socket nor key: usage errors, exit 2', async () => {
    const ctx = await ctxWith(['FROM busybox', 'RUN --mount=type=ssh true']);
    const env = { ...process.env };
    delete env['SSH_AUTH_SOCK'];
    const a = await tsbuild(['build', '--ssh', 'default', ctx], { root, env });
    expect(a.code).toBe(2);
    expect(a.stderr).toContain('SSH_AUTH_SOCK is not set');
    const b = await tsbuild(['build', '--ssh', `default=${path.join(work, 'nope')}`, ctx], { root });
    expect(b.code).toBe(2);
    expect(b.stderr).toContain('is neither an agent socket nor a key file');
  });
});
