import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { bin, repoRoot, requireTool, storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';
import { CLI, MAKE_BUSYBOX, withTestUser } from './support/rootless.js';
import { PassThrough, Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { openStore } from '../src/store/index.js';
import { canonicalJson, OCI_IMAGE_CONFIG, OCI_IMAGE_MANIFEST } from '../src/oci/index.js';

// The docker-like commands (images, history, inspect, rmi, prune, df, run) against a real
// store: busybox from scripts/make-busybox-image, images built with `tsbuild build`, and
// `run` in the real sandbox (bubblewrap, as root). One store is set up once; the destructive
// commands (rmi, prune) work on a copy of it.
let work: string;
let root: string;
let appId: string;
let busyboxId: string;

const DOCKERFILE = `FROM busybox
LABEL com.example.role=app
ENV GREETING=hi-from-app
COPY msg.txt /msg.txt
RUN echo built > /built.txt
CMD ["cat", "/msg.txt"]
`;

async function build(ctx: string, tag: string, r = root): Promise<string> {
  const b = await tsbuild(['build', '-q', '-t', tag, ctx], { root: r });
  expect(b.code, b.stderr).toBe(0);
  return b.stdout.trim().split('\n').at(-1) ?? '';
}

/**
 * The CLI in this process (main() with its own streams): the same code as the binary without
 * a node start per call. Builds and the exit-code checks of `run` use the real binary.
 */
async function cli(args: readonly string[], opts: { root?: string; input?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const stdout = new PassThrough().on('data', (c: Buffer) => out.push(c));
  const stderr = new PassThrough().on('data', (c: Buffer) => err.push(c));
  // The compiled CLI (main() finds package.json relative to dist/), as the binary loads it.
  const { main } = (await import(pathToFileURL(path.join(repoRoot, 'dist', 'src', 'cli', 'index.js')).href)) as typeof import('../src/cli/index.js');
  const code = await main(args, {
    stdout,
    stderr,
    stdin: Readable.from([Buffer.from(opts.input ?? '')]),
    env: { ...process.env, TSBUILD_ROOT: opts.root ?? root },
    cwd: work,
    signal: new AbortController().signal,
  });
  return { code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
}

/** Starts `tsbuild run ARGS`, sends `sig` to tsbuild once the command printed "ready", waits for the end. */
function runUntilSignal(args: readonly string[], sig: NodeJS.Signals): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, 'run', ...args], { env: { ...process.env, TSBUILD_ROOT: root }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      if (!sent && stdout.includes('ready\n')) {
        sent = true;
        child.kill(sig);
      }
    });
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** `tsbuild ARGS` on a terminal made by script(1); types `input` once the command printed "ready". */
function inTerminal(args: string, input: string): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['--quiet', '--return', '--command', `${process.execPath} ${bin} ${args}`, '/dev/null'], {
      env: { ...process.env, TSBUILD_ROOT: root },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let stdout = '';
    let sent = false;
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      if (!sent && stdout.includes('ready')) {
        sent = true;
        child.stdin.write(input);
      }
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout }));
  });
}

/** Column start offsets of a docker-style table line (cells separated by 3+ spaces). */
function columnStarts(line: string): number[] {
  const starts = [0];
  for (const m of line.matchAll(/ {2,}(?=\S)/g)) starts.push((m.index ?? 0) + m[0].length);
  return starts;
}

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('tsbuild run needs root; run the suite as root (CI does)');
  for (const t of ['bwrap', 'getfattr']) await requireTool(t);
  work = await tempDir('e2e-commands');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
  await writeTree(path.join(work, 'app'), { Dockerfile: DOCKERFILE, 'msg.txt': 'hello from app\n' });
  // Two builds at once on one store (the store is made for that); hello is the README's example.
  await Promise.all([build(path.join(work, 'app'), 'app:latest'), build(path.join(repoRoot, 'examples', 'hello'), 'hello:latest')]);
  appId = (await cli(['images', '-q', '--no-trunc', '--filter', 'reference=app'], { root })).stdout.trim();
  busyboxId = (await cli(['images', '-q', '--no-trunc', '--filter', 'reference=busybox'], { root })).stdout.trim();
  expect(appId).toMatch(/^sha256:[a-f0-9]{64}$/);
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

describe('images', () => {
  it('lists REPOSITORY TAG IMAGE ID CREATED SIZE in aligned columns like docker', async () => {
    const r = await cli(['images'], { root });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^REPOSITORY {3,}TAG {3,}IMAGE ID {3,}CREATED {3,}SIZE$/);
    const app = lines.find((l) => l.startsWith('app '));
    expect(app).toMatch(/^app +latest +[a-f0-9]{12} +(\d+ seconds?|Less than a second|About a minute) ago +\d[\d.]*[kM]?B$/);
    // Cells start where their headers start (tabwriter alignment).
    const hdr = columnStarts(lines[0]!);
    for (const l of lines.slice(1)) expect(columnStarts(l)).toEqual(hdr);
    expect(lines.some((l) => /^busybox +latest /.test(l))).toBe(true);
  });

  it('-q, --no-trunc, --digests', async () => {
    const q = await cli(['images', '-q'], { root });
    const short = q.stdout.trim().split('\n');
    expect(short).toHaveLength(3); // app, busybox, hello
    expect(short).toEqual(expect.arrayContaining([appId.slice(7, 19), busyboxId.slice(7, 19)]));
    const d = await cli(['images', '--digests', '--no-trunc'], { root });
    expect(d.stdout.split('\n')[0]).toMatch(/^REPOSITORY +TAG +DIGEST +IMAGE ID +CREATED +SIZE$/);
    expect(d.stdout).toContain(appId);
  });

  it('--filter reference, label, dangling, before, since', async () => {
    const ids = async (...f: string[]): Promise<string[]> => {
      const r = await cli(['images', '-q', '--no-trunc', ...f.flatMap((x) => ['--filter', x])], { root });
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.trim().split('\n').filter(Boolean);
    };
    expect(await ids('reference=ap*')).toEqual([appId]);
    expect(await ids('reference=busybox:latest')).toEqual([busyboxId]);
    expect(await ids('label=com.example.role=app')).toEqual([appId]);
    expect(await ids('label=com.example.role=other')).toEqual([]);
    expect(await ids('dangling=true')).toEqual([]);
    const since = await ids('since=busybox');
    expect(since).toContain(appId);
    expect(since).not.toContain(busyboxId);
    const before = await ids('before=app');
    expect(before).toContain(busyboxId);
    expect(before).not.toContain(appId);
    const bad = await cli(['images', '--filter', 'color=red'], { root });
    expect(bad.code).toBe(2);
  });

  it('--format with Go template fields, table and json', async () => {
    const t = await cli(['images', '--format', '{{.Repository}}:{{.Tag}}'], { root });
    expect(t.stdout.trim().split('\n').sort()).toEqual(['app:latest', 'busybox:latest', 'hello:latest']);
    const tbl = await cli(['images', '--format', 'table {{.ID}}\\t{{.Repository}}', '--filter', 'reference=app'], { root });
    expect(tbl.stdout).toMatch(new RegExp(`^IMAGE ID {7}REPOSITORY\\n${appId.slice(7, 19)}   app\\n$`));
    const j = await cli(['images', '--format', 'json', '--filter', 'reference=app'], { root });
    expect(JSON.parse(j.stdout)).toMatchObject({ Repository: 'app', Tag: 'latest', ID: appId.slice(7, 19) });
  });
});

describe('history', () => {
  it('shows one row per step, newest first, image ID on top and <missing> below', async () => {
    const r = await cli(['history', 'app'], { root });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^IMAGE {3,}CREATED {3,}CREATED BY {3,}SIZE {3,}COMMENT$/);
    expect(lines[1]).toMatch(new RegExp(`^${appId.slice(7, 19)} +.* ago +CMD \\["cat" "/msg.txt"\\] +0B +buildkit.dockerfile.v0$`));
    expect(lines.slice(2).every((l) => l.startsWith('<missing>'))).toBe(true);
    expect(lines.some((l) => /RUN \/bin\/sh -c echo built > \/built.txt.* \d[\d.]*kB /.test(l))).toBe(true);
    expect(lines.at(-1)).toMatch(/tsbuild import/);
    expect(lines).toHaveLength(1 + 6);
  });

  it('-q, --no-trunc, -H=false, --format', async () => {
    const q = await cli(['history', '-q', 'app'], { root });
    expect(q.stdout.split('\n')[0]).toBe(appId.slice(7, 19));
    const full = await cli(['history', '--no-trunc', '--human=false', 'app'], { root });
    expect(full.stdout.split('\n')[1]).toMatch(new RegExp(`^${appId} +\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ +CMD`));
    expect(full.stdout).toMatch(/ \d{4,} +buildkit/); // raw byte sizes
    const f = await cli(['history', '--format', '{{.CreatedBy}}|{{.Size}}', 'busybox'], { root });
    expect(f.stdout).toMatch(/^tsbuild import\|\d[\d.]*MB\n$/);
  });

  it('unknown image and malformed reference: exit 1 with a clear message', async () => {
    const u = await cli(['history', 'nosuchimage'], { root });
    expect(u.code).toBe(1);
    expect(u.stderr).toMatch(/No such image: nosuchimage/);
    const m = await cli(['history', 'UPPER:case'], { root });
    expect(m.code).toBe(1);
    expect(m.stderr).toMatch(/invalid reference format/);
  });
});

describe('inspect', () => {
  it('prints a docker-style JSON array', async () => {
    const r = await cli(['inspect', 'app', busyboxId.slice(7, 15)], { root });
    expect(r.code, r.stderr).toBe(0);
    const docs = JSON.parse(r.stdout) as Array<Record<string, unknown>>;
    expect(docs).toHaveLength(2);
    const [app, bb] = docs;
    expect(app).toMatchObject({ Id: appId, RepoTags: ['app:latest'], RepoDigests: [], Architecture: expect.any(String), Os: 'linux' });
    expect(app!.Config).toMatchObject({ Cmd: ['cat', '/msg.txt'], Labels: { 'com.example.role': 'app' } });
    const rootfs = app!.RootFS as { Type: string; Layers: string[] };
    expect(rootfs.Type).toBe('layers');
    expect(rootfs.Layers).toHaveLength(3); // busybox, COPY, RUN
    expect(typeof app!.Size).toBe('number');
    expect(app!.Metadata).toHaveProperty('LastTagTime');
    expect(bb).toMatchObject({ Id: busyboxId, RepoTags: ['busybox:latest'] });
  });

  it('--format selects with a Go template', async () => {
    const r = await cli(['inspect', '--format', '{{.Config.Cmd}} {{json .Config.Env}} {{len .RootFS.Layers}}', 'app'], { root });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\[cat \/msg.txt\] \[.*"GREETING=hi-from-app"\] 3\n$/);
    const bad = await cli(['inspect', '--format', '{{.Config', 'app'], { root });
    expect(bad.code).toBe(2);
  });

  it('unknown image: exit 1, the others still printed', async () => {
    const r = await cli(['inspect', 'app', 'nosuch'], { root });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/No such image: nosuch/);
    expect(JSON.parse(r.stdout)).toHaveLength(1);
  });
});

describe('df', () => {
  it('TYPE TOTAL ACTIVE SIZE RECLAIMABLE; -v per image', async () => {
    const r = await cli(['df'], { root });
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^TYPE {3,}TOTAL {3,}ACTIVE {3,}SIZE {3,}RECLAIMABLE$/);
    expect(lines[1]).toMatch(/^Images +3 +3 +\d[\d.]*MB +0B \(0%\)$/);
    expect(lines[2]).toMatch(/^Build Cache +5 +5 +/); // COPY and RUN of app and hello, and hello's WORKDIR layer
    expect(lines[3]).toMatch(/^Snapshots +\d+ +\d+ +/);
    const v = await cli(['df', '-v'], { root });
    expect(v.stdout).toMatch(/^Images space usage:\n\nREPOSITORY +TAG +IMAGE ID +CREATED +SIZE +SHARED SIZE +UNIQUE SIZE +CONTAINERS\n/);
    expect(v.stdout).toMatch(/\napp +latest +[a-f0-9]{12} .* \d[\d.]*MB +\d[\d.]*MB +\d[\d.]*kB +0\n/);
    expect(v.stdout).toMatch(/Build cache usage: /);
  });
});

describe('run', () => {
  it('runs a command in the sandbox and passes its output and exit code through', async () => {
    const hi = await tsbuild(['run', '--rm', 'busybox', 'echo', 'hi'], { root });
    expect(hi).toMatchObject({ code: 0, stdout: 'hi\n' });
    const seven = await tsbuild(['run', '--rm', 'busybox', 'sh', '-c', 'exit 7'], { root });
    expect(seven.code).toBe(7);
  });

  it('gives every word after IMAGE to the command, as docker does', async () => {
    const ls = await cli(['run', '--rm', 'busybox', 'ls', '-l', '/etc/passwd'], { root });
    expect(ls.stdout).toMatch(/^-rw-r--r-- .* \/etc\/passwd\n$/);
    // run's own flags after IMAGE are the command's: --rm is $0 here, -e an argument of echo.
    const dollar0 = await cli(['run', 'busybox', 'sh', '-c', 'echo $0', '--rm'], { root });
    expect(dollar0.stdout).toBe('--rm\n');
    const e = await cli(['run', '-e', 'A=1', 'busybox', 'echo', '-e', '007', '--', 'x'], { root });
    expect(e.stdout).toBe('007 -- x\n');
    // A `--` right after IMAGE (older tsbuild needed it) is dropped; one before IMAGE ends run's flags.
    const dd = await cli(['run', '--rm', '--', 'busybox', '--', 'sh', '-c', 'echo $0 $1', 'a', 'b'], { root });
    expect(dd.stdout).toBe('a b\n');
    // An unknown flag before IMAGE is reported as such; it does not eat IMAGE as its value.
    const bogus = await cli(['run', '--bogus', 'busybox', 'true'], { root });
    expect(bogus.code).toBe(2);
    expect(bogus.stderr).toMatch(/Unknown argument: bogus/);
    const help = await cli(['run', '--help'], { root });
    expect(help.stdout).toMatch(/tsbuild run <image> \[command\.\.\]/);
  });

  it('forwards signals to the command and passes its exit code through (128+N when killed)', async () => {
    // The marker names the processes of this test, so the check below sees only them.
    const marker = 4242 + Math.floor(Math.random() * 1000);
    const trap = await runUntilSignal(['busybox', 'sh', '-c', `trap 'echo got TERM; exit 3' TERM; echo ready; sleep ${marker} & wait`], 'SIGTERM');
    expect(trap).toMatchObject({ code: 3, stdout: 'ready\ngot TERM\n' });
    // sleep has no handler: it dies of SIGINT (it is not PID 1, which would ignore it).
    const sleep = await runUntilSignal(['busybox', 'sh', '-c', `echo ready; exec sleep ${marker}`], 'SIGINT');
    expect(sleep.code).toBe(130);
    const usr = await runUntilSignal(['-u', 'nobody', 'busybox', 'sh', '-c', `trap 'echo usr1; exit 0' USR1; echo ready; sleep ${marker} & wait`], 'SIGUSR1');
    expect(usr).toMatchObject({ code: 0, stdout: 'ready\nusr1\n' });
    // Nothing left behind: no process, no mount, no temp dir.
    const ps = await tool('ps', ['-eo', 'args']);
    expect(ps.stdout).not.toContain(`sleep ${marker}`);
    expect(await fs.readFile('/proc/mounts', 'utf8')).not.toContain(root);
    expect(await fs.readdir(path.join(root, 'tmp'))).toEqual([]);
  });

  it('-t gives the command a terminal; -it needs one', async () => {
    const noTty = await tsbuild(['run', '-it', 'busybox', 'true'], { root });
    expect(noTty.code).toBe(1);
    expect(noTty.stderr).toMatch(/the input device is not a TTY/);
    // -t alone: a pseudo-terminal even when tsbuild has none (as docker); its output is ours.
    const t = await tsbuild(['run', '-t', 'busybox', 'sh', '-c', '[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo tty; exit 4'], { root });
    expect(t).toMatchObject({ code: 4, stdout: 'tty\r\n' });
    const plain = await tsbuild(['run', 'busybox', 'sh', '-c', '[ -t 0 ] || [ -t 1 ] || echo none'], { root });
    expect(plain.stdout).toBe('none\n');
  });

  it('-it shares a real terminal: input reaches the command, Ctrl-C interrupts it', async () => {
    await requireTool('script');
    const read = await inTerminal(`run -it busybox sh -c '[ -t 0 ] && echo ready; read x; echo got:$x; exit 6'`, 'hello\n');
    expect(read.code).toBe(6);
    expect(read.stdout).toContain('got:hello\r\n');
    const ctrlC = await inTerminal(`run -it busybox sh -c 'echo ready; exec sleep 4545'`, '\x03');
    expect(ctrlC.code).toBe(130);
    expect((await tool('ps', ['-eo', 'args'])).stdout).not.toContain('sleep 4545');
  });

  it("runs the image's CMD with its ENV; -e, -w, -u, -i, --entrypoint, -v, --read-only", async () => {
    const app = await cli(['run', 'app'], { root });
    expect(app).toMatchObject({ code: 0, stdout: 'hello from app\n' });
    const env = await cli(['run', '-e', 'X=1', '-w', '/made', '-u', 'nobody', 'app', 'sh', '-c', 'echo $GREETING $X $(pwd) $(id -u); touch /tmp/kept'], { root });
    expect(env.stdout).toBe('hi-from-app 1 /made 65534\n');
    const stdin = await cli(['run', '-i', 'busybox', 'tr', 'a-z', 'A-Z'], { root, input: 'piped\n' });
    expect(stdin.stdout).toBe('PIPED\n');
    const ep = await cli(['run', '--entrypoint', 'echo', 'app', 'from', 'entrypoint'], { root });
    expect(ep.stdout).toBe('from entrypoint\n');
    await writeTree(path.join(work, 'vol'), { 'f.txt': 'from host\n' });
    const vol = await cli(['run', '-v', `${path.join(work, 'vol')}:/data:ro`, '--read-only', 'busybox', 'sh', '-c', 'cat /data/f.txt; touch /data/x 2>/dev/null || echo ro; touch /y 2>/dev/null || echo rootro'], { root });
    expect(vol.stdout).toBe('from host\nro\nrootro\n');
    // Nothing the command wrote is kept: the overlay is thrown away.
    const gone = await cli(['run', 'app', 'ls', '/tmp/kept'], { root });
    expect(gone.code).not.toBe(0);
    expect(await fs.readdir(path.join(root, 'tmp'))).toEqual([]);
  });

  it('runs as an ordinary user (rootless, in the user namespace of its subordinate IDs)', async () => {
    await withTestUser('run', async ({ store, give, ok, run: as }) => {
      await give();
      await ok(`${MAKE_BUSYBOX} >/dev/null`);
      const r = await as(`${CLI} run --rm busybox sh -c 'echo hi from $(id -u); stat -c %u /etc/passwd; exit 9'`);
      expect(r).toMatchObject({ code: 9, stdout: 'hi from 0\n0\n' });
      const nobody = await as(`${CLI} run -u nobody busybox id -u`);
      expect(nobody).toMatchObject({ code: 0, stdout: '65534\n' });
      expect(await fs.readdir(path.join(store, 'tmp'))).toEqual([]);
    });
  });

  it('runs the README hello example', async () => {
    const r = await cli(['run', '--rm', 'hello'], { root });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Hello from tsbuild!/);
  });

  it('unknown image: exit 1', async () => {
    const r = await cli(['run', 'nosuch'], { root });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/No such image/);
  });
});

describe('rmi and prune', () => {
  let r2: string;
  beforeAll(async () => {
    r2 = path.join(work, 'store2');
    await tool('cp', ['-a', root, r2]);
  });

  it('removing one of several names only untags', async () => {
    expect((await cli(['tag', 'app', 'app:v2'], { root: r2 })).code).toBe(0);
    const r = await cli(['rmi', 'app:v2'], { root: r2 });
    expect(r).toMatchObject({ code: 0, stdout: 'Untagged: app:v2\n' });
    const still = await cli(['inspect', 'app'], { root: r2 });
    expect(still.code, still.stderr).toBe(0);
  });

  it('refuses an image another tag or a child needs unless -f; never deletes what others need', async () => {
    await cli(['tag', 'app', 'app:v3'], { root: r2 });
    const byId = await cli(['rmi', appId.slice(7, 19)], { root: r2 });
    expect(byId.code).toBe(1);
    expect(byId.stderr).toMatch(/must be forced.*referenced in multiple repositories/);
    const parent = await cli(['rmi', 'busybox'], { root: r2 });
    expect(parent.code).toBe(1);
    expect(parent.stderr).toMatch(/dependent child images: (app|hello)/);
    expect(new Set((await cli(['images', '-q'], { root: r2 })).stdout.split('\n').filter(Boolean)).size).toBe(3);

    const forced = await cli(['rmi', '-f', appId.slice(7, 19)], { root: r2 });
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toMatch(/^Untagged: app:latest\nUntagged: app:v3\nDeleted: /);
    expect(forced.stdout).toContain(`Deleted: ${appId}\n`);
    // busybox's layer is still there and runs; the build cache kept the RUN layer.
    expect(forced.stdout).not.toContain(busyboxId);
    expect((await cli(['run', 'busybox', 'true'], { root: r2 })).code).toBe(0);
    for (const f of (await fs.readdir(path.join(r2, 'meta'))).filter((n) => n.startsWith('step.'))) {
      const entry = JSON.parse(await fs.readFile(path.join(r2, 'meta', f), 'utf8')) as { diffId?: string };
      if (entry.diffId) await fs.access(path.join(r2, 'blobs', 'sha256', entry.diffId.slice(7)));
    }
  });

  it('malformed reference and ambiguous short ID: exit 1, nothing removed', async () => {
    const bad = await cli(['rmi', 'Bad:Name'], { root: r2 });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/invalid reference format/);
    // Two images whose IDs share a 4-digit prefix, made directly in the store.
    const store = await openStore(r2);
    const byPrefix = new Map<string, number>();
    let pair: [number, number] | undefined;
    const configOf = (n: number): string => canonicalJson({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: { Labels: { n: String(n) } } }).toString();
    for (let n = 0; !pair; n++) {
      const p = createHash('sha256').update(configOf(n)).digest('hex').slice(0, 4);
      const seen = byPrefix.get(p);
      if (seen !== undefined) pair = [seen, n];
      else byPrefix.set(p, n);
    }
    let prefix = '';
    for (const n of pair) {
      const c = await store.blobs.putBytes(configOf(n));
      prefix = c.digest.slice(7, 11);
      const m = await store.blobs.putBytes(canonicalJson({ schemaVersion: 2, mediaType: OCI_IMAGE_MANIFEST, config: { mediaType: OCI_IMAGE_CONFIG, digest: c.digest, size: c.size }, layers: [] }));
      await store.setTag(`docker.io/library/twin${n}:latest`, { mediaType: OCI_IMAGE_MANIFEST, digest: m.digest, size: m.size });
    }
    const amb = await cli(['rmi', prefix], { root: r2 });
    expect(amb.code).toBe(1);
    expect(amb.stderr).toMatch(/ambiguous/);
    expect((await cli(['images', '-q', '--filter', 'reference=twin*'], { root: r2 })).stdout.trim().split('\n')).toHaveLength(2);
  });

  it('prune removes the step and agent dirs SIGKILLed tsbuilds left in the temp dir', async () => {
    const { spawnSync } = await import('node:child_process');
    const dead = Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
    const os = await import('node:os');
    const left = ['run', 'agent'].map((k) => path.join(os.tmpdir(), `tsbuild-${k}-${dead}-x-Dead01`));
    const live = path.join(os.tmpdir(), `tsbuild-run-${process.pid}-x-Keep01`);
    for (const d of [...left, live]) await fs.mkdir(d, { recursive: true });
    try {
      const r = await cli(['prune', '-f'], { root: path.join(work, 'prune-sweep') });
      expect(r.code, r.stderr).toBe(0);
      for (const d of left) expect(await fs.stat(d).catch(() => undefined), d).toBeUndefined();
      expect(await fs.stat(live).catch(() => undefined)).toBeDefined(); // its owner (this process) lives
    } finally {
      for (const d of [...left, live]) await fs.rm(d, { recursive: true, force: true });
    }
  });

  it('prune removes dangling images; --all the build cache too', async () => {
    const oldId = await build(path.join(work, 'app'), 'app:latest', r2);
    await fs.writeFile(path.join(work, 'app', 'msg.txt'), 'changed\n');
    await build(path.join(work, 'app'), 'app:latest', r2);
    const dangling = await cli(['images', '--filter', 'dangling=true'], { root: r2 });
    expect(dangling.stdout).toMatch(new RegExp(`\\n<none> +<none> +${oldId.slice(7, 19)} `));
    // The default grace period (1 h) protects what a running build just wrote.
    const young = await cli(['prune'], { root: r2 });
    expect(young.stdout).toMatch(/^Total reclaimed space: 0B\n$/);
    const p = await cli(['prune', '--filter', 'until=0s'], { root: r2 });
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toContain(`Deleted Images:\ndeleted: ${oldId}\n`);
    expect(p.stdout).toMatch(/Total reclaimed space: \d[\d.]*k?B\n$/);
    expect((await cli(['images', '-q', '--filter', 'dangling=true'], { root: r2 })).stdout).toBe('');

    // Recorded views (image/view-record.ts) of stacks with a layer that is gone go too (the old
    // image's, and one naming a layer never stored); busybox's (the COPY's) stays.
    const views = async () => (await fs.readdir(path.join(r2, 'meta'))).filter((f) => f.startsWith('view.')).sort();
    const orphan = `view.${'0'.repeat(64)}.json`;
    await fs.writeFile(path.join(r2, 'meta', orphan), JSON.stringify({ layers: [`sha256:${'d'.repeat(64)}`], lookups: [] }));
    // So does a COPY --from's key (engine/copy-step.ts) whose step entry is gone.
    const alias = `copy-alias.${'0'.repeat(64)}.json`;
    await fs.writeFile(path.join(r2, 'meta', alias), JSON.stringify({ key: `sha256:${'e'.repeat(64)}` }));
    const all = await cli(['prune', '--all', '--filter', 'until=0s'], { root: r2 });
    expect(all.code, all.stderr).toBe(0);
    expect(all.stdout).toMatch(/Deleted build cache entries: [1-9]/);
    const left = await views();
    expect(left).not.toContain(orphan);
    await expect(fs.access(path.join(r2, 'meta', alias))).rejects.toThrow();
    expect(left).not.toEqual([]);
    for (const f of left) {
      const { layers } = JSON.parse(await fs.readFile(path.join(r2, 'meta', f), 'utf8')) as { layers: string[] };
      for (const d of layers) await fs.access(path.join(r2, 'blobs', 'sha256', d.slice(7)));
    }
    // A RUN --mount=type=cache directory (engine/run-mounts.ts keeps them in ROOT/cache-mounts).
    await writeTree(path.join(r2, 'cache-mounts', 'c0ffee'), { 'pkg.bin': 'x'.repeat(5000) });
    expect((await cli(['df'], { root: r2 })).stdout).toMatch(/\nCache Mounts +1 +0 +5kB +5kB \(100%\)/);
    const mounts = await cli(['prune', '--cache-mounts', '--filter', 'until=0s'], { root: r2 });
    expect(mounts.stdout).toMatch(/Total reclaimed space: 5kB\n$/);
    const df = await cli(['df'], { root: r2 });
    expect(df.stdout).toMatch(/\nBuild Cache +0 +0 +0B +0B\n/);
    expect(df.stdout).toMatch(/\nCache Mounts +0 +0 +0B /);
    // Tagged images are intact.
    expect((await cli(['run', 'app'], { root: r2 })).stdout).toBe('changed\n');
    expect((await cli(['run', 'hello'], { root: r2 })).code).toBe(0);
  });
});

// A build or run in progress holds what it uses in a lease (store/lease.ts): rmi and prune in
// another process meanwhile must not take it. Each test pauses the build or run at a point
// where it has resolved busybox, removes busybox with rmi, prunes everything, then lets it go on.
describe('leases: rmi and prune during a build or run', () => {
  let fresh: string;
  beforeAll(async () => {
    fresh = path.join(work, 'lease-base');
    await storeWithBusybox(fresh);
  }, 120_000);

  async function removeBusybox(r: string, force = false): Promise<void> {
    const rmi = await cli(['rmi', ...(force ? ['-f'] : []), 'busybox'], { root: r });
    expect(rmi.code, rmi.stderr).toBe(0);
    const prune = await cli(['prune', '--all', '--filter', 'until=0s'], { root: r });
    expect(prune.code, prune.stderr).toBe(0);
  }

  it('a running image keeps its layers and mounted snapshots', async () => {
    const r = path.join(work, 'lease-run');
    await tool('cp', ['-a', fresh, r]);
    const child = spawn(process.execPath, [bin, 'run', '-i', 'busybox', 'sh', '-c', 'echo ready; read x; head -n1 /etc/passwd; ls /bin/busybox'], {
      env: { ...process.env, TSBUILD_ROOT: r },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    await new Promise<void>((resolve) => child.stdout.on('data', (c: Buffer) => ((stdout += c.toString()), stdout.includes('ready') && resolve())));
    // As docker for a container's image: refused while the run uses it, unless forced.
    const refused = await cli(['rmi', 'busybox'], { root: r });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('image is being used by a running tsbuild run');
    expect((await cli(['images', '-q'], { root: r })).stdout).not.toBe('');
    await removeBusybox(r, true);
    child.stdin.end('go\n');
    expect(await closed, stderr).toBe(0);
    expect(stdout).toBe('ready\nroot:x:0:0:root:/root:/bin/sh\n/bin/busybox\n');
    // Released with the run: now prune takes what nothing else needs.
    expect(await fs.readdir(path.join(r, 'leases'))).toEqual([]);
    await cli(['prune', '--all', '--filter', 'until=0s'], { root: r });
    expect(await fs.readdir(path.join(r, 'snapshots'))).toEqual([]);
    expect(await fs.readdir(path.join(r, 'blobs', 'sha256'))).toEqual([]);
  });

  it('a build keeps its base layers until its image is tagged', async () => {
    const r = path.join(work, 'lease-build');
    await tool('cp', ['-a', fresh, r]);
    const ctx = path.join(work, 'lease-ctx');
    // The RUN step waits (in a cache mount, a host directory) until the test says go.
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nRUN --mount=type=cache,target=/c touch /c/waiting; while [ ! -f /c/go ]; do sleep 0.1; done; echo built > /built\n' });
    const built = tsbuild(['build', '-q', '-t', 'leased:1', ctx], { root: r });
    const mounts = path.join(r, 'cache-mounts');
    let dir: string | undefined;
    while (!dir) {
      for (const d of await fs.readdir(mounts).catch(() => [] as string[])) if (await fs.stat(path.join(mounts, d, 'waiting')).catch(() => undefined)) dir = d;
      await new Promise((res) => setTimeout(res, 100));
    }
    await removeBusybox(r);
    await fs.writeFile(path.join(mounts, dir, 'go'), '');
    const b = await built;
    expect(b.code, b.stderr).toBe(0);
    // Every blob the new image names is there, and it runs.
    const fsck = await cli(['fsck'], { root: r });
    expect(fsck.code, fsck.stdout + fsck.stderr).toBe(0);
    expect((await cli(['run', 'leased:1', 'cat', '/built'], { root: r })).stdout).toBe('built\n');
  });
});
