import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { requireTool, storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';
import { CLI, MAKE_BUSYBOX, withTestUser } from './support/rootless.js';

// buildx's --shm-size, --ulimit and --allow security.insecure (with RUN --security=insecure),
// checked from inside real RUN steps under bwrap and runc, as root and as the unprivileged
// tsbuild-test user. What a step saw is written into the image and read back from a local output.
let work: string;
let root: string;

const RUNTIMES = ['bwrap', 'runc'] as const;

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('these tests run RUN steps as root and as tsbuild-test; run the suite as root (CI does)');
  for (const t of ['bwrap', 'runc', 'prlimit']) await requireTool(t);
  work = await tempDir('e2e-sandbox-flags');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

async function ctxWith(files: Record<string, string>): Promise<string> {
  const ctx = await fs.mkdtemp(path.join(work, 'ctx-'));
  await writeTree(ctx, files);
  return ctx;
}

/** This process's hard limit of a /proc/self/limits row (what the sandbox may not exceed). */
async function hostHard(row: string): Promise<string> {
  const line = (await fs.readFile('/proc/self/limits', 'utf8')).split('\n').find((l) => l.startsWith(row));
  return line!.slice(row.length).trim().split(/\s+/)[1]!;
}

/** The capability mask (hex, as /proc/PID/status) of every capability this kernel has. */
async function fullCapMask(): Promise<string> {
  const last = Number((await fs.readFile('/proc/sys/kernel/cap_last_cap', 'utf8')).trim());
  return ((1n << BigInt(last + 1)) - 1n).toString(16).padStart(16, '0');
}

// The step records /dev/shm's size (1K blocks), whether 3000 KiB fit in it, and its limits.
const SHM_AND_LIMITS =
  'FROM busybox\n' +
  'RUN df -k /dev/shm | awk \'NR==2{print $2}\' > /shm && ' +
  '(dd if=/dev/zero of=/dev/shm/fill bs=1024 count=3000 2>/dev/null && echo fits || echo full) > /fill; rm -f /dev/shm/fill; ' +
  'echo "$(ulimit -Sn):$(ulimit -Hn) $(ulimit -Sc):$(ulimit -Hc)" > /limits\n';

const INSECURE =
  'FROM busybox\n' +
  'RUN echo plain-step-ran\n' +
  'RUN --security=insecure grep CapEff /proc/self/status | cut -f2 > /caps && echo 77 > /proc/sys/kernel/shmmni && cat /proc/sys/kernel/shmmni > /shmmni\n';

// busybox's `sync -d FILE` opens FILE and calls fdatasync on it: on a pipe the kernel answers
// EINVAL (exit 1), a suppressed call succeeds without asking it (exit 0). As root and as a user.
const SYNCS =
  'FROM busybox\n' +
  'RUN mkdir -m 1777 /out && (echo | sync -d /dev/stdin && echo suppressed || echo made) > /out/root && echo kept > /out/data && sync /out/data\n' +
  'USER 1000\n' +
  'RUN (echo | sync -d /dev/stdin && echo suppressed || echo made) > /out/user\n';

const SANDBOXED_SYSCTL = 'FROM busybox\nRUN grep CapEff /proc/self/status | cut -f2 > /caps; (echo 77 > /proc/sys/kernel/shmmni && echo written || echo refused) > /sysctl\n';

describe.each(RUNTIMES)('--runtime %s as root', (runtime) => {
  it('gives RUN steps a /dev/shm of --shm-size (64 MiB by default) and the --ulimit limits', async () => {
    const ctx = await ctxWith({ Dockerfile: SHM_AND_LIMITS });
    const dflt = path.join(work, `${runtime}-default`);
    const r0 = await tsbuild(['build', '--no-cache', '--runtime', runtime, '-o', `type=local,dest=${dflt}`, ctx], { root });
    expect(r0.stderr).not.toMatch(/error/i);
    expect(r0.code).toBe(0);
    expect((await fs.readFile(path.join(dflt, 'shm'), 'utf8')).trim()).toBe('65536');
    expect((await fs.readFile(path.join(dflt, 'fill'), 'utf8')).trim()).toBe('fits');
    // Without --ulimit the step inherits tsbuild's own limits.
    const inherited = (await tool('sh', ['-c', 'echo "$(ulimit -Sn):$(ulimit -Hn) $(ulimit -Sc):$(ulimit -Hc)"'])).stdout.trim();
    expect((await fs.readFile(path.join(dflt, 'limits'), 'utf8')).trim()).toBe(inherited);

    const out = path.join(work, `${runtime}-flags`);
    const r = await tsbuild(['build', '--no-cache', '--runtime', runtime, '--shm-size', '2m', '--ulimit', 'nofile=300:600', '--ulimit', 'core=0:0', '--ulimit', 'nofile=256:512', '-o', `type=local,dest=${out}`, ctx], { root });
    expect(r.code).toBe(0);
    expect((await fs.readFile(path.join(out, 'shm'), 'utf8')).trim()).toBe('2048');
    expect((await fs.readFile(path.join(out, 'fill'), 'utf8')).trim()).toBe('full'); // 3000 KiB do not fit in 2 MiB
    expect((await fs.readFile(path.join(out, 'limits'), 'utf8')).trim()).toBe('256:512 0:0'); // the last nofile wins
    await expect(fs.access(path.join(out, 'dev/shm/fill'))).rejects.toThrow(); // the tmpfs is no part of the layer
  });

  it("makes RUN steps' sync calls return at once, as root and as a USER; TSBUILD_RUN_SYNC=keep makes them; tsbuild run makes them", async () => {
    const ctx = await ctxWith({ Dockerfile: SYNCS });
    const read = (dir: string, f: string) => fs.readFile(path.join(dir, 'out', f), 'utf8').then((t) => t.trim());
    const dflt = path.join(work, `${runtime}-syncs`);
    const r = await tsbuild(['build', '--no-cache', '--runtime', runtime, '-t', `syncs-${runtime}:1`, '-o', `type=local,dest=${dflt}`, ctx], { root });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect([await read(dflt, 'root'), await read(dflt, 'user'), await read(dflt, 'data')]).toEqual(['suppressed', 'suppressed', 'kept']);

    const keep = path.join(work, `${runtime}-syncs-keep`);
    const k = await tsbuild(['build', '--no-cache', '--runtime', runtime, '-o', `type=local,dest=${keep}`, ctx], { root, env: { TSBUILD_RUN_SYNC: 'keep' } });
    expect(k.code).toBe(0);
    expect([await read(keep, 'root'), await read(keep, 'user')]).toEqual(['made', 'made']);

    // A container is not a build step: its syncs are its data's.
    const built = await tsbuild(['build', '--runtime', runtime, '-t', `syncs-${runtime}:1`, ctx], { root });
    expect(built.code).toBe(0);
    const run = await tsbuild(['run', '--rm', `syncs-${runtime}:1`, 'sh', '-c', 'echo | sync -d /dev/stdin && echo suppressed || echo made'], { root });
    expect(run.stdout.trim()).toBe('made');
  });

  it('gives /dev/shm and RUN --mount=type=tmpfs mode 1777, as runc and docker do', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN --mount=type=tmpfs,target=/scratch stat -c %a /dev/shm /scratch > /modes\n' });
    const out = path.join(work, `${runtime}-tmpfs-modes`);
    const r = await tsbuild(['build', '--no-cache', '--runtime', runtime, '-o', `type=local,dest=${out}`, ctx], { root });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect((await fs.readFile(path.join(out, 'modes'), 'utf8')).trim().split('\n')).toEqual(['1777', '1777']);
  });

  it('refuses RUN --security=insecure without --allow security.insecure before any step runs', async () => {
    const ctx = await ctxWith({ Dockerfile: INSECURE });
    const r = await tsbuild(['build', '--no-cache', '--runtime', runtime, '--progress', 'plain', ctx], { root });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:3: security\.insecure is not allowed/);
    expect(r.stderr).toMatch(/--allow security\.insecure/);
    expect(r.stderr).not.toContain('plain-step-ran');
  });

  it('runs RUN --security=insecure with every capability tsbuild holds and /proc/sys writable; other steps keep it read-only', async () => {
    const ctx = await ctxWith({ Dockerfile: INSECURE });
    const out = path.join(work, `${runtime}-insecure`);
    const r = await tsbuild(['build', '--runtime', runtime, '--allow', 'security.insecure', '-o', `type=local,dest=${out}`, ctx], { root });
    expect(r.code).toBe(0);
    // As root the step gets tsbuild's bounding set (this host's lacks CAP_SYS_RESOURCE).
    const bounding = /^CapBnd:\s*(\w+)$/m.exec(await fs.readFile('/proc/self/status', 'utf8'))![1];
    expect((await fs.readFile(path.join(out, 'caps'), 'utf8')).trim()).toBe(bounding);
    expect((await fs.readFile(path.join(out, 'shmmni'), 'utf8')).trim()).toBe('77');
    // The write went to the step's own IPC namespace, not the host's.
    expect((await fs.readFile('/proc/sys/kernel/shmmni', 'utf8')).trim()).not.toBe('77');

    const plain = await ctxWith({ Dockerfile: SANDBOXED_SYSCTL });
    const pout = path.join(work, `${runtime}-sandboxed`);
    const p = await tsbuild(['build', '--no-cache', '--runtime', runtime, '-o', `type=local,dest=${pout}`, plain], { root });
    expect(p.code).toBe(0);
    expect((await fs.readFile(path.join(pout, 'sysctl'), 'utf8')).trim()).toBe('refused');
    expect((await fs.readFile(path.join(pout, 'caps'), 'utf8')).trim()).toBe('00000000a80425fb'); // Docker's default set
  });
});

// Docker's masked and read-only /proc paths (sandbox/types.ts), as the step sees them: the
// mount points over them in its own mountinfo, and what a read of a masked file gives.
const PROC_MASKS =
  'FROM busybox\n' +
  'RUN awk \'$5 ~ /^\\/proc\\// {print $5, ($6 ~ /^ro/ ? "ro" : "rw")}\' /proc/self/mountinfo | sort > /mounts; wc -c < /proc/keys > /keys\n';

describe.each(RUNTIMES)('--runtime %s hides host kernel interfaces in /proc', (runtime) => {
  it('masks the kernel files Docker masks and keeps /proc/sys and the rest read-only; an insecure step gets them plain', async () => {
    const present = async (p: string) => fs.stat(p).then(() => true, () => false);
    const ctx = await ctxWith({ Dockerfile: PROC_MASKS });
    const out = path.join(work, `${runtime}-proc-masks`);
    const r = await tsbuild(['build', '--no-cache', '--runtime', runtime, '-o', `type=local,dest=${out}`, ctx], { root });
    expect(r.code).toBe(0);
    const mounts = (await fs.readFile(path.join(out, 'mounts'), 'utf8')).trim().split('\n');
    expect(await present('/proc/keys')).toBe(true);
    expect(mounts).toContain('/proc/keys rw'); // /dev/null over it, as runc
    expect((await fs.readFile(path.join(out, 'keys'), 'utf8')).trim()).toBe('0');
    for (const masked of ['/proc/timer_list', '/proc/kcore', '/proc/sched_debug']) {
      if (await present(masked)) expect(mounts.some((m) => m.startsWith(`${masked} `))).toBe(true);
    }
    for (const ro of ['/proc/sys', '/proc/bus', '/proc/fs', '/proc/irq']) {
      if (await present(ro)) expect(mounts).toContain(`${ro} ro`);
    }
    if (await present('/proc/acpi')) expect(mounts).toContain('/proc/acpi ro');

    const insecure = await ctxWith({ Dockerfile: PROC_MASKS.replace('RUN ', 'RUN --security=insecure ') });
    const iout = path.join(work, `${runtime}-proc-insecure`);
    const i = await tsbuild(['build', '--no-cache', '--runtime', runtime, '--allow', 'security.insecure', '-o', `type=local,dest=${iout}`, insecure], { root });
    expect(i.code).toBe(0);
    const imounts = (await fs.readFile(path.join(iout, 'mounts'), 'utf8')).trim().split('\n');
    expect(imounts.some((m) => m.startsWith('/proc/keys '))).toBe(false);
  });
});

// bwrap makes mount points under /newroot while the host's root is still /oldroot: a symlink of
// the image's must not lead a mount point, a file bind's empty file or the working directory
// out to the host (sandbox/confine-targets.ts). `trap` is a host directory the links aim at.
function trapDockerfile(trap: string): string {
  return (
    'FROM busybox\n' +
    `RUN ln -s /oldroot${trap} /evil && ln -s /oldroot${trap}/d /evil2\n` +
    'COPY etc/ /etc/\n' +
    'RUN --mount=type=tmpfs,target=/evil/tmpfs --mount=type=tmpfs,target=/evil2 --mount=type=bind,source=Dockerfile,target=/evil/file true\n' +
    'WORKDIR /evil/workdir\n' +
    'RUN ls -d "$PWD" > /cwd\n'
  );
}

describe.each(RUNTIMES)('--runtime %s keeps mount points in the root', (runtime) => {
  it('follows the image\'s symlinks inside the root, never out to the host', async () => {
    const trap = await fs.mkdtemp(path.join(work, 'trap-'));
    const ctx = await ctxWith({ Dockerfile: trapDockerfile(trap) });
    await fs.mkdir(path.join(ctx, 'etc'));
    await fs.symlink(`/oldroot${trap}/hosts`, path.join(ctx, 'etc', 'hosts'));
    const out = path.join(work, `${runtime}-trap`);
    const r = await tsbuild(['build', '--no-cache', '--runtime', runtime, '-o', `type=local,dest=${out}`, ctx], { root });
    expect(r.code, r.stderr).toBe(0);
    expect(await fs.readdir(trap)).toEqual([]);
    // Inside the image, where the links lead when / is the root.
    expect((await fs.readdir(path.join(out, 'oldroot', trap))).sort()).toEqual(expect.arrayContaining(['workdir']));
  });
});

describe.each(RUNTIMES)('--runtime %s working directory', (runtime) => {
  it('makes a WORKDIR again that an earlier step removed, as runc and BuildKit\'s executor do', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nWORKDIR /app/sub\nRUN rm -rf /app\nRUN pwd > /where\n' });
    const out = path.join(work, `${runtime}-workdir`);
    const r = await tsbuild(['build', '--no-cache', '--runtime', runtime, '-o', `type=local,dest=${out}`, ctx], { root });
    expect(r.code, r.stderr).toBe(0);
    expect((await fs.readFile(path.join(out, 'where'), 'utf8')).trim()).toBe('/app/sub');
    expect((await fs.stat(path.join(out, 'app/sub'))).isDirectory()).toBe(true);
  });
});

describe('rootless (tsbuild-test) mount points', () => {
  it('bwrap follows the image\'s symlinks inside the root, never out to the user\'s files', async () => {
    await withTestUser('trap', async ({ dir, give, ok }) => {
      const trap = path.join(dir, 'trap');
      await fs.mkdir(trap);
      await writeTree(path.join(dir, 'ctx'), { Dockerfile: trapDockerfile(trap) });
      await fs.mkdir(path.join(dir, 'ctx', 'etc'));
      await fs.symlink(`/oldroot${trap}/hosts`, path.join(dir, 'ctx', 'etc', 'hosts'));
      await give();
      await ok(`${MAKE_BUSYBOX} >/dev/null && ${CLI} build --runtime bwrap ${dir}/ctx`);
      expect(await fs.readdir(trap)).toEqual([]);
    });
  });
});

describe('--isolation chroot', () => {
  it('applies --ulimit (prlimit) and refuses --shm-size, which needs a mount namespace', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN echo "$(ulimit -Sn):$(ulimit -Hn)" > /limits\n' });
    const out = path.join(work, 'chroot-limits');
    const r = await tsbuild(['build', '--no-cache', '--isolation', 'chroot', '--ulimit', 'nofile=99:199', '-o', `type=local,dest=${out}`, ctx], { root });
    expect(r.code).toBe(0);
    expect((await fs.readFile(path.join(out, 'limits'), 'utf8')).trim()).toBe('99:199');
    const shm = await tsbuild(['build', '--no-cache', '--isolation', 'chroot', '--shm-size', '1m', ctx], { root });
    expect(shm.code).toBe(1);
    expect(shm.stderr).toMatch(/error: --shm-size mounts a \/dev\/shm, which needs a mount namespace/);
  });
});

describe('cache keys', () => {
  it('keys a RUN on --shm-size, --ulimit and --security=insecure, as BuildKit keys its ExecOp', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN echo step > /s\n' });
    const build = (...flags: string[]) => tsbuild(['build', '--progress', 'plain', ...flags, ctx], { root });
    const cached = (r: { stderr: string }) => /RUN echo step > \/s\n#\d+ CACHED/.test(r.stderr);
    expect((await build()).code).toBe(0);
    expect(cached(await build())).toBe(true);
    expect(cached(await build('--allow', 'security.insecure'))).toBe(true); // an entitlement alone changes nothing
    expect(cached(await build('--shm-size', '8m'))).toBe(false);
    expect(cached(await build('--shm-size', '8m'))).toBe(true);
    expect(cached(await build('--ulimit', 'nofile=100'))).toBe(false);
    expect(cached(await build('--ulimit', 'nofile=100'))).toBe(true);
    expect(cached(await build('--ulimit', 'nofile=101'))).toBe(false);
    const insecure = await ctxWith({ Dockerfile: 'FROM busybox\nRUN --security=insecure echo step > /s\n' });
    const i = await tsbuild(['build', '--progress', 'plain', '--allow', 'security.insecure', insecure], { root });
    expect(i.code).toBe(0);
    expect(i.stderr).not.toMatch(/RUN --security=insecure echo step > \/s\n#\d+ CACHED/);
  });
});

describe('bad input', () => {
  it.each([
    [['--shm-size', '64x'], /invalid --shm-size "64x"/],
    [['--shm-size=-1m'], /invalid --shm-size "-1m"/],
    [['--ulimit', 'nofiles=10'], /invalid --ulimit "nofiles=10": unknown limit "nofiles"/],
    [['--ulimit', 'nofile=ten'], /invalid --ulimit "nofile=ten"/],
    [['--ulimit', 'nofile=10:5'], /invalid --ulimit "nofile=10:5"/],
    [['--allow', 'security.unsafe'], /invalid --allow "security.unsafe"/],
  ])('%j exits 2 naming the value', async (flags, message) => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN true\n' });
    const r = await tsbuild(['build', ...flags, ctx], { root });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toMatch(/hint: /);
  });

  it('refuses a TSBUILD_RUN_SYNC other than suppress or keep, exit 2', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN true\n' });
    const r = await tsbuild(['build', ctx], { root, env: { TSBUILD_RUN_SYNC: 'off' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('TSBUILD_RUN_SYNC must be suppress or keep, not "off"');
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('refuses a limit above the host hard limit with the limit and that hard limit, exit 2', async () => {
    const hard = await hostHard('Max open files');
    expect(hard).not.toBe('unlimited');
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN true\n' });
    const r = await tsbuild(['build', '--ulimit', `nofile=1024:${Number(hard) + 1}`, ctx], { root });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`hard limit for nofile (${hard})`);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });
});

describe('rootless (tsbuild-test)', () => {
  it.each(RUNTIMES)("--runtime %s: RUN steps' sync calls return at once inside the user namespace too", async (runtime) => {
    await withTestUser(`syncs-${runtime}`, async ({ dir, give, ok }) => {
      await writeTree(path.join(dir, 'ctx'), { Dockerfile: SYNCS });
      await give();
      await ok(`${MAKE_BUSYBOX} >/dev/null && ${CLI} build --runtime ${runtime} -o type=local,dest=${dir}/out ${dir}/ctx`);
      await ok(`TSBUILD_RUN_SYNC=keep ${CLI} build --no-cache --runtime ${runtime} -o type=local,dest=${dir}/keep ${dir}/ctx`);
      const read = (out: string, f: string) => fs.readFile(path.join(dir, out, 'out', f), 'utf8').then((t) => t.trim());
      expect([await read('out', 'root'), await read('out', 'user'), await read('keep', 'root'), await read('keep', 'user')]).toEqual(['suppressed', 'suppressed', 'made', 'made']);
    });
  });

  it.each(RUNTIMES)('--runtime %s: --shm-size, --ulimit and --security=insecure inside the user namespace', async (runtime) => {
    await withTestUser(`flags-${runtime}`, async ({ dir, give, ok, run }) => {
      await writeTree(path.join(dir, 'ctx'), {
        Dockerfile: `${SHM_AND_LIMITS}RUN --security=insecure grep CapEff /proc/self/status | cut -f2 > /caps && echo 77 > /proc/sys/kernel/shmmni && cat /proc/sys/kernel/shmmni > /shmmni\n`,
      });
      await writeTree(path.join(dir, 'plain'), { Dockerfile: SANDBOXED_SYSCTL });
      await give();
      await ok(`${MAKE_BUSYBOX} >/dev/null && ${CLI} build --runtime ${runtime} --shm-size 3m --ulimit nofile=100:200 --ulimit core=0 --allow security.insecure -o type=local,dest=${dir}/out ${dir}/ctx`);
      const read = (f: string) => fs.readFile(path.join(dir, 'out', f), 'utf8').then((s) => s.trim());
      expect(await read('shm')).toBe('3072');
      expect(await read('fill')).toBe('fits');
      expect(await read('limits')).toBe('100:200 0:0');
      // Every capability, but of the build's user namespace.
      expect(await read('caps')).toBe(await fullCapMask());
      expect(await read('shmmni')).toBe('77');
      await ok(`${CLI} build --runtime ${runtime} -o type=local,dest=${dir}/pout ${dir}/plain`);
      expect((await fs.readFile(path.join(dir, 'pout', 'sysctl'), 'utf8')).trim()).toBe('refused');

      const hard = (await ok('ulimit -Hn')).stdout.trim(); // the test user's own hard limit
      const over = await run(`${CLI} build --runtime ${runtime} --ulimit nofile=${Number(hard) + 1} ${dir}/plain`);
      expect(over.code).toBe(2);
      expect(over.stderr).toContain(`hard limit for nofile (${hard})`);
    });
  });
});
