import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { requireTool, storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';

// Issue 14: where tsbuild built a different image than BuildKit for the same Dockerfile.
// Each test builds a real Dockerfile, exports an OCI archive and reads the layers back with
// GNU tar (entries, owners, modes, link targets, hard links), comparing them with what
// BuildKit's code gives for the same input (the source each expectation follows is named).
let work: string;
let root: string;

beforeAll(async () => {
  for (const t of ['tar', 'gzip', 'bzip2', 'xz', 'zstd', 'jq']) await requireTool(t);
  work = await tempDir('e2e-parity');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

/** One layer entry as GNU tar lists it: `mode owner size path[ -> target| link to target]`, no date. */
type Listing = string[];

interface Built {
  readonly layers: Listing[];
  readonly blobs: string[];
  readonly config: { config: { Env?: string[]; User?: string; WorkingDir?: string } };
}

/** Builds `ctx` into an OCI archive and lists every layer with GNU tar. */
async function buildAndList(ctx: string, extra: readonly string[] = []): Promise<Built> {
  const out = path.join(ctx, '..', `${path.basename(ctx)}.oci.tar`);
  const r = await tsbuild(['build', ...extra, '--output', `type=oci,dest=${out}`, ctx], { root });
  expect(r.stderr).not.toMatch(/internal error/);
  if (r.code !== 0) throw new Error(`build failed (${r.code}): ${r.stderr}`);
  const dir = `${out}.d`;
  await fs.rm(dir, { recursive: true, force: true });
  await fs.mkdir(dir);
  await tool('tar', ['-xf', out, '-C', dir]);
  const blob = (d: string) => path.join(dir, 'blobs', 'sha256', d.slice('sha256:'.length));
  const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(await fs.readFile(blob(index.manifests[0]!.digest), 'utf8')) as { config: { digest: string }; layers: Array<{ digest: string }> };
  const config = JSON.parse(await fs.readFile(blob(manifest.config.digest), 'utf8')) as Built['config'];
  const layers: Listing[] = [];
  const blobs: string[] = [];
  for (const l of manifest.layers) {
    blobs.push(blob(l.digest));
    layers.push(await listLayer(blob(l.digest)));
  }
  return { layers, blobs, config };
}

async function listLayer(file: string): Promise<Listing> {
  const { stdout } = await tool('tar', ['--numeric-owner', '-tvf', file]);
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const f = line.split(/\s+/);
      // mode owner size date time name...
      return [f[0], f[1], f[2], f.slice(5).join(' ').replace(/^\.\//, '')].join(' ');
    });
}

/** A file's bytes out of a layer blob, by GNU tar. */
async function fileInLayer(blob: string, name: string): Promise<string> {
  return (await tool('tar', ['-xOf', blob, name])).stdout;
}

describe('ENV and ARG of the same name (BuildKit dispatchEnv / dispatchArg)', () => {
  // BuildKit keeps one env on the stage's state: ENV sets it (and the image config), an ARG
  // with a value sets it too (state only). The later write wins in RUN: ENV after ARG wins
  // (the reference's example), and an ARG declared after the ENV with a --build-arg value
  // wins in RUN while the image config keeps the ENV value (convert.go dispatchArg:
  // d.state.AddEnv(arg.Key, *arg.Value); moby/moby#36925, docker/cli#3344).
  it('the later of ENV and ARG wins in RUN; the image config keeps the ENV', async () => {
    const ctx = path.join(work, 'envarg');
    await writeTree(ctx, {
      Dockerfile: [
        'FROM busybox AS base',
        'ENV FROM_BASE=base-env',
        'FROM base',
        'ARG EARLY=arg-default',
        'ENV EARLY=env',
        'ENV LATE=env',
        'ARG LATE',
        'ARG FROM_BASE',
        'RUN echo "EARLY=$EARLY LATE=$LATE FROM_BASE=$FROM_BASE" > /seen',
        '',
      ].join('\n'),
    });
    const built = await buildAndList(ctx, ['--build-arg', 'EARLY=build-arg', '--build-arg', 'LATE=build-arg', '--build-arg', 'FROM_BASE=build-arg']);
    const last = built.blobs[built.blobs.length - 1]!;
    expect(await fileInLayer(last, 'seen')).toBe('EARLY=env LATE=build-arg FROM_BASE=build-arg\n');
    expect(built.config.config.Env).toEqual(expect.arrayContaining(['EARLY=env', 'LATE=env', 'FROM_BASE=base-env']));
  });
});

describe('ADD of a compressed file that is not a tar (docker IsArchivePath)', () => {
  it('copies note.txt.gz/.bz2/.xz/.zst as they are and still unpacks real archives', async () => {
    const ctx = path.join(work, 'compressed');
    const text = 'a note, not an archive\n'.repeat(30);
    await writeTree(ctx, {
      Dockerfile: ['FROM busybox', 'ADD note.txt.gz note.txt.bz2 note.txt.xz note.txt.zst /notes/', 'ADD tree.tar.zst /unpacked/', ''].join('\n'),
      'note.txt': text,
      'tree/a.txt': 'a\n',
    });
    await tool('sh', ['-c', 'gzip -k note.txt && bzip2 -k note.txt && xz -k note.txt && zstd -q note.txt -o note.txt.zst && tar --owner=0 --group=0 -cf - -C tree . | zstd -q -o tree.tar.zst && rm -r tree note.txt'], { cwd: ctx });
    const built = await buildAndList(ctx);
    const notes = built.layers[built.layers.length - 2]!;
    const sizes = await Promise.all(['gz', 'bz2', 'xz', 'zst'].map(async (ext) => (await fs.stat(path.join(ctx, `note.txt.${ext}`))).size));
    expect(notes).toEqual([
      'drwxr-xr-x 0/0 0 notes/',
      `-rw-r--r-- 0/0 ${sizes[0]} notes/note.txt.gz`,
      `-rw-r--r-- 0/0 ${sizes[1]} notes/note.txt.bz2`,
      `-rw-r--r-- 0/0 ${sizes[2]} notes/note.txt.xz`,
      `-rw-r--r-- 0/0 ${sizes[3]} notes/note.txt.zst`,
    ].sort(byPath));
    // byte for byte the file of the context
    const blob = built.blobs[built.blobs.length - 2]!;
    const { stdout } = await tool('sh', ['-c', `tar -xOf ${blob} notes/note.txt.gz | gzip -dc`]);
    expect(stdout).toBe(text);
    expect(built.layers[built.layers.length - 1]).toEqual(['drwxr-xr-x 0/0 0 unpacked/', '-rw-r--r-- 0/0 2 unpacked/a.txt']);
  });
});

describe('COPY --from follows symlinks inside the source root (continuity RootPath)', () => {
  it('resolves absolute and climbing links in a stage and an image, for COPY and RUN --mount', async () => {
    const ctx = path.join(work, 'fromlinks');
    await writeTree(ctx, {
      Dockerfile: [
        'FROM busybox AS links',
        'RUN mkdir -p /store/sub && echo real > /store/real && echo deep > /store/sub/deep \\',
        ' && ln -s /store/real /abs && ln -s /store /lnk && ln -s ../../../../store/real /climb && ln -s /lnk/sub /chain',
        'FROM busybox',
        'COPY --from=links /abs /out/abs',
        'COPY --from=links /lnk/real /climb /out/',
        'COPY --from=links /chain/ /out/chain/',
        'COPY --from=links /lnk/re* /out/glob/',
        'RUN --mount=type=bind,from=links,source=/abs,target=/m cat /m > /mounted',
        '',
      ].join('\n'),
    });
    const built = await buildAndList(ctx);
    const n = built.layers.length;
    expect(built.layers[n - 5]).toEqual(['drwxr-xr-x 0/0 0 out/', '-rw-r--r-- 0/0 5 out/abs']);
    expect(built.layers[n - 4]).toEqual(['drwxr-xr-x 0/0 0 out/', '-rw-r--r-- 0/0 5 out/climb', '-rw-r--r-- 0/0 5 out/real']);
    expect(built.layers[n - 3]).toEqual(['drwxr-xr-x 0/0 0 out/', 'drwxr-xr-x 0/0 0 out/chain/', '-rw-r--r-- 0/0 5 out/chain/deep']);
    expect(built.layers[n - 2]).toEqual(['drwxr-xr-x 0/0 0 out/', 'drwxr-xr-x 0/0 0 out/glob/', '-rw-r--r-- 0/0 5 out/glob/real']);
    expect(await fileInLayer(built.blobs[n - 5]!, 'out/abs')).toBe('real\n');
    expect(await fileInLayer(built.blobs[n - 3]!, 'out/chain/deep')).toBe('deep\n');
    expect(await fileInLayer(built.blobs[n - 1]!, 'mounted')).toBe('real\n');

    // The same through an image in the store (COPY --from=IMAGE).
    const tag = await tsbuild(['build', '--target', 'links', '-t', 'parity-links:1', ctx], { root });
    expect(tag.code).toBe(0);
    const ctx2 = path.join(work, 'fromimage');
    await writeTree(ctx2, { Dockerfile: 'FROM busybox\nCOPY --from=parity-links:1 /abs /chain/deep /got/\n' });
    const fromImage = await buildAndList(ctx2);
    expect(fromImage.layers[fromImage.layers.length - 1]).toEqual(['drwxr-xr-x 0/0 0 got/', '-rw-r--r-- 0/0 5 got/abs', '-rw-r--r-- 0/0 5 got/deep']);
  });
  // The context stays confined to itself: build-copy.test.ts 'never reads a host file through a symlink'.
});

describe('WORKDIR creates missing directories owned by the USER (llb.Mkdir WithUser)', () => {
  it('numeric, by name through /etc/passwd and /etc/group, existing dirs keep their owner, across stages', async () => {
    const ctx = path.join(work, 'workdir');
    await writeTree(ctx, {
      Dockerfile: [
        'FROM busybox AS first',
        'USER 1234:2345',
        'WORKDIR /w/x',
        'USER nobody',
        'WORKDIR /w/y',
        'USER daemon:nogroup',
        'WORKDIR /tmp/d',
        'USER 4321',
        'WORKDIR /w/x',
        'FROM first',
        'WORKDIR /inherited',
        'USER root',
        'WORKDIR /rooted',
        '',
      ].join('\n'),
    });
    const built = await buildAndList(ctx);
    const n = built.layers.length;
    expect(built.layers.slice(n - 5)).toEqual([
      ['drwxr-xr-x 1234/2345 0 w/', 'drwxr-xr-x 1234/2345 0 w/x/'],
      ['drwxr-xr-x 1234/2345 0 w/', 'drwxr-xr-x 65534/65534 0 w/y/'], // w/ was there: its owner stays
      ['drwxrwxrwt 0/0 0 tmp/', 'drwxr-xr-x 1/65534 0 tmp/d/'],
      ['drwxr-xr-x 4321/4321 0 inherited/'], // the USER of the base stage; WORKDIR /w/x existed: no layer
      ['drwxr-xr-x 0/0 0 rooted/'],
    ]);
    expect(built.config.config.User).toBe('root');
    expect(built.config.config.WorkingDir).toBe('/rooted');
  });
});

describe('hard links are kept (fsutil copy inode map)', () => {
  it('in local archives ADD unpacks (tar, gzip, bzip2, xz), between context files of one COPY source, and COPY --from', async () => {
    const ctx = path.join(work, 'hardlinks');
    await writeTree(ctx, {
      Dockerfile: ['FROM busybox AS linked', 'RUN mkdir /h && echo x > /h/a && ln /h/a /h/b', 'FROM busybox', 'COPY --from=linked /h/ /s/', 'COPY ctx/ /c/', 'COPY ctx/one ctx/two /separate/', 'ADD plain.tar /t/', 'ADD tree.tar.gz /g/', 'ADD tree.tar.bz2 /b/', 'ADD tree.tar.xz /x/', ''].join('\n'),
      'ctx/one': 'same inode\n',
      'tree/file': 'in the archive\n',
    });
    await fs.link(path.join(ctx, 'ctx/one'), path.join(ctx, 'ctx/two'));
    await fs.mkdir(path.join(ctx, 'ctx/sub'));
    await fs.link(path.join(ctx, 'ctx/one'), path.join(ctx, 'ctx/sub/three'));
    await tool('sh', ['-c', 'mkdir tree/d && ln tree/file tree/d/again && chmod 640 tree/file && tar --owner=0 --group=0 --numeric-owner -cf plain.tar -C tree file d && for c in gzip bzip2 xz; do tar --owner=0 --group=0 --numeric-owner -cf - -C tree file d | $c > tree.tar.$( [ $c = gzip ] && echo gz || ([ $c = bzip2 ] && echo bz2 || echo xz)); done && rm -r tree'], { cwd: ctx });
    const built = await buildAndList(ctx);
    const n = built.layers.length;
    expect(built.layers[n - 7]).toEqual(['drwxr-xr-x 0/0 0 s/', '-rw-r--r-- 0/0 2 s/a', 'hrw-r--r-- 0/0 0 s/b link to s/a']); // COPY --from a stage
    expect(built.layers[n - 6]).toEqual(['drwxr-xr-x 0/0 0 c/', '-rw-r--r-- 0/0 11 c/one', 'drwxr-xr-x 0/0 0 c/sub/', 'hrw-r--r-- 0/0 0 c/sub/three link to c/one', 'hrw-r--r-- 0/0 0 c/two link to c/one'].sort(byPath));
    // Two source arguments: two copies, as BuildKit (one copier per source).
    expect(built.layers[n - 5]).toEqual(['drwxr-xr-x 0/0 0 separate/', '-rw-r--r-- 0/0 11 separate/one', '-rw-r--r-- 0/0 11 separate/two']);
    for (const [i, dir] of ['t', 'g', 'b', 'x'].entries()) {
      const listing = built.layers[n - 4 + i]!.filter((l) => !l.endsWith(`${dir}/`));
      // The first name in walk order carries the content (containerd's tar writer), here d/again.
      expect(listing).toEqual([`drwxr-xr-x 0/0 0 ${dir}/d/`, `-rw-r----- 0/0 15 ${dir}/d/again`, `hrw-r----- 0/0 0 ${dir}/file link to ${dir}/d/again`]);
    }
    expect(await fileInLayer(built.blobs[n - 3]!, 'g/d/again')).toBe('in the archive\n');
  });
});

describe('hard links when a later source replaces their target', () => {
  it('ADD of two archives: the link whose target became a directory is a file again', async () => {
    const ctx = path.join(work, 'hardlink-overlap');
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nADD first.tar second.tar /d/\n', 'one/x': 'first x\n', 'two/x/inner': 'inner\n' });
    await tool('sh', ['-c', 'ln one/x one/y && tar --owner=0 --group=0 --numeric-owner -cf first.tar -C one x y && tar --owner=0 --group=0 --numeric-owner -cf second.tar -C two x && rm -r one two'], { cwd: ctx });
    const built = await buildAndList(ctx);
    expect(built.layers[built.layers.length - 1]).toEqual(['drwxr-xr-x 0/0 0 d/', 'drwxr-xr-x 0/0 0 d/x/', '-rw-r--r-- 0/0 6 d/x/inner', '-rw-r--r-- 0/0 8 d/y']);
    expect(await fileInLayer(built.blobs[built.blobs.length - 1]!, 'd/y')).toBe('first x\n');
  });
});

describe('symbolic --chmod (BuildKit: dchapes-mode, BSD setmode with umask 0)', () => {
  it('changes each copied file and directory relative to its own mode', async () => {
    const ctx = path.join(work, 'chmod');
    await writeTree(ctx, {
      Dockerfile: ['FROM busybox', 'COPY --chmod=u+x,go-w f644 f666 f600 /m/', 'ADD --chmod=go-rwx,a+X d/ /d/', ''].join('\n'),
      f644: '644\n',
      f666: '666\n',
      f600: '600\n',
      'd/exe': 'exe\n',
      'd/plain': 'plain\n',
      'd/sub/x': 'x\n',
    });
    for (const [f, m] of [['f644', 0o644], ['f666', 0o666], ['f600', 0o600], ['d/exe', 0o755], ['d/plain', 0o644], ['d/sub', 0o750], ['d/sub/x', 0o640]] as const) {
      await fs.chmod(path.join(ctx, f), m);
    }
    const built = await buildAndList(ctx);
    const n = built.layers.length;
    expect(built.layers[n - 2]).toEqual(['drwxr-xr-x 0/0 0 m/', '-rwx------ 0/0 4 m/f600', '-rwxr--r-- 0/0 4 m/f644', '-rwxr--r-- 0/0 4 m/f666']);
    // go-rwx then +X: execute for all where the original had one or on directories.
    expect(built.layers[n - 1]).toEqual(['drwx--x--x 0/0 0 d/', '-rwx--x--x 0/0 4 d/exe', '-rw------- 0/0 6 d/plain', 'drwx--x--x 0/0 0 d/sub/', '-rw------- 0/0 2 d/sub/x']);
  });

  it('leaves what ADD unpacks from an archive with the archive\'s modes (BuildKit unpack takes no mode)', async () => {
    const ctx = path.join(work, 'chmod-archive');
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nADD --chmod=0600 t.tar plain.txt /a/\n', 'tree/run.sh': 'run\n', 'plain.txt': 'p\n' });
    await tool('sh', ['-c', 'chmod 755 tree/run.sh && tar --owner=0 --group=0 --numeric-owner -cf t.tar -C tree run.sh && rm -r tree'], { cwd: ctx });
    const built = await buildAndList(ctx);
    expect(built.layers[built.layers.length - 1]).toEqual(['drwxr-xr-x 0/0 0 a/', '-rw------- 0/0 2 a/plain.txt', '-rwxr-xr-x 0/0 4 a/run.sh']);
  });

  it('refuses a malformed mode with the Dockerfile line', async () => {
    const ctx = path.join(work, 'chmod-bad');
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nCOPY --chmod=u+q f /f\n', f: 'f\n' });
    const r = await tsbuild(['build', ctx], { root });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:2/);
    expect(r.stderr).toMatch(/--chmod/);
    expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
  });
});

describe('COPY --parents (BuildKit convert_copy.go: pivot, include pattern, required paths)', () => {
  it('keeps the source paths, with ** and the /./ pivot, from the context and from a stage', async () => {
    const ctx = path.join(work, 'parents');
    await writeTree(ctx, {
      Dockerfile: [
        'FROM busybox AS st',
        'RUN mkdir -p /srv/app/conf && echo s > /srv/app/conf/s.conf && echo t > /srv/app/top.conf',
        'FROM busybox',
        'COPY --parents a/b/c.txt x/pkg.json /p1/',
        'COPY --parents **/pkg.json /p2/',
        'COPY --parents ./a/./b/*.json /p3/',
        'COPY --parents a/b /p4/',
        'COPY --parents --from=st /srv/./app/**/*.conf /p5/',
        '',
      ].join('\n'),
      'a/b/c.txt': 'c\n',
      'a/b/d.json': 'd\n',
      'a/e.txt': 'e\n',
      'x/pkg.json': 'p\n',
      'x/y/z/pkg.json': 'q\n',
      'ignored/pkg.json': 'i\n',
      '.dockerignore': 'ignored\n',
    });
    await fs.chmod(path.join(ctx, 'a'), 0o750); // the kept parents carry their own metadata
    const built = await buildAndList(ctx);
    const n = built.layers.length;
    expect(built.layers.slice(n - 5)).toEqual([
      ['drwxr-xr-x 0/0 0 p1/', 'drwxr-x--- 0/0 0 p1/a/', 'drwxr-xr-x 0/0 0 p1/a/b/', '-rw-r--r-- 0/0 2 p1/a/b/c.txt', 'drwxr-xr-x 0/0 0 p1/x/', '-rw-r--r-- 0/0 2 p1/x/pkg.json'],
      ['drwxr-xr-x 0/0 0 p2/', 'drwxr-xr-x 0/0 0 p2/x/', '-rw-r--r-- 0/0 2 p2/x/pkg.json', 'drwxr-xr-x 0/0 0 p2/x/y/', 'drwxr-xr-x 0/0 0 p2/x/y/z/', '-rw-r--r-- 0/0 2 p2/x/y/z/pkg.json'],
      ['drwxr-xr-x 0/0 0 p3/', 'drwxr-xr-x 0/0 0 p3/b/', '-rw-r--r-- 0/0 2 p3/b/d.json'],
      ['drwxr-xr-x 0/0 0 p4/', 'drwxr-x--- 0/0 0 p4/a/', 'drwxr-xr-x 0/0 0 p4/a/b/', '-rw-r--r-- 0/0 2 p4/a/b/c.txt', '-rw-r--r-- 0/0 2 p4/a/b/d.json'],
      ['drwxr-xr-x 0/0 0 p5/', 'drwxr-xr-x 0/0 0 p5/app/', 'drwxr-xr-x 0/0 0 p5/app/conf/', '-rw-r--r-- 0/0 2 p5/app/conf/s.conf', '-rw-r--r-- 0/0 2 p5/app/top.conf'],
    ]);
  });

  it('refuses a missing source without wildcards, with its location', async () => {
    const ctx = path.join(work, 'parents-missing');
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nCOPY --parents a/nope.txt /p/\n', 'a/yes.txt': 'y\n' });
    const r = await tsbuild(['build', ctx], { root });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:2/);
    expect(r.stderr).toMatch(/a\/nope\.txt/);
  });
});

describe('--add-host NAME:IP (buildx; BuildKit appends ExtraHosts to the step\'s /etc/hosts)', () => {
  it('RUN steps find the entries in /etc/hosts, the layer does not keep it, and the entries are part of the key', async () => {
    const ctx = path.join(work, 'addhost');
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nRUN grep -E "(db|v6)\\.local$" /etc/hosts > /seen\n' });
    const first = await buildAndList(ctx, ['--add-host', 'db.local:10.1.2.3', '--add-host', 'v6.local=[fd00::5]']);
    const n = first.layers.length;
    expect(first.layers[n - 1]).toEqual(['-rw-r--r-- 0/0 35 seen']);
    expect(await fileInLayer(first.blobs[n - 1]!, 'seen')).toBe('10.1.2.3\tdb.local\nfd00::5\tv6.local\n');
    const second = await buildAndList(ctx, ['--add-host', 'db.local:10.9.9.9']);
    expect(await fileInLayer(second.blobs[second.blobs.length - 1]!, 'seen')).toBe('10.9.9.9\tdb.local\n');
  });

  it.each(['nope', 'x:999.1.1.1', ':10.0.0.1', 'gw:host-gateway'])('refuses --add-host %s as a usage error', async (spec) => {
    const r = await tsbuild(['build', '--add-host', spec, path.join(work, 'addhost')], { root });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(JSON.stringify(spec));
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});

function byPath(a: string, b: string): number {
  const pa = a.split(' ')[3]!;
  const pb = b.split(' ')[3]!;
  return pa < pb ? -1 : pa > pb ? 1 : 0;
}
