import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { bin, storeWithBusybox, tempDir, tsbuild, writeTree } from './support/cli.js';
import { makeTar, ociArchive, readTar, sha256, type RawEntry } from './support/hostile-archive.js';
import { ShellLex, parseDockerfile, splitStages, toInstructions } from '../src/dockerfile/index.js';
import { planBuild } from '../src/plan/index.js';
import { TsbuildError } from '../src/errors.js';

// The parts of scripts/torture (issue 7) that fit in npm test, at small counts. The full run,
// with its figures, is `scripts/torture` (docs/reliability.md).
let work: string;
let root: string;
let sentinelDir: string;
let sentinel: string;
const SENTINEL = `sentinel ${process.pid} ${Date.now()}\n`;

beforeAll(async () => {
  work = await tempDir('torture');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
  // Outside /tmp and outside the store: a RUN step's /tmp is not the host's.
  sentinelDir = await fs.mkdtemp('/work/.tsbuild-torture-test-');
  sentinel = path.join(sentinelDir, 'sentinel.txt');
  await fs.writeFile(sentinel, SENTINEL);
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
  await fs.rm(sentinelDir, { recursive: true, force: true });
});

async function sentinelIntact(): Promise<boolean> {
  const names = await fs.readdir(sentinelDir);
  return names.join(',') === 'sentinel.txt' && (await fs.readFile(sentinel, 'utf8')) === SENTINEL;
}

describe('expansion bounds (found by scripts/torture)', () => {
  const lex = new ShellLex('\\');
  it('refuses ${a:-${b:-...}} nested 5,000 deep with an expansion error, not a stack overflow', () => {
    let nest = 'x';
    for (let i = 0; i < 5000; i++) nest = `\${U${i}:-${nest}}`;
    expect(() => lex.processWord(nest, () => undefined)).toThrow(/nested more than 256 deep/);
    let ok = 'x';
    for (let i = 0; i < 100; i++) ok = `\${U${i}:-${ok}}`;
    expect(lex.processWord(ok, () => undefined)).toBe('x');
  });
  it('refuses a word whose expansion passes 16 Mi characters', () => {
    const big = 'y'.repeat(1 << 20);
    expect(() => lex.processWord('"$A$A$A$A$A$A$A$A$A$A$A$A$A$A$A$A$A"', () => big)).toThrow(TsbuildError);
    expect(lex.processWord('$A$A', () => big)).toHaveLength(2 << 20);
  });
  it('a build whose ENV expands past the bound fails with a located error instead of running out of memory', async () => {
    // scripts/torture used a doubling chain (ENV A1=${A0}${A0} ... A40) that aborted node with
    // an out-of-memory error; one wide line reaches the same bound in a single step.
    const ctx = path.join(work, 'doubling');
    const lines = ['FROM busybox', `ENV A0=${'x'.repeat(60_000)}`, `ENV A1="${'${A0}'.repeat(300)}"`];
    await writeTree(ctx, { Dockerfile: lines.join('\n') + '\n' });
    const r = await tsbuild(['build', ctx], { root });
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:\d+/);
    expect(r.stderr).toMatch(/longer than/);
  });
});

describe('mutated Dockerfiles through the parser and the planner', () => {
  it('give a plan or a TsbuildError for 1,000 inputs', () => {
    let a = 0x70127;
    const rand = (): number => {
      a = (a + 0x6d2b79f5) >>> 0;
      let t = a;
      t = Math.imul(t ^ (t >>> 15), t | 1);
      t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const seed = 'ARG BASE=busybox\nFROM ${BASE} AS build\nARG X=${BASE:-y}\nENV A=${X} B=${A:+z}\nRUN --mount=type=secret,id=s echo $A\nFROM build\nCOPY --from=build /a /b\nONBUILD RUN x\n';
    const snippets = ['${', '}', '\\\n', '<<EOF\n', '"', 'FROM ', 'ARG ', ' AS ', '--from=', '${A:?e}', '\0', '\n'];
    const P = { os: 'linux', architecture: 'amd64' };
    for (let i = 0; i < 1000; i++) {
      let s = seed;
      for (let r = 0; r < 1 + Math.floor(rand() * 4); r++) {
        const at = Math.floor(rand() * (s.length + 1));
        s = rand() < 0.7 ? s.slice(0, at) + snippets[Math.floor(rand() * snippets.length)] + s.slice(at) : s.slice(0, at) + s.slice(at + Math.floor(rand() * 20));
      }
      try {
        const parsed = parseDockerfile(s, { file: 'Dockerfile' });
        planBuild(splitStages(toInstructions(parsed)), { buildArgs: new Map(), targetPlatform: P, buildPlatform: P, escapeToken: parsed.escapeToken });
      } catch (e) {
        if (!(e instanceof TsbuildError)) throw new Error(`input ${i} ${JSON.stringify(s)}: ${String(e)}`);
      }
    }
  });
});

describe('hostile base layers', () => {
  const up = '../'.repeat(12);
  const base = makeTar([{ name: 'etc/', type: '5', mode: 0o755 }, { name: 'etc/hostname', body: 'base\n' }]);
  const cases: [string, () => Parameters<typeof makeTar>[0]][] = [
    ['dotdot', () => [{ name: `${up}${sentinel.slice(1)}`, body: 'pwned' }]],
    ['symlink then a write through it', () => [{ name: 'link', type: '2', linkname: sentinelDir }, { name: 'link/sentinel.txt', body: 'pwned' }, { name: 'link/new', body: 'pwned' }]],
    ['hard link to outside, then a write', () => [{ name: 'hl', type: '1', linkname: sentinel }, { name: 'hl', body: 'pwned' }]],
    ['PAX path override with ..', () => [{ name: 'innocent', pax: { path: `${up}${sentinel.slice(1)}` }, body: 'pwned' }]],
    ['declared size past the end', () => [{ name: 'big', declared: 1 << 30, body: 'short' }]],
  ];
  for (const [name, entries] of cases) {
    it(`${name}: refused or contained, nothing outside the store changes`, async () => {
      const tag = `hostile-${name.replace(/[^a-z]+/g, '-')}`;
      const archive = path.join(work, `${tag}.tar`);
      await fs.writeFile(archive, ociArchive([base, makeTar(entries())], `${tag}:latest`));
      const l = await tsbuild(['load', '-i', archive], { root });
      if (l.code === 0) {
        const ctx = path.join(work, `${tag}-ctx`);
        await writeTree(ctx, { Dockerfile: `FROM ${tag}:latest\nCOPY f /f\n`, f: 'f\n' });
        const out = path.join(work, `${tag}-out`);
        const b = await tsbuild(['build', '--pull', 'never', '--output', `type=local,dest=${out}`, ctx], { root });
        expect([0, 1]).toContain(b.code);
      }
      expect(await sentinelIntact()).toBe(true);
      const f = await tsbuild(['fsck'], { root });
      expect(f.code, f.stdout + f.stderr).toBe(0);
    });
  }
});

describe('RUN steps cannot reach the host', () => {
  it('cannot read or write host files, see host processes, mount, or leave a process behind', async () => {
    const ctx = path.join(work, 'escape');
    await writeTree(ctx, {
      Dockerfile: `FROM busybox
RUN mkdir /res; cat ${sentinel} > /res/read 2>/dev/null; cat /proc/1/root${sentinel} >> /res/read 2>/dev/null; echo pwned > ${sentinelDir}/w 2>/dev/null; echo pwned > ${sentinel} 2>/dev/null; true
RUN ls /proc | grep -cE '^[0-9]+$' > /res/nproc; (mount -t tmpfs none /mnt 2>/dev/null && echo mounted || echo refused) > /res/mount
RUN (sleep 4321 &); setsid sleep 4322 >/dev/null 2>&1 < /dev/null & echo started
`,
    });
    const out = path.join(work, 'escape-out');
    const r = await tsbuild(['build', '--no-cache', '--output', `type=local,dest=${out}`, ctx], { root });
    expect(r.code, r.stderr).toBe(0);
    expect(readFileSync(path.join(out, 'res/read'), 'utf8')).toBe('');
    expect(await sentinelIntact()).toBe(true);
    expect(Number(readFileSync(path.join(out, 'res/nproc'), 'utf8'))).toBeLessThan(8);
    await new Promise((res) => setTimeout(res, 200));
    const sleepers = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return /sleep 432[12]/.test(readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' '));
        } catch {
          return false;
        }
      });
    expect(sleepers).toEqual([]);
    expect(readFileSync('/proc/mounts', 'utf8')).not.toContain(root);
  });
});

// runc: a foreground `runc run` whose parent was killed ran on with the step; it now runs as
// PID 1 of a PID namespace that dies with tsbuild, and the next build removes its cgroups.
describe.each([['bwrap', 'run'], ['runc', 'runc']])('a RUN build (%s) killed with SIGKILL', (runtime, kind) => {
  it('leaves no sandbox process and no mount behind, and fsck is clean', async () => {
    const ctx = path.join(work, `killrun-${runtime}`);
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nRUN echo tsbuild-torture-kill-$((6*7)) && sleep 30\n' });
    const child = spawn(process.execPath, [bin, 'build', '--runtime', runtime, '--no-cache', '--progress', 'plain', ctx], { env: { ...process.env, TSBUILD_ROOT: root }, stdio: ['ignore', 'ignore', 'pipe'] });
    // The step dir of a running step carries its owner's pid (no one removes a live owner's).
    const mine = () => readdirSync(tmpdir()).filter((n) => n.startsWith(`tsbuild-${kind}-${child.pid}-`));
    let during: string[] = [];
    await new Promise<void>((resolve) => {
      child.stderr.on('data', (d: Buffer) => {
        // The step's output (the command line, echoed before the step starts, has no "42").
        if (d.toString().includes('tsbuild-torture-kill-42')) {
          during = mine();
          setTimeout(() => { child.kill('SIGKILL'); resolve(); }, 300);
        }
      });
      child.on('exit', () => resolve());
    });
    await new Promise((res) => setTimeout(res, 500));
    const left = readdirSync('/proc').filter((p) => {
      try {
        const c = readFileSync(`/proc/${p}/cmdline`, 'utf8');
        return c.includes('tsbuild-torture-kill') || ((c.startsWith('bwrap') || c.includes('runc')) && c.includes(root));
      } catch {
        return false;
      }
    });
    expect(left).toEqual([]);
    expect(readFileSync('/proc/mounts', 'utf8')).not.toContain(root);
    const f = await tsbuild(['fsck'], { root });
    expect(f.code, f.stdout).toBe(0);
    // The killed build's step dir (outside the store, so fsck cannot see it) is gone after the
    // next build, even one that runs no step (it used to stay in /tmp for good). Builds of other
    // test files running meanwhile may remove it earlier: any build sweeps dead owners' dirs.
    expect(during).toHaveLength(1);
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nENV A=1\n' });
    const next = await tsbuild(['build', ctx], { root });
    expect(next.code, next.stderr).toBe(0);
    expect(mine()).toEqual([]);
    if (runtime === 'runc') {
      // runc named the container after the step dir; as root it made cgroups of that name.
      const id = `tsbuild-${during[0]!.slice('tsbuild-runc-'.length)}`;
      const cgroups = readdirSync('/sys/fs/cgroup').flatMap((h) => [`/sys/fs/cgroup/${h}/${id}`]).concat(`/sys/fs/cgroup/${id}`);
      expect(cgroups.filter((d) => existsSync(d))).toEqual([]);
    }
  });
});

describe('four builds at once on one store', () => {
  it('all succeed with the right contents; identical inputs give one image ID', async () => {
    const jobs = [0, 1].map(async (k) => {
      const ctx = path.join(work, `conc-${k}`);
      await writeTree(ctx, { Dockerfile: `FROM busybox\nCOPY v /v\nRUN cp /v /w\n`, v: `value ${k}\n` });
      const out = path.join(work, `conc-out-${k}`);
      const r = await tsbuild(['build', '--output', `type=local,dest=${out}`, ctx], { root });
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(path.join(out, 'w'), 'utf8')).toBe(`value ${k}\n`);
    });
    const shared = path.join(work, 'conc-shared');
    await writeTree(shared, { Dockerfile: 'FROM busybox\nCOPY s /s\nRUN cat /s > /t\n', s: 'shared\n' });
    const ids = [0, 1].map(async (k) => {
      const iid = path.join(work, `iid-${k}`);
      const r = await tsbuild(['build', '--iidfile', iid, shared], { root, env: { SOURCE_DATE_EPOCH: '1700000000' } });
      expect(r.code, r.stderr).toBe(0);
      return fs.readFile(iid, 'utf8');
    });
    await Promise.all(jobs);
    const [a, b] = await Promise.all(ids);
    expect(a).toBe(b);
    const f = await tsbuild(['fsck'], { root });
    expect(f.code, f.stdout).toBe(0);
  });
});

describe('secrets', () => {
  it('leave no trace in the store (decompressed) or the trace-level log', async () => {
    const value = `S3CR3T-${process.pid}-${Date.now()}`;
    const ctx = path.join(work, 'secret');
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=tok cat /run/secrets/tok | wc -c > /len\nRUN --mount=type=secret,id=tok test "$(cat /run/secrets/tok)" = nope\n' });
    await writeTree(path.join(work, 'secret-src'), { tok: value });
    const r = await tsbuild(['build', '--log-level', 'trace', '--progress', 'plain', '--secret', `id=tok,src=${path.join(work, 'secret-src', 'tok')}`, ctx], { root });
    expect(r.code).toBe(1);
    expect(r.stdout + r.stderr).not.toContain(value);
    const stack = [root];
    let files = 0;
    while (stack.length) {
      const d = stack.pop() as string;
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) stack.push(p);
        else if (e.isFile()) {
          let buf = readFileSync(p);
          if (buf[0] === 0x1f && buf[1] === 0x8b) buf = zlib.gunzipSync(buf);
          files++;
          expect(buf.includes(value), p).toBe(false);
        }
      }
    }
    expect(files).toBeGreaterThan(3);
  });
});

describe('tsbuild load refuses tampered archives', () => {
  // Issue 7 item 5: every layer must match the manifest (digest, size) and the config's diff IDs;
  // a tampered archive is refused with a clear error and no image or tag is stored.
  type Files = Map<string, Buffer>;
  const blob = (d: string): string => `blobs/sha256/${d.slice('sha256:'.length)}`;
  const evilLayer = (): Buffer => makeTar([{ name: 'evil', body: 'evil\n' }]);
  let docker: RawEntry[];
  let oci: RawEntry[];
  beforeAll(async () => {
    const ctx = path.join(work, 'tamper');
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nCOPY a.txt /a.txt\n', 'a.txt': 'a\n' });
    const b = await tsbuild(['build', '-t', 'tamper:src', ctx], { root });
    expect(b.code, b.stderr).toBe(0);
    for (const fmt of ['docker', 'oci']) {
      const s = await tsbuild(['save', '--format', fmt, '-o', path.join(work, `tamper-${fmt}.tar`), 'tamper:src'], { root });
      expect(s.code, s.stderr).toBe(0);
    }
    docker = readTar(await fs.readFile(path.join(work, 'tamper-docker.tar')));
    oci = readTar(await fs.readFile(path.join(work, 'tamper-oci.tar')));
    const rmi = await tsbuild(['rmi', 'tamper:src'], { root });
    expect(rmi.code, rmi.stderr).toBe(0);
  });
  const repack = (entries: RawEntry[], edit: (files: Files) => void): Buffer => {
    const files: Files = new Map(entries.filter((e) => e.type === '0').map((e) => [e.name, e.body as Buffer]));
    edit(files);
    return makeTar([...files].map(([name, body]) => ({ name, body })));
  };
  const json = (files: Files, name: string): any => JSON.parse(files.get(name)!.toString());
  const put = (files: Files, b: Buffer): string => {
    files.set(blob(sha256(b)), b);
    return sha256(b);
  };
  /** OCI: change the last layer of the first manifest, rewriting manifest and index to match. */
  const ociEdit = (files: Files, change: (layer: { digest: string; size: number }) => void): void => {
    const index = json(files, 'index.json');
    const manifest = json(files, blob(index.manifests[0].digest));
    change(manifest.layers.at(-1));
    const mb = Buffer.from(JSON.stringify(manifest));
    index.manifests[0].digest = put(files, mb);
    index.manifests[0].size = mb.length;
    files.set('index.json', Buffer.from(JSON.stringify(index)));
  };
  const cases: Array<[string, () => Buffer, RegExp]> = [
    ['docker: a layer with one byte changed', () => repack(docker, (f) => {
      const name = json(f, 'manifest.json')[0].Layers.at(-1);
      const b = Buffer.from(f.get(name)!);
      b.writeUInt8(b.readUInt8(600) ^ 1, 600);
      f.set(name, b);
    }), /does not hash to its name/],
    ['docker: a layer replaced, renamed and listed in manifest.json (config unchanged)', () => repack(docker, (f) => {
      const m = json(f, 'manifest.json');
      f.delete(m[0].Layers.at(-1));
      m[0].Layers[m[0].Layers.length - 1] = blob(put(f, evilLayer()));
      f.set('manifest.json', Buffer.from(JSON.stringify(m)));
    }), /layer 2 of 2: .*does not match its diff ID/],
    ['oci: a layer with one byte changed', () => repack(oci, (f) => {
      const index = json(f, 'index.json');
      const name = blob(json(f, blob(index.manifests[0].digest)).layers.at(-1).digest);
      const b = Buffer.from(f.get(name)!);
      const at = Math.floor(b.length / 2);
      b.writeUInt8(b.readUInt8(at) ^ 1, at);
      f.set(name, b);
    }), /does not hash to its name/],
    ['oci: a gzip layer replaced and the manifest rewritten (config unchanged)', () => repack(oci, (f) => ociEdit(f, (l) => {
      const gz = zlib.gzipSync(evilLayer());
      l.digest = put(f, gz);
      l.size = gz.length;
    })), /layer 2 of 2: .*does not decompress to its diff ID/],
    ['oci: the manifest gives a layer another size', () => repack(oci, (f) => ociEdit(f, (l) => {
      l.size += 1000;
    })), /the manifest says layer 2 .* bytes, the archive's has/],
  ];
  for (const [name, make, message] of cases) {
    it(`${name}: refused, no image stored`, async () => {
      const file = path.join(work, 'tampered.tar');
      await fs.writeFile(file, make());
      const r = await tsbuild(['load', '-i', file], { root });
      expect(r.code, r.stdout + r.stderr).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
      const images = await tsbuild(['images'], { root });
      expect(images.stdout).not.toMatch(/^tamper\s/m);
      const f = await tsbuild(['fsck'], { root });
      expect(f.code, f.stdout).toBe(0);
    });
  }
  it('the untampered archives load (the cases above are refused for their tampering)', async () => {
    for (const entries of [docker, oci]) {
      await fs.writeFile(path.join(work, 'plain.tar'), repack(entries, () => undefined));
      const r = await tsbuild(['load', '-i', path.join(work, 'plain.tar')], { root });
      expect(r.code, r.stderr).toBe(0);
    }
  });
});
