import type { ChildProcess } from 'node:child_process';
import fsp from 'node:fs/promises';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { TsbuildError } from '../errors.js';

/**
 * SSH agent forwarding for `RUN --mount=type=ssh` (`--ssh ID[=SOCKET|KEY[,KEY...]]`, the form
 * of docker build, buildx and buildah). Each id names an agent socket on the host: the given
 * socket, `$SSH_AUTH_SOCK` for `default` with no path, or a private ssh-agent that tsbuild
 * starts and loads the given key files into (as BuildKit loads keys into an in-process agent).
 * A step never sees the host's socket itself: it gets a proxy socket with the mount's
 * mode/uid/gid (BuildKit's defaults: 0600, root), so a step running as another USER can use it
 * and the host socket's directory stays closed.
 */
export interface SshSources {
  /** Host agent socket per id. */
  readonly sockets: ReadonlyMap<string, string>;
  /** Stop the agents tsbuild started. */
  close(): Promise<void>;
}

const NO_SSH: SshSources = { sockets: new Map(), close: async () => undefined };

export async function openSshSources(specs: readonly string[], env: NodeJS.ProcessEnv, cwd: string): Promise<SshSources> {
  if (specs.length === 0) return NO_SSH;
  const sockets = new Map<string, string>();
  const agents: ChildProcess[] = [];
  const dirs: string[] = [];
  const close = async (): Promise<void> => {
    for (const a of agents) a.kill('SIGTERM');
    await Promise.all(dirs.map((d) => fsp.rm(d, { recursive: true, force: true })));
  };
  try {
    for (const spec of specs) {
      const eq = spec.indexOf('=');
      const id = (eq < 0 ? spec : spec.slice(0, eq)).trim();
      if (!/^[A-Za-z0-9_.-]+$/.test(id)) throw new TsbuildError('USAGE', `invalid --ssh ${JSON.stringify(spec)}: use ID, ID=SOCKET or ID=KEYFILE[,KEYFILE...]`);
      if (sockets.has(id)) throw new TsbuildError('USAGE', `--ssh ${id} is given twice`);
      const paths = eq < 0 ? [] : spec.slice(eq + 1).split(',').filter((p) => p !== '');
      if (paths.length === 0) {
        const sock = env['SSH_AUTH_SOCK'];
        if (sock === undefined || sock === '') {
          throw new TsbuildError('USAGE', `--ssh ${id}: no socket given and SSH_AUTH_SOCK is not set`, { hint: 'start an agent (eval "$(ssh-agent)"; ssh-add) or pass --ssh ID=/path/to/agent.sock or --ssh ID=/path/to/key' });
        }
        sockets.set(id, await checkedSocket(id, path.resolve(cwd, sock)));
        continue;
      }
      const resolved = paths.map((p) => path.resolve(cwd, p));
      const kinds = await Promise.all(resolved.map(async (p) => (await fsp.stat(p).catch(() => undefined))?.isSocket()));
      if (resolved.length === 1 && kinds[0] === true) {
        sockets.set(id, resolved[0]!);
        continue;
      }
      if (kinds.some((k) => k === true)) throw new TsbuildError('USAGE', `--ssh ${id}: give either one agent socket or key files, not both`);
      const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'tsbuild-ssh-'));
      dirs.push(dir);
      const sock = path.join(dir, 'agent.sock');
      agents.push(await startAgent(id, sock));
      for (const key of resolved) await addKey(id, sock, key);
      sockets.set(id, sock);
    }
  } catch (e) {
    await close();
    throw e;
  }
  return { sockets, close };
}

async function checkedSocket(id: string, sock: string): Promise<string> {
  const st = await fsp.stat(sock).catch(() => undefined);
  if (st?.isSocket() !== true) throw new TsbuildError('USAGE', `--ssh ${id}: ${sock} is not an agent socket`);
  return sock;
}

async function startAgent(id: string, sock: string): Promise<ChildProcess> {
  // Loaded here, not at the top: every build loads this module, few use --ssh (a cached build
  // would pay for child_process, net and dgram at start-up).
  const { spawn } = await import('node:child_process');
  // -D: stay in the foreground as our child, so it ends when we stop it.
  const agent = spawn('ssh-agent', ['-D', '-a', sock], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  agent.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const failed = new Promise<never>((_, reject) => {
    agent.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new TsbuildError('SANDBOX_UNAVAILABLE', `--ssh ${id}: cannot start ssh-agent to hold the keys (${e.code === 'ENOENT' ? 'ssh-agent is not installed' : e.message})`, {
          hint: 'install openssh-client, or pass an agent socket: --ssh ID=$SSH_AUTH_SOCK',
        }),
      ),
    );
    agent.once('exit', (code) => reject(new TsbuildError('SANDBOX_UNAVAILABLE', `--ssh ${id}: ssh-agent exited (${code ?? 'signal'}): ${stderr.trim()}`)));
  });
  failed.catch(() => undefined);
  for (let i = 0; i < 200; i++) {
    const ready = await Promise.race([fsp.stat(sock).then((s) => s.isSocket(), () => false), failed]);
    if (ready) return agent;
    await new Promise((r) => setTimeout(r, 10));
  }
  agent.kill('SIGKILL');
  throw new TsbuildError('SANDBOX_UNAVAILABLE', `--ssh ${id}: ssh-agent did not open its socket`);
}

async function addKey(id: string, sock: string, key: string): Promise<void> {
  const st = await fsp.stat(key).catch(() => undefined);
  if (!st?.isFile()) throw new TsbuildError('USAGE', `--ssh ${id}: ${key} is neither an agent socket nor a key file`);
  const { spawn } = await import('node:child_process');
  const out = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    // Never prompt: a key with a passphrase must be added to an agent beforehand.
    const p = spawn('ssh-add', ['-q', key], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, SSH_AUTH_SOCK: sock, SSH_ASKPASS_REQUIRE: 'never', DISPLAY: '' } });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stderr }));
  });
  if (out.code !== 0) {
    throw new TsbuildError('USAGE', `--ssh ${id}: ssh-add could not load ${key}: ${out.stderr.trim().split('\n').pop() ?? ''}`, {
      hint: 'a key with a passphrase must be loaded into an agent first (ssh-add KEY), then pass --ssh ID=$SSH_AUTH_SOCK',
    });
  }
}

/**
 * A proxy socket at `sockPath` forwarding every connection to the agent at `upstream`, with
 * the mount's mode and owner. Closed by the returned function.
 */
export async function proxyAgent(upstream: string, sockPath: string, mode: number, uid: number, gid: number): Promise<() => void> {
  const { default: netModule } = await import('node:net');
  const conns = new Set<net.Socket>();
  const server = netModule.createServer((client) => {
    const agent = netModule.connect(upstream);
    conns.add(client).add(agent);
    const done = (): void => {
      client.destroy();
      agent.destroy();
      conns.delete(client);
      conns.delete(agent);
    };
    client.on('error', done).on('close', done);
    agent.on('error', done).on('close', done);
    client.pipe(agent).pipe(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(sockPath, () => resolve());
  });
  server.unref();
  await fsp.chmod(sockPath, mode);
  if (process.getuid?.() === 0) await fsp.chown(sockPath, uid, gid);
  return () => {
    for (const c of conns) c.destroy();
    server.close();
  };
}
