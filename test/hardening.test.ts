import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { repoRoot, storeWithBusybox, tempDir, tsbuild, writeTree, type RunResult } from './support/cli.js';
import { makeTar, ociArchive } from './support/hostile-archive.js';
import { CLI, withTestUser } from './support/rootless.js';

let work: string;
let root: string;

beforeAll(async () => {
  work = await tempDir('harden');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

/** Loads an image `ref` made of the given raw layers into the test store. */
async function loadLayers(ref: string, layers: Buffer[]): Promise<void> {
  const archive = path.join(work, `${ref.replace(/[:/]/g, '_')}.tar`);
  await fs.writeFile(archive, ociArchive(layers, ref));
  const r = await tsbuild(['load', '-i', archive], { root });
  expect(r.code, r.stderr).toBe(0);
}

/** A PAX tar made by Python's tarfile (a second tar writer): one 1-byte file per name. */
function pythonTar(names: readonly string[]): Buffer {
  const script = 'import io,sys,tarfile\nt=tarfile.open(fileobj=sys.stdout.buffer,mode="w|",format=tarfile.PAX_FORMAT)\nfor n in sys.argv[1:]:\n  i=tarfile.TarInfo(n); i.size=1; t.addfile(i, io.BytesIO(b"x"))\nt.close()\n';
  return execFileSync('python3', ['-c', script, ...names]);
}

describe('a layer whose PAX long name precedes a name too long to create', () => {
  it('fails the build (exit 1, LAYER_IO), never exit 0 without an image', async () => {
    // Thirty 200-byte directories: far beyond PATH_MAX, so creating the entry fails with ENAMETOOLONG.
    const long = `${Array.from({ length: 30 }, (_, i) => String(i).padStart(3, '0') + 'd'.repeat(197)).join('/')}/f`;
    await loadLayers('paxlong:latest', [pythonTar(['p'.repeat(150), long, 'ok.txt'])]);
    const ctx = path.join(work, 'ctx-paxlong');
    await writeTree(ctx, { Dockerfile: 'FROM paxlong:latest\nRUN true\n' });
    const r = await tsbuild(['build', '-q', ctx], { root });
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^error: applying the layer failed .*ENAMETOOLONG/s);
    expect(r.code).toBe(1);
  });
});

describe('a command that never settles', () => {
  // The guard of cmd/tsbuild.ts, driven with a promise that never settles and one that does.
  const guard = (what: string): Promise<RunResult> =>
    new Promise((resolve) => {
      const js = `import { exitWhenSettled } from ${JSON.stringify(path.join(repoRoot, 'dist/src/cli/index.js'))};\nexitWhenSettled(${what});\n`;
      execFile(process.execPath, ['--input-type=module', '-e', js], (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }));
    });
  it('exits 70 with "internal error" when the event loop drains first', async () => {
    const r = await guard('new Promise(() => {})');
    expect(r.code).toBe(70);
    expect(r.stderr).toMatch(/^internal error \(this is a bug/);
  });
  it('exits with the code of a command that settles', async () => {
    expect((await guard('Promise.resolve(0)')).code).toBe(0);
    expect((await guard('new Promise((r) => setTimeout(() => r(3), 50))')).code).toBe(3);
  });
  it('exits at once when it settles, but not before what it wrote to a pipe is out (an archive to stdout)', async () => {
    // A timer nobody waits for no longer holds the process: it exits when the command settles.
    const early = await guard("(setTimeout(() => process.stdout.write('timer fired'), 2000), Promise.resolve(4))");
    expect(early).toMatchObject({ code: 4, stdout: '' });
    // 8 MiB written to a pipe just before settling: a pipe takes 64 KiB at once, Node queues the rest.
    const big = await new Promise<{ code: number; bytes: number }>((resolve) => {
      const js = `import { exitWhenSettled } from ${JSON.stringify(path.join(repoRoot, 'dist/src/cli/index.js'))};\nprocess.stdout.write(Buffer.alloc(8 << 20, 97));\nexitWhenSettled(Promise.resolve(0));\n`;
      const child = execFile(process.execPath, ['--input-type=module', '-e', js], { encoding: 'buffer', maxBuffer: 64 << 20 }, (err, stdout) => resolve({ code: err ? Number(err.code) : 0, bytes: stdout.length }));
      child.stdout?.pause(); // a slow reader
      setTimeout(() => child.stdout?.resume(), 300);
    });
    expect(big).toEqual({ code: 0, bytes: 8 << 20 });
  });
});

const isRoot = process.getuid?.() === 0;

describe('--output type=local of an image with device nodes and setuid files', () => {
  // As root the applier can make all of these; the host directory must not get them by default.
  it.runIf(isRoot)('skips devices and clears setuid/setgid with a warning; preserve-special=true and type=tar keep them', async () => {
    await loadLayers('special:latest', [
      makeTar([
        { name: 'dev/', type: '5', mode: 0o755 },
        { name: 'dev/sda', type: '4', devmajor: 8, devminor: 0, mode: 0o666 },
        { name: 'dev/mem', type: '3', devmajor: 1, devminor: 1, mode: 0o666 },
        { name: 'suid', body: '#!/bin/sh\n', mode: 0o6755 },
      ]),
    ]);
    const ctx = path.join(work, 'ctx-special');
    await writeTree(ctx, { Dockerfile: 'FROM special:latest\nCOPY f.txt /f.txt\n', 'f.txt': 'f\n' });
    const out = path.join(work, 'out-special');
    const r = await tsbuild(['build', '-q', '-o', `type=local,dest=${out}`, ctx], { root });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/2 device nodes skipped .*preserve-special=true/);
    expect(r.stderr).toMatch(/1 files had their setuid\/setgid bits cleared \(first: "suid"\)/);
    expect(await fs.readdir(path.join(out, 'dev'))).toEqual([]);
    expect((await fs.stat(path.join(out, 'suid'))).mode & 0o7777).toBe(0o755);
    expect(await fs.readFile(path.join(out, 'f.txt'), 'utf8')).toBe('f\n');

    const kept = path.join(work, 'out-special-kept');
    const k = await tsbuild(['build', '-q', '-o', `type=local,dest=${kept},preserve-special=true`, ctx], { root });
    expect(k.code, k.stderr).toBe(0);
    const sda = await fs.lstat(path.join(kept, 'dev/sda'));
    expect(sda.isBlockDevice()).toBe(true);
    expect(sda.rdev).toBe(8 * 256);
    expect((await fs.stat(path.join(kept, 'suid'))).mode & 0o7777).toBe(0o6755);

    // A tar is inert: it keeps them (listed by GNU tar, a second reader).
    const tarOut = path.join(work, 'special-rootfs.tar');
    expect((await tsbuild(['build', '-q', '-o', `type=tar,dest=${tarOut}`, ctx], { root })).code).toBe(0);
    const listing = execFileSync('tar', ['-tvf', tarOut]).toString();
    expect(listing).toMatch(/^b.* 8,0 .*dev\/sda$/m);
    expect(listing).toMatch(/^-rwsr-sr-x .* suid$/m);
  });
});

describe('--iidfile and --metadata-file at a path where a symlink was planted', () => {
  it('replace the symlink itself and leave its target untouched', async () => {
    const ctx = path.join(work, 'ctx-iid');
    await writeTree(ctx, { Dockerfile: 'FROM scratch\nCOPY f.txt /f.txt\n', 'f.txt': 'f\n' });
    const shared = path.join(work, 'shared-tmp');
    const victim = path.join(work, 'victim');
    await writeTree(victim, { 'iid-target': 'precious\n', 'meta-target': 'precious\n' });
    await fs.mkdir(shared);
    const iid = path.join(shared, 'iid');
    const meta = path.join(shared, 'meta.json');
    await fs.symlink(path.join(victim, 'iid-target'), iid);
    await fs.symlink(path.join(victim, 'meta-target'), meta);
    const r = await tsbuild(['build', '-q', '--iidfile', iid, '--metadata-file', meta, ctx], { root });
    expect(r.code, r.stderr).toBe(0);
    expect(await fs.readFile(path.join(victim, 'iid-target'), 'utf8')).toBe('precious\n');
    expect(await fs.readFile(path.join(victim, 'meta-target'), 'utf8')).toBe('precious\n');
    expect((await fs.lstat(iid)).isFile()).toBe(true);
    expect(await fs.readFile(iid, 'utf8')).toBe(r.stdout.trim());
    expect(JSON.parse(await fs.readFile(meta, 'utf8'))).toMatchObject({ 'containerimage.config.digest': r.stdout.trim() });
    expect((await fs.readdir(shared)).sort()).toEqual(['iid', 'meta.json']); // no temp left
    // A directory at the path is a user error, not a crash.
    const d = await tsbuild(['build', '-q', '--iidfile', shared, ctx], { root });
    expect(d.code).toBe(1);
    expect(d.stderr).toMatch(/^error: cannot write --iidfile .*EISDIR/);
  });
});

describe('RUN --mount=type=secret file mode and owner', () => {
  it('is 0400 uid 0 gid 0 unless mode=, uid=, gid= say otherwise, so a later USER cannot read it', async () => {
    const ctx = path.join(work, 'ctx-secret-mode');
    await writeTree(ctx, {
      Dockerfile: [
        'FROM busybox',
        "RUN --mount=type=secret,id=s stat -c '%a %u %g' /run/secrets/s > /default",
        "RUN --mount=type=secret,id=e stat -c '%a %u %g' /run/secrets/e > /from-env",
        "RUN --mount=type=secret,id=s,uid=1000,gid=1001,mode=0440 stat -c '%a %u %g' /run/secrets/s > /custom",
        'USER 1000',
        'RUN --mount=type=secret,id=s (cat /run/secrets/s > /tmp/read 2>/dev/null; echo $? > /tmp/status)',
        '',
      ].join('\n'),
    });
    const secretFile = path.join(work, 'secret-file');
    await fs.writeFile(secretFile, 'hunter2\n', { mode: 0o644 }); // the host file's mode must not show
    const out = path.join(work, 'out-secret-mode');
    const r = await tsbuild(['build', '--progress', 'plain', '--secret', `id=s,src=${secretFile}`, '--secret', 'id=e,env=HARDEN_SECRET', '-o', `type=local,dest=${out}`, ctx], {
      root,
      env: { HARDEN_SECRET: 'from-env' },
    });
    expect(r.code, r.stderr).toBe(0);
    const read = (f: string): Promise<string> => fs.readFile(path.join(out, f), 'utf8');
    expect(await read('default')).toBe('400 0 0\n');
    expect(await read('from-env')).toBe('400 0 0\n');
    expect(await read('custom')).toBe('440 1000 1001\n');
    expect(await read('tmp/read')).toBe('');
    expect(Number(await read('tmp/status'))).not.toBe(0);
  });
});

describe('a context file the (rootless) user cannot read', () => {
  it('is a located user error naming the file and the permission, exit 1, no stack trace', async () => {
    await withTestUser('unreadable', async ({ dir, give, run }) => {
      const cases = [
        ['all', 'FROM scratch\nCOPY . /\n'],
        ['one', 'FROM scratch\nCOPY locked.txt /x\n'],
        ['glob', 'FROM scratch\nCOPY *.txt /x/\n'],
      ] as const;
      for (const [name, dockerfile] of cases) {
        const ctx = path.join(dir, `ctx-${name}`);
        await writeTree(ctx, { Dockerfile: dockerfile, 'locked.txt': 'root only', 'ok.txt': 'ok' });
        await give();
        await fs.chown(path.join(ctx, 'locked.txt'), 0, 0);
        await fs.chmod(path.join(ctx, 'locked.txt'), 0o600);
        const r = await run(`${CLI} build -q ${ctx}`);
        expect(r.stderr, name).toMatch(/^error: ctx-\w+\/Dockerfile:2: cannot read "locked\.txt" in the build context: permission denied \(EACCES, mode 0600, owner 0:0\)/);
        expect(r.stderr, name).toMatch(/^hint: .*\.dockerignore/m);
        expect(r.stderr, name).not.toMatch(/\n\s+at /);
        expect(r.code, name).toBe(1);
      }
      // The hint works: excluded, the same context builds.
      await fs.writeFile(path.join(dir, 'ctx-all', '.dockerignore'), 'locked.txt\n');
      const ok = await run(`${CLI} build -q ${path.join(dir, 'ctx-all')}`);
      expect(ok.code, ok.stderr).toBe(0);
    });
  });
});

describe('secret-looking build args and env (SecretsUsedInArgOrEnv)', () => {
  it('warns at the ARG/ENV line, says the value ends up in the history, and honours check=skip', async () => {
    const ctx = path.join(work, 'ctx-secret-args');
    await writeTree(ctx, {
      Dockerfile: 'FROM scratch\nARG GITHUB_TOKEN\nARG VERSION=1\nENV DB_PASSWORD=hunter2 PUBLIC_KEY=k\nCOPY f.txt /\n',
      'skipped.Dockerfile': '# check=skip=SecretsUsedInArgOrEnv\nFROM scratch\nARG GITHUB_TOKEN\nCOPY f.txt /\n',
      'f.txt': 'f\n',
    });
    const r = await tsbuild(['build', '--progress', 'plain', '--build-arg', 'GITHUB_TOKEN=ghp_x', ctx], { root });
    expect(r.code, r.stderr).toBe(0);
    const warnings = r.stderr.split('\n').filter((l) => l.includes('SecretsUsedInArgOrEnv'));
    expect(warnings).toEqual([
      expect.stringMatching(/^WARNING: \S*ctx-secret-args\/Dockerfile:2: SecretsUsedInArgOrEnv: .*\(ARG "GITHUB_TOKEN"\).*history/),
      expect.stringMatching(/^WARNING: \S*ctx-secret-args\/Dockerfile:4: SecretsUsedInArgOrEnv: .*\(ENV "DB_PASSWORD"\).*history/),
    ]);
    expect(r.stderr).not.toContain('ghp_x');
    const s = await tsbuild(['build', '--progress', 'plain', '-f', path.join(ctx, 'skipped.Dockerfile'), ctx], { root });
    expect(s.code, s.stderr).toBe(0);
    expect(s.stderr).not.toContain('SecretsUsedInArgOrEnv');
  });
});

describe('context files whose names are not valid UTF-8', () => {
  const raw = (s: string): Buffer => Buffer.from(s, 'latin1');
  const at = (dir: string, name: Buffer): Buffer => Buffer.concat([Buffer.from(`${dir}/`), name]);
  /** Names of a tar as bytes, read by GNU tar (a reader that is not ours). */
  const tarNames = (tar: string): Buffer[] => {
    const out = execFileSync('tar', ['--quoting-style=literal', '-tf', tar]);
    return out.toString('latin1').split('\n').filter((n) => n !== '').map((n) => raw(n));
  };
  const layerOf = async (layout: string): Promise<string> => {
    const index = JSON.parse(await fs.readFile(path.join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    const manifest = JSON.parse(await fs.readFile(path.join(layout, 'blobs/sha256', index.manifests[0]!.digest.slice(7)), 'utf8')) as { layers: Array<{ digest: string }> };
    return path.join(layout, 'blobs/sha256', manifest.layers[0]!.digest.slice(7));
  };

  it('are copied byte for byte by COPY . and matched by COPY bad*; GNU tar and umoci read the names back', async () => {
    const ctx = path.join(work, 'ctx-bad-name');
    await writeTree(ctx, { Dockerfile: 'FROM scratch\nCOPY . /\n', 'glob.Dockerfile': 'FROM scratch\nCOPY bad* /x/\n', 'good.txt': 'ok\n' });
    // Latin-1 names, as an old archive or a Windows share leaves behind; one too long for the
    // ustar name field (a PAX path record); a symlink whose target is such a name.
    const long = raw(`${'l'.repeat(120)}\xff`);
    await fs.writeFile(at(ctx, raw('bad\xff.txt')), 'bad\n');
    await fs.mkdir(at(ctx, raw('d\xfe')));
    await fs.writeFile(at(ctx, raw('d\xfe/inner')), 'in\n');
    await fs.writeFile(at(ctx, long), 'long\n');
    await fs.symlink(raw('bad\xff.txt'), at(ctx, raw('ln')));
    // A fifo and a socket: not content, skipped with a warning naming each.
    execFileSync('mkfifo', [path.join(ctx, 'pipe')]);
    execFileSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', path.join(ctx, 'sock')]);

    const layout = path.join(work, 'bad-name-layout');
    const r = await tsbuild(['build', '--progress', 'plain', '-t', 'badnames:v1', '-o', `type=oci-layout,dest=${layout}`, ctx], { root });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/Dockerfile:2: COPY: "pipe" of the build context is a named pipe: not copied/);
    expect(r.stderr).toMatch(/Dockerfile:2: COPY: "sock" of the build context is a socket: not copied/);
    const names = tarNames(await layerOf(layout)).map((n) => n.toString('latin1'));
    expect(names.sort()).toEqual(['Dockerfile', 'bad\xff.txt', 'd\xfe/', 'd\xfe/inner', 'glob.Dockerfile', 'good.txt', long.toString('latin1'), 'ln'].sort());
    const bundle = path.join(work, 'bad-name-bundle');
    execFileSync('umoci', ['unpack', '--rootless', '--image', `${layout}:v1`, bundle]);
    const rootfs = path.join(bundle, 'rootfs');
    expect(await fs.readFile(at(rootfs, raw('bad\xff.txt')), 'utf8')).toBe('bad\n');
    expect(await fs.readFile(at(rootfs, raw('d\xfe/inner')), 'utf8')).toBe('in\n');
    expect(await fs.readFile(at(rootfs, long), 'utf8')).toBe('long\n');
    expect(await fs.readlink(at(rootfs, raw('ln')), { encoding: 'buffer' })).toEqual(raw('bad\xff.txt'));

    // A wildcard matches such a name; a rename to another bad byte is a new key, not a stale hit.
    const globLayer = async (): Promise<{ id: string; names: string[] }> => {
      const out = path.join(work, `bad-glob-${Math.random().toString(36).slice(2)}`);
      const g = await tsbuild(['build', '-q', '-f', path.join(ctx, 'glob.Dockerfile'), '-o', `type=oci-layout,dest=${out}`, ctx], { root });
      expect(g.code, g.stderr).toBe(0);
      return { id: g.stdout, names: tarNames(await layerOf(out)).map((n) => n.toString('latin1')) };
    };
    const first = await globLayer();
    expect(first.names).toEqual(['x/', 'x/bad\xff.txt']);
    await fs.rename(at(ctx, raw('bad\xff.txt')), at(ctx, raw('bad\xfe.txt')));
    const second = await globLayer();
    expect(second.id).not.toBe(first.id);
    expect(second.names).toEqual(['x/', 'x/bad\xfe.txt']);
  });
});
