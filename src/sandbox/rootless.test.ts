import { execFile } from 'node:child_process';
import { chmod, chown, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSubordinateIds } from './index.js';
import { repoRoot } from './test-fixture.js';

const exec = promisify(execFile);
const USER = process.env.TSBUILD_TEST_USER ?? 'tsbuild-test';

interface StepOut {
  exitCode?: number;
  stdout?: string;
  stderr?: string;
  error?: { name: string; code: string | number; message: string };
  changes?: Array<{ kind: string; path: string; uid?: number; gid?: number; mode?: number }>;
  upper: string;
}
interface DriverOut {
  uid: number;
  describe: string;
  idMapping: { kind: string };
  steps: Record<'bwrap' | 'runc', Record<string, StepOut & number[] & string[]>>;
  single: { root: StepOut; user1000: StepOut };
  idInNamespace: string;
  removedWork: boolean;
}

let base: string;
let out: DriverOut;
let subBase: number;

/**
 * The rootless scenario runs as the unprivileged user (scripts/setup creates it with a
 * subordinate range): the compiled front door is driven by testdata/rootless-driver.mjs under
 * `runuser`, and this file (root) checks its report and the host-side ownership it left.
 */
beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('rootless.test.ts must start as root (it switches to the test user with runuser)');
  const { stdout: idOut } = await exec('id', ['-u', USER]).catch(() => {
    throw new Error(`test user ${USER} is missing: run bash scripts/setup`);
  });
  const uid = Number(idOut.trim());
  const range = parseSubordinateIds(await readFile('/etc/subuid', 'utf8'), USER, uid);
  if (!range) throw new Error(`${USER} has no /etc/subuid range: run bash scripts/setup`);
  subBase = range.start;
  // The driver imports dist/, which `npm run build` makes before the suite (scripts/test).
  // Never rebuild it here: other test files run the compiled CLI at the same time, and a
  // rewrite of dist/ under them makes them fail to load modules.
  const built = await stat(join(repoRoot(), 'dist/src/sandbox/index.js')).catch(() => undefined);
  const src = await stat(join(repoRoot(), 'src/sandbox/bwrap-runner.ts'));
  if (!built || built.mtimeMs < src.mtimeMs) throw new Error('dist/ is missing or older than src/sandbox: run npm run build first');
  base = await mkdtemp(join(tmpdir(), 'tsbuild-rootless-'));
  await chown(base, uid, uid);
  await chmod(base, 0o711);
  const driver = join(repoRoot(), 'src/sandbox/testdata/rootless-driver.mjs');
  const r = await exec('runuser', ['-u', USER, '--', process.execPath, driver, base], { maxBuffer: 64 * 1024 * 1024, cwd: '/' });
  out = JSON.parse(r.stdout) as DriverOut;
}, 300_000);

afterAll(async () => {
  if (base) await rm(base, { recursive: true, force: true });
});

describe('rootless sandbox (as the unprivileged test user)', () => {
  it('probes a full subordinate mapping', () => {
    expect(out.uid).not.toBe(0);
    expect(out.idMapping.kind).toBe('subordinate');
    expect(out.describe).not.toContain('missing');
    expect(out.idInNamespace).toBe('0');
  });

  describe.each(['bwrap', 'runc'] as const)('%s', (rt) => {
    it('chown to another ID works and the upper dir holds the mapped host ID', async () => {
      const s = out.steps[rt].chown!;
      expect(s.exitCode).toBe(0);
      expect(s.stdout).toMatch(/^0\n1234:1234\n/);
      expect(s.changes).toContainEqual({ kind: 'file', path: 'f', uid: 1234, gid: 1234, mode: 0o644 });
      // Container 0 is the user, container N>0 is subuid_base + N - 1 (podman's layout).
      const st = await stat(join(s.upper, 'f'));
      expect([st.uid, st.gid]).toEqual([subBase + 1233, subBase + 1233]);
    });

    it('apt-style ownership round-trips (0700 dir of another ID, files handed to it)', async () => {
      const s = out.steps[rt].chown!;
      expect(s.changes).toContainEqual({ kind: 'dir', path: 'var/cache/apt/archives/partial', uid: 100, gid: 65534, mode: 0o700 });
      expect(s.changes).toContainEqual({ kind: 'file', path: 'var/cache/apt/archives/partial/new.deb', uid: 100, gid: 65534, mode: 0o644 });
      expect(s.stdout).toMatch(/-rw------- +1 100 +65534 .* pkg\.deb/);
      const st = await stat(join(s.upper, 'var/cache/apt/archives/partial'));
      expect(st.uid).toBe(subBase + 99);
    });

    it('captures whiteouts and opaque dirs under userxattr, without mount points', () => {
      const kinds = out.steps[rt].chown!.changes!.map((c) => `${c.kind} ${c.path}`);
      expect(kinds).toContain('whiteout etc/group');
      expect(kinds).toContain('opaque data/old');
      for (const p of ['dev', 'proc', 'etc/resolv.conf', 'etc/hosts']) expect(kinds.some((k) => k.endsWith(` ${p}`))).toBe(false);
    });

    it('runs a step as uid 1000', async () => {
      const s = out.steps[rt].user1000!;
      expect(s.stdout).toBe('1000\n1000\n');
      expect(s.changes).toContainEqual({ kind: 'file', path: 'tmp/u1000', uid: 1000, gid: 1000, mode: 0o644 });
      expect((await stat(join(s.upper, 'tmp/u1000'))).uid).toBe(subBase + 999);
    });

    it('an ID outside the subordinate range fails inside the step', () => {
      expect(out.steps[rt].bigId!.exitCode).not.toBe(0);
      expect(out.steps[rt].bigId!.stderr).toContain('Invalid argument');
    });

    it('leaves no background process, and abort kills the step with no process or mount left', () => {
      expect(out.steps[rt].background!.stdout).toBe('started\n');
      expect(out.steps[rt].backgroundLeft).toEqual([]);
      expect(out.steps[rt].abort!.error?.name).toBe('AbortError');
      expect(out.steps[rt].abortLeft).toEqual([]);
      expect(out.steps[rt].mountsLeft).toEqual([]);
    });
  });

  it('single-ID fallback: root works, chown to another ID fails, USER 1000 is refused naming /etc/subuid', () => {
    expect(out.single.root.stdout).toBe('0\n');
    expect(out.single.root.exitCode).not.toBe(0);
    expect(out.single.user1000.error?.code).toBe('SANDBOX_ID_MAPPING');
    expect(out.single.user1000.error?.message).toContain('uid 1000');
  });

  it('removeTree inside the namespace removes what the host user cannot', () => {
    expect(out.removedWork).toBe(true);
  });
});

describe('single-ID fallback (a user with no /etc/subuid entry: nobody)', () => {
  let single: {
    subordinateIds: { ok: boolean; reason?: string; hint?: string };
    idMapping: string;
    root: StepOut;
    chown: StepOut;
    user1000: StepOut & { error?: { code: string; message: string; hint?: string } };
  };
  let dir: string;
  beforeAll(async () => {
    // dist/ is built by the first beforeAll of this file.
    dir = await mkdtemp(join(tmpdir(), 'tsbuild-single-'));
    await exec('chown', ['nobody', dir]);
    await chmod(dir, 0o711);
    const driver = join(repoRoot(), 'src/sandbox/testdata/single-id-driver.mjs');
    const r = await exec('runuser', ['-u', 'nobody', '--', process.execPath, driver, dir], { maxBuffer: 16 * 1024 * 1024, cwd: '/' });
    single = JSON.parse(r.stdout) as typeof single;
  }, 120_000);
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('probes the missing range with a reason and a fix', () => {
    expect(single.idMapping).toBe('single');
    expect(single.subordinateIds.ok).toBe(false);
    expect(single.subordinateIds.reason).toContain('/etc/subuid');
    expect(single.subordinateIds.hint).toContain('usermod --add-subuids');
  });

  it('root steps work; chown to another ID fails inside; USER 1000 is refused naming the missing entry', () => {
    expect(single.root).toMatchObject({ exitCode: 0, stdout: '0\n' });
    expect(single.chown.exitCode).not.toBe(0);
    expect(single.user1000.error?.code).toBe('SANDBOX_ID_MAPPING');
    expect(single.user1000.error?.hint).toContain('/etc/subuid');
  });
});
