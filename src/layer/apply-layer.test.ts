import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pack as tarPack } from 'tar-stream';
import { applyLayer } from './apply-layer.js';
import { layerFromDirectory } from './layer-from-directory.js';
import { snapshotTree, type TreeNode } from './test-tree-snapshot.js';
import { writeLayer, type LayerEntry } from './write-layer.js';

const isRoot = process.getuid?.() === 0;
let tmp: string;
let n = 0;

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'tsb-apply-'));
});
afterAll(() => fsp.rm(tmp, { recursive: true, force: true }));

async function freshDir(name: string): Promise<string> {
  const d = path.join(tmp, `${name}-${n++}`);
  await fsp.mkdir(d, { recursive: true });
  return d;
}

async function layerFile(entries: LayerEntry[]): Promise<string> {
  const f = path.join(tmp, `layer-${n++}.tar`);
  await writeLayer(entries, createWriteStream(f));
  return f;
}

const file = (p: string, content: string, extra: Partial<LayerEntry> = {}): LayerEntry => ({
  path: p,
  type: 'file',
  mode: 0o644,
  uid: 0,
  gid: 0,
  mtime: 1_500_000_000,
  size: Buffer.byteLength(content),
  source: () => Readable.from([Buffer.from(content)]),
  ...extra,
});
const dir = (p: string, extra: Partial<LayerEntry> = {}): LayerEntry => ({ path: p, type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 1_500_000_000, ...extra });
const mark = (p: string, type: 'whiteout' | 'opaque'): LayerEntry => ({ path: p, type, mode: 0o644, uid: 0, gid: 0, mtime: 1_500_000_000 });

/** Hand-made tar (any order, any names) with tar-stream's packer: for hostile input. */
type Raw = { name: string; type?: 'file' | 'directory' | 'symlink' | 'link'; linkname?: string; content?: string; mode?: number };
async function rawTar(entries: Raw[]): Promise<Buffer> {
  const p = tarPack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of p) chunks.push(Buffer.from(c as Uint8Array));
  })();
  for (const e of entries) {
    const type = e.type ?? 'file';
    const header = { name: e.name, type, mode: e.mode ?? (type === 'directory' ? 0o755 : 0o644), mtime: new Date(1_500_000_000_000), ...(e.linkname !== undefined ? { linkname: e.linkname } : {}) };
    if (type === 'file') p.entry(header, e.content ?? '');
    else p.entry(header);
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

function withoutTimes(m: Map<string, TreeNode>): Map<string, Omit<TreeNode, 'mtime'>> {
  return new Map([...m].map(([k, v]) => [k, { ...v, mtime: 0 }]));
}

describe('applyLayer: round trip with GNU tar', () => {
  it('applies a GNU tar layer, recaptures it, applies again: identical trees', async () => {
    const src = await freshDir('src');
    await fsp.mkdir(path.join(src, 'bin'));
    await fsp.mkdir(path.join(src, 'tmp'), { mode: 0o1777 });
    await fsp.chmod(path.join(src, 'tmp'), 0o1777);
    await fsp.mkdir(path.join(src, 'srv'));
    await fsp.chmod(path.join(src, 'srv'), 0o2775);
    await fsp.writeFile(path.join(src, 'bin', 'tool'), '#!/bin/sh\n');
    await fsp.link(path.join(src, 'bin', 'tool'), path.join(src, 'bin', 'tool-alias'));
    await fsp.symlink('tool', path.join(src, 'bin', 'sym'));
    await fsp.symlink('/etc/passwd', path.join(src, 'abs-sym'));
    const long = path.join(src, 'a'.repeat(60), 'b'.repeat(60));
    await fsp.mkdir(long, { recursive: true });
    await fsp.writeFile(path.join(long, `${'c'.repeat(80)}.txt`), 'deep');
    await fsp.writeFile(path.join(src, 'naïve-ファイル'), 'utf8 name');
    await fsp.writeFile(path.join(src, 'big.bin'), Buffer.alloc(3 * 1024 * 1024 + 17, 7));
    execFileSync('mkfifo', [path.join(src, 'pipe')]);
    if (isRoot) {
      await fsp.lchown(path.join(src, 'bin', 'tool'), 1001, 1002);
      await fsp.lchown(path.join(src, 'srv'), 33, 33);
      await fsp.lchown(path.join(src, 'bin', 'sym'), 7, 8);
    }
    await fsp.chmod(path.join(src, 'bin', 'tool'), 0o4755); // after chown, which clears setuid
    await fsp.chmod(path.join(src, 'srv'), 0o2775);
    const when = new Date(1_400_000_000_000);
    for (const p of ['bin/tool', 'big.bin', 'srv', 'bin', 'tmp']) await fsp.utimes(path.join(src, p), when, when);
    const gnuTar = path.join(tmp, 'gnu.tar');
    execFileSync('tar', ['--sort=name', '--numeric-owner', '--format=posix', '-C', src, '-cf', gnuTar, '.']);
    execFileSync('gzip', ['-k', '-n', gnuTar]);

    const one = await freshDir('one');
    const warnings: string[] = [];
    const r1 = await applyLayer(createReadStream(`${gnuTar}.gz`), one, { onWarning: (m) => warnings.push(m) });
    expect(r1.compression).toBe('gzip');
    expect(r1.diffId).toBe(`sha256:${execFileSync('sha256sum', [gnuTar], { encoding: 'utf8' }).split(' ')[0]}`);
    expect(warnings).toEqual([]);

    const srcSnap = await snapshotTree(src);
    const oneSnap = await snapshotTree(one);
    expect(oneSnap).toEqual(srcSnap);
    expect(oneSnap.get('bin/tool')).toMatchObject({ mode: 0o4755, mtime: 1_400_000_000, ...(isRoot ? { uid: 1001, gid: 1002 } : {}) });
    expect(oneSnap.get('bin/tool-alias')).toMatchObject({ hardlinkOf: 'bin/tool' });
    expect(oneSnap.get('tmp')).toMatchObject({ mode: 0o1777, mtime: 1_400_000_000 });

    const recaptured = path.join(tmp, 'recaptured.tar');
    const w = await writeLayer(layerFromDirectory(one), createWriteStream(recaptured));
    const two = await freshDir('two');
    const r2 = await applyLayer(createReadStream(recaptured), two);
    expect(r2.diffId).toBe(w.diffId);
    expect(r2.compression).toBe('uncompressed');
    expect(await snapshotTree(two)).toEqual(oneSnap);
    // Capturing the copy gives the same layer again.
    expect((await writeLayer(layerFromDirectory(two), createWriteStream(path.join(tmp, 'again.tar')))).diffId).toBe(w.diffId);
  });
});

describe('applyLayer: whiteouts and replacements', () => {
  it('whiteouts remove lower files; opaque directories keep only this layer; file <-> dir', async () => {
    const root = await freshDir('wh');
    await applyLayer(createReadStream(await layerFile([
      dir('a'), file('a/b', 'b'), file('a/c', 'c'),
      dir('d'), file('d/x', 'x'), dir('d/y'), file('d/y/z', 'z'), dir('d/keep'), file('d/keep/old', 'old'),
      file('f', 'file f'), dir('g'), file('g/inner', 'in g'),
    ])), root);
    await applyLayer(createReadStream(await layerFile([
      mark('a/b', 'whiteout'),
      mark('d', 'opaque'), file('d/new', 'new'), dir('d/keep'), file('d/keep/fresh', 'fresh'),
      dir('f', { mode: 0o750 }), file('f/inner', 'inside f'),
      file('g', 'g is a file now'),
    ])), root);
    const snap = await snapshotTree(root);
    expect([...snap.keys()]).toEqual(['a', 'a/c', 'd', 'd/keep', 'd/keep/fresh', 'd/new', 'f', 'f/inner', 'g']);
    expect(snap.get('f')).toMatchObject({ type: 'dir', mode: 0o750, mtime: 1_500_000_000 });
    expect(snap.get('g')).toMatchObject({ type: 'file' });
    // ... and back: f becomes a file again, g a directory; whiteout of a whole directory.
    await applyLayer(createReadStream(await layerFile([file('f', 'file again'), dir('g'), mark('d', 'whiteout')])), root);
    const back = await snapshotTree(root);
    expect([...back.keys()]).toEqual(['a', 'a/c', 'f', 'g']);
    expect(await fsp.readFile(path.join(root, 'f'), 'utf8')).toBe('file again');
    expect(back.get('g')).toMatchObject({ type: 'dir' });
  });

  it('an opaque marker after siblings in the same layer keeps those siblings (containerd order)', async () => {
    const root = await freshDir('opq');
    await applyLayer(Readable.from([await rawTar([{ name: 'd/', type: 'directory' }, { name: 'd/lower', content: 'l' }])]), root);
    await applyLayer(Readable.from([await rawTar([{ name: 'd/-early', content: 'e' }, { name: 'd/.wh..wh..opq' }, { name: 'd/zz', content: 'z' }])]), root);
    expect((await fsp.readdir(path.join(root, 'd'))).sort()).toEqual(['-early', 'zz']);
  });

  it('rejects a truncated layer with LAYER_INVALID', async () => {
    const tar = await rawTar([{ name: 'f', content: 'x'.repeat(5000) }]);
    await expect(applyLayer(Readable.from([tar.subarray(0, 1500)]), await freshDir('trunc'))).rejects.toMatchObject({ code: 'LAYER_INVALID' });
    const gz = execFileSync('gzip', ['-c', '-n'], { input: tar });
    await expect(applyLayer(Readable.from([gz.subarray(0, 30)]), await freshDir('trunc'))).rejects.toMatchObject({ code: 'LAYER_INVALID' });
  });
});

describe('applyLayer: an entry that cannot be created', () => {
  it('rejects (never stays pending) when a PAX long name precedes a name too long to create', async () => {
    // Python's tarfile writes real PAX headers; thirty 200-byte directories exceed PATH_MAX.
    const long = `${Array.from({ length: 30 }, (_, i) => String(i).padStart(3, '0') + 'd'.repeat(197)).join('/')}/f`;
    const script = 'import io,sys,tarfile\nt=tarfile.open(fileobj=sys.stdout.buffer,mode="w|",format=tarfile.PAX_FORMAT)\n' + 'for n in sys.argv[1:]:\n  i=tarfile.TarInfo(n); i.size=1; t.addfile(i, io.BytesIO(b"x"))\nt.close()\n';
    for (const names of [['p'.repeat(150), long, 'ok.txt'], [long, 'ok.txt']]) {
      const tar = execFileSync('python3', ['-c', script, ...names]);
      const outcome = await Promise.race([
        applyLayer(Readable.from([tar]), await freshDir('toolong')).then(
          () => 'applied',
          (e: unknown) => (e as { code?: string }).code,
        ),
        new Promise((r) => setTimeout(() => r('still pending after 10 s'), 10_000).unref()),
      ]);
      expect(outcome, `names ${names.map((x) => x.slice(0, 8)).join(', ')}`).toBe('LAYER_IO');
    }
  });
});

// privateRoot writes files under their final names: the same confinement must hold.
describe.each([false, true])('applyLayer (privateRoot: %s): hostile layers stay inside the root', (privateRoot) => {
  let outside: string;
  let sentinel: string;
  let base: string;
  const sentinelText = 'do not touch';

  beforeAll(async () => {
    base = await freshDir('hostile');
    outside = path.join(base, 'outside');
    await fsp.mkdir(outside);
    sentinel = path.join(outside, 'sentinel');
    await fsp.writeFile(sentinel, sentinelText);
    await fsp.chmod(outside, 0o755);
  });

  async function expectUntouched(): Promise<void> {
    expect(await fsp.readFile(sentinel, 'utf8')).toBe(sentinelText);
    const st = await fsp.stat(sentinel);
    expect(st.nlink).toBe(1);
    expect(st.mode & 0o7777).toBe(0o644);
    expect(await fsp.readdir(outside)).toEqual(['sentinel']);
    expect((await fsp.stat(outside)).mode & 0o7777).toBe(0o755);
    expect((await fsp.readdir(base)).filter((x) => x !== 'outside' && !x.startsWith('r'))).toEqual([]);
  }

  /** Each root is base/rN/x/y, so three ".." from the root land in base. */
  async function root(): Promise<string> {
    const r = path.join(base, `r${n++}`, 'x', 'y');
    await fsp.mkdir(r, { recursive: true });
    return r;
  }

  const outsideRel = () => path.relative(path.join(base, 'rN', 'x', 'y'), outside); // "../../../outside"

  it.each([
    ['../x', [{ name: '../x', content: 'evil' }]],
    ['a/../../x', [{ name: 'a/../../x', content: 'evil' }]],
    ['../outside/sentinel', [{ name: '../../../outside/sentinel', content: 'evil' }]],
    ['hardlink to ../outside', [{ name: 'h', type: 'link', linkname: '../../../outside/sentinel' }]],
  ] as [string, Raw[]][])('refuses %s with LAYER_UNSAFE', async (_name, entries) => {
    await expect(applyLayer(Readable.from([await rawTar(entries)]), await root(), { privateRoot })).rejects.toMatchObject({ code: 'LAYER_UNSAFE' });
    await expectUntouched();
  });

  it('keeps absolute names inside the root, with a warning', async () => {
    const r = await root();
    const name = `tsbuild-test-${process.pid}-${n++}`;
    const warnings: string[] = [];
    await applyLayer(Readable.from([await rawTar([{ name: `/etc/${name}`, content: 'contained' }, { name: `${sentinel}`, content: 'evil' }])]), r, { privateRoot, onWarning: (m) => warnings.push(m) });
    expect(await fsp.readFile(path.join(r, 'etc', name), 'utf8')).toBe('contained');
    await expect(fsp.access(`/etc/${name}`)).rejects.toThrow();
    expect(await fsp.readFile(path.join(r, sentinel), 'utf8')).toBe('evil');
    expect(warnings).toHaveLength(1);
    await expectUntouched();
  });

  it('writes through a symlink to / stay inside the root', async () => {
    const r = await root();
    const name = `tsbuild-test-${process.pid}-${n++}`;
    await applyLayer(Readable.from([await rawTar([
      { name: 'evil', type: 'symlink', linkname: '/' },
      { name: `evil/${name}`, content: 'contained' },
      { name: 'evil2', type: 'symlink', linkname: outside },
      { name: 'evil2/sentinel', content: 'evil' },
    ])]), r, { privateRoot });
    expect(await fsp.readFile(path.join(r, name), 'utf8')).toBe('contained');
    await expect(fsp.access(`/${name}`)).rejects.toThrow();
    expect(await fsp.readFile(path.join(r, outside, 'sentinel'), 'utf8')).toBe('evil');
    expect(await fsp.readlink(path.join(r, 'evil'))).toBe('/'); // the link itself is kept verbatim
    await expectUntouched();
  });

  it('writes through a relative ../../.. symlink stay inside the root', async () => {
    const r = await root();
    await applyLayer(Readable.from([await rawTar([
      { name: 'up', type: 'symlink', linkname: outsideRel() },
      { name: 'up/sentinel', content: 'evil' },
      { name: 'deep/', type: 'directory' },
      { name: 'deep/up', type: 'symlink', linkname: '../../../../..' },
      { name: 'deep/up/outside/sentinel', content: 'evil' },
    ])]), r, { privateRoot });
    expect(await fsp.readFile(path.join(r, 'outside', 'sentinel'), 'utf8')).toBe('evil');
    await expectUntouched();
  });

  it('replaces a symlink at the final component instead of writing through it', async () => {
    const r = await root();
    await applyLayer(Readable.from([await rawTar([{ name: 's', type: 'symlink', linkname: sentinel }])]), r, { privateRoot });
    await applyLayer(Readable.from([await rawTar([{ name: 's', content: 'evil' }])]), r, { privateRoot });
    expect((await fsp.lstat(path.join(r, 's'))).isFile()).toBe(true);
    await expectUntouched();
  });

  it('hard links to /etc/passwd or through symlinks only reach inside the root', async () => {
    const r = await root();
    const passwd = await fsp.stat('/etc/passwd');
    await expect(applyLayer(Readable.from([await rawTar([{ name: 'pw', type: 'link', linkname: '/etc/passwd' }])]), r, { privateRoot })).rejects.toMatchObject({ code: 'LAYER_INVALID' });
    await expect(
      applyLayer(Readable.from([await rawTar([{ name: 'ev', type: 'symlink', linkname: outside }, { name: 'h', type: 'link', linkname: 'ev/sentinel' }])]), r, { privateRoot }),
    ).rejects.toMatchObject({ code: 'LAYER_INVALID' });
    expect((await fsp.stat('/etc/passwd')).nlink).toBe(passwd.nlink);
    // With an etc/passwd inside the root, the same link is fine and points at that one.
    await applyLayer(Readable.from([await rawTar([{ name: 'etc/passwd', content: 'inner' }, { name: 'pw', type: 'link', linkname: '/etc/passwd' }])]), r, { privateRoot });
    expect(await fsp.readFile(path.join(r, 'pw'), 'utf8')).toBe('inner');
    await expectUntouched();
  });

  it('whiteouts and opaque markers behind symlinks do not delete outside', async () => {
    const r = await root();
    await applyLayer(Readable.from([await rawTar([
      { name: 'ev', type: 'symlink', linkname: outside },
      { name: 'ev/.wh.sentinel' },
      { name: 'rel', type: 'symlink', linkname: outsideRel() },
      { name: 'rel/.wh..wh..opq' },
      { name: '.wh.ev' },
    ])]), r, { privateRoot });
    await expect(fsp.lstat(path.join(r, 'ev'))).rejects.toThrow();
    await expectUntouched();
  });

  it('a directory the layer made, then replaced by a symlink, is not written through', async () => {
    const r = await root();
    await applyLayer(Readable.from([await rawTar([
      { name: 'd/', type: 'directory' },
      { name: 'd/f', content: 'inside' },
      { name: 'd', type: 'symlink', linkname: outside },
      { name: 'd/sentinel', content: 'evil' },
      { name: 'e/f', content: 'inside' },
      { name: 'e/g', type: 'symlink', linkname: outsideRel() },
      { name: 'e/g/sentinel', content: 'evil' },
    ])]), r, { privateRoot });
    expect(await fsp.readFile(path.join(r, outside, 'sentinel'), 'utf8')).toBe('evil');
    await expectUntouched();
  });

  it('a directory later replaced by a symlink does not get its deferred mode applied outside', async () => {
    const r = await root();
    await applyLayer(Readable.from([await rawTar([
      { name: 'x/', type: 'directory', mode: 0o700 },
      { name: 'x', type: 'symlink', linkname: outside },
      { name: 'y/', type: 'directory', mode: 0o777 },
      { name: 'y', type: 'symlink', linkname: outsideRel() },
    ])]), r, { privateRoot });
    await expectUntouched();
  });
});

describe('applyLayer: devices, fifos, xattrs, abort', () => {
  it('creates fifos; devices only when allowed, else a counted warning; xattrs reported', async () => {
    const tar = await layerFile([
      { path: 'null', type: 'char', mode: 0o666, uid: 0, gid: 0, mtime: 1_500_000_000, devmajor: 1, devminor: 3 },
      { path: 'pipe', type: 'fifo', mode: 0o640, uid: 0, gid: 0, mtime: 1_500_000_000 },
      file('attr', 'a', { xattrs: { 'user.k': Buffer.from('v') } }),
    ]);
    const denied = await freshDir('dev');
    const warnings: string[] = [];
    const r = await applyLayer(createReadStream(tar), denied, { allowDevices: false, onWarning: (m) => warnings.push(m) });
    expect(r.warnings).toBe(2);
    expect(warnings.some((w) => w.includes('"null"'))).toBe(true);
    expect(warnings.some((w) => w.includes('"attr"'))).toBe(true);
    const snap = await snapshotTree(denied);
    expect(snap.has('null')).toBe(false);
    expect(snap.get('pipe')).toMatchObject({ type: 'fifo', mode: 0o640, mtime: 1_500_000_000 });
    if (isRoot) {
      const allowed = await freshDir('dev');
      await applyLayer(createReadStream(tar), allowed, { allowDevices: true });
      const st = await fsp.lstat(path.join(allowed, 'null'));
      expect(st.isCharacterDevice()).toBe(true);
      expect(st.rdev).toBe((await fsp.stat('/dev/null')).rdev);
      expect(st.mode & 0o7777).toBe(0o666);
    }
  });

  // cap_setuid (bit 7) and cap_net_raw (bit 13), effective: bytes 0x80 and up, which a UTF-8
  // decode of the PAX record would mangle.
  const CAP = Buffer.from('0100000280200000000000000000000000000000', 'hex');
  const capOf = (p: string): string => execFileSync('getfattr', ['--only-values', '-h', '-n', 'security.capability', '-e', 'hex', p], { stdio: ['ignore', 'pipe', 'pipe'] }).toString('latin1');

  it.runIf(isRoot)('sets file capabilities byte for byte, after the owner; reports other xattrs', async () => {
    const tar = await layerFile([
      file('big', 'x'.repeat(70_000)), // data spanning blocks before the entry that matters
      file('bin/ping', 'elf', { uid: 1000, gid: 1000, mode: 0o755, xattrs: { 'security.capability': CAP, 'user.k': Buffer.from('v') } }),
      file('plain', 'p'),
    ]);
    const root = await freshDir('caps');
    const warnings: string[] = [];
    await applyLayer(createReadStream(tar), root, { onWarning: (m) => warnings.push(m) });
    const got = execFileSync('getfattr', ['--absolute-names', '-h', '-n', 'security.capability', '-e', 'hex', path.join(root, 'bin/ping')]).toString();
    expect(got).toContain(`security.capability=0x${CAP.toString('hex')}`);
    expect((await fsp.stat(path.join(root, 'bin/ping'))).uid).toBe(1000); // chown first: it would clear the capability
    expect(warnings).toEqual([expect.stringMatching(/"bin\/ping" other than security\.capability .*user\.k/)]);
    expect(() => capOf(path.join(root, 'plain'))).toThrow();
  });

  it.runIf(isRoot)('applies the capabilities GNU tar --xattrs wrote', async () => {
    const src = await freshDir('gnu-src');
    await fsp.mkdir(path.join(src, 'usr/bin'), { recursive: true });
    await fsp.writeFile(path.join(src, 'usr/bin/tool'), 'binary');
    execFileSync('setcap', ['cap_net_raw+ep', path.join(src, 'usr/bin/tool')]);
    const want = capOf(path.join(src, 'usr/bin/tool'));
    const tar = path.join(tmp, `gnu-${n++}.tar`);
    execFileSync('tar', ['--xattrs', '--xattrs-include=security.capability', '--format=posix', '-C', src, '-cf', tar, '.']);
    const root = await freshDir('gnu-caps');
    await applyLayer(createReadStream(tar), root);
    expect(capOf(path.join(root, 'usr/bin/tool'))).toBe(want);
  });

  it.runIf(isRoot)('dropSpecial: no device nodes, no setuid/setgid bits, no file capabilities, one warning per kind', async () => {
    const tar = await layerFile([
      { path: 'dev', type: 'dir', mode: 0o755, uid: 0, gid: 0, mtime: 1_500_000_000 },
      { path: 'dev/sda', type: 'block', mode: 0o666, uid: 0, gid: 0, mtime: 1_500_000_000, devmajor: 8, devminor: 0 },
      { path: 'dev/mem', type: 'char', mode: 0o666, uid: 0, gid: 0, mtime: 1_500_000_000, devmajor: 1, devminor: 1 },
      { path: 'pipe', type: 'fifo', mode: 0o640, uid: 0, gid: 0, mtime: 1_500_000_000 },
      file('suid', '#!/bin/sh\n', { mode: 0o6755 }),
      file('bin/ping', 'elf', { mode: 0o755, xattrs: { 'security.capability': CAP } }),
      dir('shared', { mode: 0o2775 }),
    ]);
    const root = await freshDir('drop');
    const warnings: string[] = [];
    await applyLayer(createReadStream(tar), root, { dropSpecial: true, onWarning: (m) => warnings.push(m) });
    const snap = await snapshotTree(root);
    expect(snap.has('dev/sda')).toBe(false);
    expect(snap.has('dev/mem')).toBe(false);
    expect(snap.get('pipe')).toMatchObject({ type: 'fifo', mode: 0o640 });
    expect((await fsp.stat(path.join(root, 'suid'))).mode & 0o7777).toBe(0o755);
    expect(() => capOf(path.join(root, 'bin/ping'))).toThrow();
    expect((await fsp.stat(path.join(root, 'shared'))).mode & 0o7777).toBe(0o2775); // a setgid directory grants nothing
    expect(warnings.sort()).toEqual([
      '1 files had their file capabilities left out (first: "bin/ping")',
      '1 files had their setuid/setgid bits cleared (first: "suid")',
      '2 device nodes skipped (first: "dev/mem")',
    ]);
    // Without it (a sandbox's rootfs), all of them are made.
    const full = await freshDir('keep');
    await applyLayer(createReadStream(tar), full);
    expect((await fsp.lstat(path.join(full, 'dev/sda'))).isBlockDevice()).toBe(true);
    expect((await fsp.stat(path.join(full, 'suid'))).mode & 0o7777).toBe(0o6755);
    expect(Buffer.from(capOf(path.join(full, 'bin/ping')), 'latin1').equals(CAP)).toBe(true);
  });

  it('stops on an aborted signal without leaving a temp file', async () => {
    const ac = new AbortController();
    const root = await freshDir('abort');
    const slow = new Readable({ read() {} });
    const p = applyLayer(slow, root, { signal: ac.signal });
    const tar = await rawTar([{ name: 'f', content: 'x'.repeat(100_000) }]);
    slow.push(tar.subarray(0, 20_000));
    await new Promise((r) => setTimeout(r, 50));
    ac.abort();
    await expect(p).rejects.toMatchObject({ name: 'AbortError' });
    expect(await fsp.readdir(root)).toEqual([]);
  });
});
