import { chmod, chown, mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTsbuildError } from '../errors.js';
import { captureUpperDir, collectChanges, type ChangeEntry } from '../snapshot/capture.js';
import { createBwrapRunner, createRuncRunner, probeSandbox, type Runner, type RunSpec, type SandboxCapabilities } from './index.js';
import { freshDirs, makeBusyboxRootfs, mountsUnder, processesMatching } from './test-fixture.js';

let base: string;
let lower: string;
let extraLower: string;
let caps: SandboxCapabilities;
let n = 0;

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('runner.test.ts runs as root (rootless is rootless.test.ts)');
  caps = await probeSandbox();
  if (!caps.bwrap.ok) throw new Error(`bwrap missing: ${caps.bwrap.reason ?? ''} (run scripts/setup)`);
  if (!caps.runc.ok) throw new Error(`runc missing: ${caps.runc.reason ?? ''} (run scripts/setup)`);
  if (!caps.overlay.ok) throw new Error(`overlay missing: ${caps.overlay.reason ?? ''}`);
  if (!caps.xattrReader.ok) throw new Error(`getfattr missing: ${caps.xattrReader.reason ?? ''} (apt-get install attr)`);
  base = await mkdtemp(join(tmpdir(), 'tsbuild-sandbox-test-'));
  // tmpDir must be traversable by the step's user (BwrapRunnerOptions.tmpDir).
  await chmod(base, 0o711);
  lower = await makeBusyboxRootfs(join(base, 'busybox'));
  // A second layer: a group-readable file for the supplementary-group test, a dir to make opaque.
  extraLower = join(base, 'layer1');
  await mkdir(join(extraLower, 'data', 'old'), { recursive: true });
  await writeFile(join(extraLower, 'data', 'old', 'a'), 'a');
  await writeFile(join(extraLower, 'data', 'keep'), 'k');
  await mkdir(join(extraLower, 'secret'));
  await writeFile(join(extraLower, 'secret', 'g10'), 'group ten\n');
  await chown(join(extraLower, 'secret', 'g10'), 0, 10);
  await chmod(join(extraLower, 'secret', 'g10'), 0o640);
}, 120_000);

afterAll(async () => {
  if (base) await rm(base, { recursive: true, force: true });
});

async function step(
  runner: Runner,
  args: string[],
  over: Partial<RunSpec> = {},
  signal?: AbortSignal,
): Promise<{ exitCode: number; stdout: string; stderr: string; upper: string; changes: (mountPoints?: string[]) => Promise<ChangeEntry[]> }> {
  const [upper, work] = await freshDirs(base, `u${++n}`, `w${n}`);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const lowerDirs = [lower, extraLower];
  const r = await runner.run(
    {
      rootfs: { lowerDirs, upperDir: upper!, workDir: work! },
      args,
      env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root'],
      cwd: '/',
      user: { uid: 0, gid: 0 },
      network: 'host',
      stdout: (c) => out.push(c),
      stderr: (c) => err.push(c),
      ...over,
    },
    { signal },
  );
  return {
    exitCode: r.exitCode,
    stdout: Buffer.concat(out).toString(),
    stderr: Buffer.concat(err).toString(),
    upper: upper!,
    changes: (mountPoints?: string[]) => collectChanges(captureUpperDir(upper!, { capabilities: caps, lowerDirs, ...(mountPoints ? { mountPoints } : {}) })),
  };
}

const sh = (script: string): string[] => ['/bin/sh', '-c', script];

describe.each([
  ['bwrap', () => createBwrapRunner({ capabilities: caps, tmpDir: base })],
  ['runc', () => createRuncRunner({ capabilities: caps, tmpDir: base })],
] as const)('%s runner as root', (_name, make) => {
  it('runs echo and returns stdout and exit code 0', async () => {
    const r = await step(make(), ['echo', 'hi']);
    expect(r).toMatchObject({ exitCode: 0, stdout: 'hi\n' });
  });

  it('passes the exit code through', async () => {
    expect((await step(make(), sh('exit 3'))).exitCode).toBe(3);
  });

  it('applies env, cwd and user', async () => {
    const r = await step(make(), sh('id -u; id -g; pwd; echo "$FOO"; touch /tmp/mine; stat -c %u:%g /tmp/mine'), {
      env: ['PATH=/bin:/usr/bin', 'FOO=bar baz'],
      cwd: '/tmp',
      user: { uid: 1000, gid: 1000 },
    });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('1000\n1000\n/tmp\nbar baz\n1000:1000\n');
    const f = (await r.changes()).find((c) => c.path === 'tmp/mine');
    expect(f).toMatchObject({ kind: 'file', uid: 1000, gid: 1000 });
  });

  it('gives supplementary groups access', async () => {
    const r = await step(make(), sh('cat /secret/g10'), { user: { uid: 1000, gid: 1000, additionalGids: [10] } });
    expect(r).toMatchObject({ exitCode: 0, stdout: 'group ten\n' });
    const denied = await step(make(), sh('cat /secret/g10'), { user: { uid: 1000, gid: 1000 } });
    expect(denied.exitCode).not.toBe(0);
  });

  it('network none has only lo; host network has more', async () => {
    const none = await step(make(), sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"), { network: 'none' });
    expect(none.stdout.trim().split('\n')).toEqual(['lo']);
    const host = await step(make(), sh("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"));
    expect(host.stdout.trim().split('\n').length).toBeGreaterThan(1);
  });

  it.each([0, 1000])('RUN --mount style bind (read-only) and tmpfs mounts work as uid %d and stay out of the change', async (uid) => {
    const ctx = join(base, `ctx-${uid}`);
    await mkdir(ctx, { recursive: true });
    await writeFile(join(ctx, 'input'), 'from context\n');
    await chmod(ctx, 0o755);
    const r = await step(make(), sh('cat /ctx/input; echo x > /ctx/nope 2>/dev/null || echo ro; echo c > /cache/c && cat /cache/c'), {
      user: { uid, gid: uid },
      mounts: [
        { type: 'bind', source: ctx, target: '/ctx', readonly: true },
        { type: 'tmpfs', target: '/cache', readonly: false },
      ],
    });
    expect(r.stdout).toBe('from context\nro\nc\n');
    expect(await r.changes(['/dev', '/proc', '/sys', '/etc/resolv.conf', '/etc/hosts', '/ctx', '/cache'])).toEqual([]);
  });

  it('network none works for a non-root USER too', async () => {
    const r = await step(make(), sh("id -u; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"), { network: 'none', user: { uid: 1000, gid: 1000 } });
    expect(r.stdout).toBe('1000\nlo\n');
  });

  it('sets the hostname, mounts /proc, /dev, /dev/shm and the host resolv.conf', async () => {
    const r = await step(make(), sh('hostname; echo x > /dev/null && echo devnull; test -d /dev/shm && echo shm; echo $$; cat /etc/resolv.conf'));
    const hostResolv = await readFile('/etc/resolv.conf', 'utf8');
    const lines = r.stdout.split('\n');
    expect(lines.slice(0, 3)).toEqual(['tsbuild', 'devnull', 'shm']);
    expect(Number(lines[3])).toBeLessThan(5); // its own PID namespace: the shell is PID 1 or 2
    expect(lines.slice(4).join('\n')).toBe(hostResolv);
    // The step sees its own PID namespace: few processes.
    const ps = await step(make(), sh('ls /proc | grep -c "^[0-9]"'));
    expect(Number(ps.stdout.trim())).toBeLessThan(5);
  });

  it('does not raise resource limits', async () => {
    const r = await step(make(), sh('ulimit -Hn; ulimit -Sn'));
    const mine = (await readFile('/proc/self/limits', 'utf8')).split('\n').find((l) => l.startsWith('Max open files'))!;
    const [, soft, hard] = /Max open files\s+(\d+)\s+(\d+)/.exec(mine)!;
    expect(r.stdout).toBe(`${hard}\n${soft}\n`);
  });

  it('captures a new file, a whiteout and an opaque dir, and no mount points', async () => {
    const r = await step(make(), sh('echo new > /newfile && rm /etc/group && rm -rf /data/old && mkdir /data/old && echo b > /data/old/b'));
    expect(r.exitCode).toBe(0);
    const changes = await r.changes();
    const summary = changes.map((c) => `${c.kind} ${c.path}`);
    expect(summary).toEqual(['dir data', 'dir data/old', 'opaque data/old', 'file data/old/b', 'dir etc', 'whiteout etc/group', 'file newfile']);
    const paths = changes.map((c) => c.path);
    for (const p of ['dev', 'proc', 'sys', 'etc/resolv.conf', 'etc/hosts']) expect(paths).not.toContain(p);
    expect(changes.find((c) => c.path === 'newfile')).toMatchObject({ kind: 'file', size: 4, uid: 0, gid: 0, mode: 0o644 });
  });

  it('a step that only runs leaves an empty change', async () => {
    const r = await step(make(), ['true']);
    expect(await r.changes()).toEqual([]);
  });

  it('does not show host paths', async () => {
    const r = await step(make(), sh('ls /work 2>&1; cat /etc/shadow 2>&1; ls /root/.. | head -3'));
    expect(r.stdout).toMatch(/No such file/);
    expect(r.stdout).not.toContain('node_modules');
    const shadow = await readFile('/etc/shadow', 'utf8');
    expect(r.stdout).not.toContain(shadow.split('\n')[0]!);
  });

  it('leaves no background process behind', async () => {
    const marker = `${1000 + n}.25`;
    const r = await step(make(), sh(`sleep ${marker} & echo started`));
    expect(r.stdout).toBe('started\n');
    expect(await processesMatching(`sleep ${marker}`)).toEqual([]);
  });

  it('forwards signals to the main process and waits for it', async () => {
    const [upper, work] = await freshDirs(base, `u${++n}`, `w${n}`);
    let listener: ((sig: NodeJS.Signals) => void) | undefined;
    let out = '';
    const r = await make().run(
      {
        rootfs: { lowerDirs: [lower], upperDir: upper!, workDir: work! },
        // runc's process is PID 1 of the container: it must handle the signal itself (docker alike).
        args: sh("trap 'echo got TERM; exit 3' TERM; echo ready; sleep 4343 & wait"),
        env: ['PATH=/bin'],
        cwd: '/',
        user: { uid: 0, gid: 0 },
        network: 'host',
        stdout: (c) => {
          out += c.toString();
          if (out === 'ready\n') listener?.('SIGTERM');
        },
      },
      { forwardSignals: { subscribe: (l) => ((listener = l), () => (listener = undefined)) } },
    );
    expect({ exitCode: r.exitCode, out }).toEqual({ exitCode: 3, out: 'ready\ngot TERM\n' });
    expect(listener).toBeUndefined();
    expect(await processesMatching('sleep 4343')).toEqual([]);
  });

  it('a missing command is a failed step, not a crash', async () => {
    const r = await step(make(), ['/bin/does-not-exist']);
    expect(r.exitCode).toBe(127);
  });

  it('aborts quickly and leaves no process and no mount', async () => {
    const marker = `${2000 + n}.5`;
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 400);
    // Not aborting would run for 2000 s and time the test out: no timing assertion needed.
    const p = step(make(), sh(`sleep ${marker} & sleep ${marker}; echo never`), {}, ac.signal);
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    expect(await processesMatching(`sleep ${marker}`)).toEqual([]);
    expect(await mountsUnder(base)).toEqual([]);
  });

  it('reports a sandbox that cannot start as SANDBOX_FAILED', async () => {
    const e = await step(make(), ['true'], { mounts: [{ type: 'bind', source: join(base, 'no-such-dir'), target: '/mnt', readonly: true }] }).catch((x: unknown) => x);
    expect(isTsbuildError(e) && e.code).toBe('SANDBOX_FAILED');
  });
});

describe.each(['bwrap', 'runc'])('a %s runner SIGKILLed before the sandbox starts', (runtime) => {
  // Found by scripts/torture (rootless section): tsbuild killed while the mount wrapper ran left
  // the step running, orphaned: bwrap's --die-with-parent is set only once bwrap runs. The
  // driver's wrapper shell waits a second before exec'ing the real one; we kill the driver in
  // that second, so the step (with MARKER in its command line) must never start. runc's chain
  // (setpriv's parent-death signal on unshare, whose child dies with it: --kill-child, and runs
  // as PID 1 of its own PID namespace) must hold the same way.
  it('leaves no step running', async () => {
    const { spawn } = await import('node:child_process');
    const { existsSync } = await import('node:fs');
    const { repoRoot } = await import('./test-fixture.js');
    const marker = `tsbuild-orphan-${process.pid}-${Date.now()}`;
    const ready = join(base, `orphan-ready-${runtime}`);
    const child = spawn(process.execPath, [join(repoRoot(), 'src/sandbox/testdata/orphan-driver.mjs'), base, lower, ready, marker, runtime], { stdio: 'ignore' });
    const exited = new Promise((res) => child.once('exit', res));
    while (!existsSync(ready)) {
      if (child.exitCode !== null) throw new Error(`orphan-driver exited ${child.exitCode} before its wrapper started`);
      await new Promise((res) => setTimeout(res, 20));
    }
    child.kill('SIGKILL');
    await exited;
    // Wait until the wrapper is gone: killed with its parent (fixed), or exec'd on towards the sandbox
    // and the step after its pause (the bug), in which case it created READY.passed first.
    while ((await processesMatching(join(base, 'slow-sh'))).length > 0) await new Promise((res) => setTimeout(res, 50));
    await new Promise((res) => setTimeout(res, 200));
    const left = await processesMatching(marker);
    for (const pid of left) process.kill(pid, 'SIGKILL');
    expect(existsSync(`${ready}.passed`)).toBe(false);
    expect(left).toEqual([]);
  });
});
