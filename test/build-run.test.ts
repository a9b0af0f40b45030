import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { removePodmanImages, requireTool, storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';
import { CLI, MAKE_BUSYBOX, withTestUser } from './support/rootless.js';

// RUN steps in the real sandbox (bubblewrap on overlay snapshots), as root. The results are
// read back from the OCI archive with GNU tar and run with podman.
let work: string;
let root: string;

beforeAll(async () => {
  if (process.getuid?.() !== 0) throw new Error('these tests run RUN steps as root; run the suite as root (CI does)');
  for (const t of ['bwrap', 'podman', 'skopeo', 'tar', 'getfattr']) await requireTool(t);
  work = await tempDir('e2e-run');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
});
afterAll(async () => {
  await removePodmanImages('runtest:1');
  await fs.rm(work, { recursive: true, force: true });
});

async function ctxWith(files: Record<string, string>): Promise<string> {
  const ctx = await fs.mkdtemp(path.join(work, 'ctx-'));
  await writeTree(ctx, files);
  return ctx;
}

async function layerListings(archive: string): Promise<string[]> {
  const dir = `${archive}.d`;
  await fs.mkdir(dir, { recursive: true });
  await tool('tar', ['-xf', archive, '-C', dir]);
  const index = JSON.parse(await fs.readFile(path.join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const manifest = JSON.parse(await fs.readFile(path.join(dir, 'blobs/sha256', index.manifests[0]!.digest.slice(7)), 'utf8')) as { layers: Array<{ digest: string }> };
  const out: string[] = [];
  for (const l of manifest.layers) out.push((await tool('tar', ['-tzf', path.join(dir, 'blobs/sha256', l.digest.slice(7))])).stdout);
  return out;
}

describe('RUN', () => {
  it('captures what a step adds and deletes, and podman runs the result', async () => {
    const ctx = await ctxWith({
      Dockerfile: [
        'FROM busybox',
        'COPY greet.sh /usr/local/bin/greet',
        'RUN chmod 0755 /usr/local/bin/greet && echo built > /built.txt && rm /etc/group && mkdir -p /data/sub && echo app:x:1234:1234::/data:/bin/sh >> /etc/passwd && chown -R 1234:1234 /data',
        'USER app',
        'RUN id -u > /tmp/whoami && touch /data/sub/mine',
        'USER root',
        'CMD ["/usr/local/bin/greet"]',
        '',
      ].join('\n'),
      'greet.sh': '#!/bin/sh\necho "greetings, $(cat /built.txt), uid $(cat /tmp/whoami)"\nls -n /data/sub/mine | awk \'{print $3}\'\n',
    });
    const oci = path.join(work, 'run.tar');
    const docker = path.join(work, 'run-docker.tar');
    const r = await tsbuild(['build', '--progress', 'plain', '-t', 'runtest:1', '--output', `type=oci,dest=${oci}`, '--output', `type=docker,dest=${docker}`, ctx], { root });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const layers = await layerListings(oci);
    const runLayer = layers[2]!;
    expect(runLayer).toMatch(/^built\.txt$/m);
    expect(runLayer).toMatch(/^etc\/\.wh\.group$/m);
    expect(runLayer).not.toMatch(/^(dev|proc)\/?$/m); // sandbox mount points never land in a layer
    expect(runLayer).not.toMatch(/resolv\.conf/);
    await tool('podman', ['load', '-q', '-i', docker]);
    const run = await tool('podman', ['run', '--runtime', 'runc', '--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=1024:1024', '--rm', 'runtest:1']);
    expect(run.stdout).toBe('greetings, built, uid 1234\n1234\n');
  });

  it('runs independent stages in parallel and stops the others when one fails', async () => {
    const ok = await ctxWith({
      Dockerfile: 'FROM busybox AS a\nRUN echo a > /a\nFROM busybox AS b\nRUN echo b > /b\nFROM scratch\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n',
    });
    const out = path.join(work, 'par');
    const r = await tsbuild(['build', '--progress', 'json', '--output', `type=local,dest=${out}`, ok], { root });
    expect(r.code).toBe(0);
    expect(await fs.readFile(path.join(out, 'a'), 'utf8')).toBe('a\n');
    expect(await fs.readFile(path.join(out, 'b'), 'utf8')).toBe('b\n');
    // both RUN steps started before either finished: they ran side by side
    const events = r.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { type: string; name?: string; id: number });
    const runIds = events.filter((e) => e.type === 'step-start' && /RUN echo/.test(e.name ?? '')).map((e) => e.id);
    const firstDone = events.findIndex((e) => e.type === 'step-done' && runIds.includes(e.id));
    const secondStart = events.findIndex((e) => e.type === 'step-start' && e.id === runIds[1]);
    expect(runIds).toHaveLength(2);
    expect(secondStart).toBeLessThan(firstDone);

    const failing = await ctxWith({
      Dockerfile: 'FROM busybox AS slow\nRUN sleep 60\nFROM busybox AS bad\nRUN exit 4\nFROM scratch\nCOPY --from=slow /bin/busybox /x\nCOPY --from=bad /bin/busybox /y\n',
    });
    const f = await tsbuild(['build', '--progress', 'plain', failing], { root });
    expect(f.code).toBe(1);
    expect(f.stderr).toMatch(/Dockerfile:4: .*exited with code 4/);
    const sleepId = /#(\d+) \[slow 2\/2\] RUN sleep 60/.exec(f.stderr)?.[1];
    expect(sleepId).toBeDefined();
    expect(f.stderr).not.toContain(`#${sleepId} DONE`); // cancelled, not waited for
    expect(await fs.readdir(path.join(root, 'tmp'))).toEqual([]);
  });

  it('--no-cache-filter reruns only the named stage', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox AS one\nRUN date +%N > /t\nFROM one AS two\nRUN date +%N > /u\n' });
    expect((await tsbuild(['build', ctx], { root })).code).toBe(0);
    const r = await tsbuild(['build', '--progress', 'plain', '--no-cache-filter', 'two', ctx], { root });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/\[one 2\/2\] RUN date[^\n]*\n#\d+ CACHED/);
    expect(r.stderr).not.toMatch(/\[two 2\/2\] RUN date[^\n]*\n#\d+ CACHED/);
  });

  it('Ctrl-C during a RUN exits 130 and leaves no process, mount or temp dir', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN echo started && sleep 3017\n' });
    const { spawn } = await import('node:child_process');
    const { bin } = await import('./support/cli.js');
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, [bin, 'build', '--progress', 'plain', '--no-cache', ctx], { env: { ...process.env, TSBUILD_ROOT: root }, stdio: ['ignore', 'ignore', 'pipe'] });
      let sent = false;
      child.stderr.on('data', (d: Buffer) => {
        if (!sent && d.toString().includes('started')) {
          sent = true;
          child.kill('SIGINT');
        }
      });
      child.on('exit', (c) => resolve(c));
    });
    expect(code).toBe(130);
    const ps = await tool('ps', ['-eo', 'args']);
    expect(ps.stdout).not.toMatch(/sleep 3017/); // a number nothing else on the machine sleeps
    expect(await fs.readFile('/proc/mounts', 'utf8')).not.toContain(root);
    expect(await fs.readdir(path.join(root, 'tmp'))).toEqual([]);
  });

  it('runs the same steps with --runtime runc', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN echo runc > /via && rm /etc/group\n' });
    const out = path.join(work, 'runc-out');
    const r = await tsbuild(['build', '--runtime', 'runc', '--output', `type=local,dest=${out}`, ctx], { root });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(await fs.readFile(path.join(out, 'via'), 'utf8')).toBe('runc\n');
    await expect(fs.access(path.join(out, 'etc/group'))).rejects.toThrow();
  });

  it('reuses RUN results from the cache, and reruns after an input changes', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy.txt\n', 'a.txt': 'one' });
    expect((await tsbuild(['build', ctx], { root })).code).toBe(0);
    const again = await tsbuild(['build', '--progress', 'plain', ctx], { root });
    expect(again.stderr.match(/CACHED/g)?.length).toBe(2);
    await fs.writeFile(path.join(ctx, 'a.txt'), 'two');
    const out = path.join(work, 'changed');
    const changed = await tsbuild(['build', '--progress', 'plain', '--output', `type=local,dest=${out}`, ctx], { root });
    expect(changed.stderr).not.toMatch(/CACHED/);
    expect(await fs.readFile(path.join(out, 'copy.txt'), 'utf8')).toBe('two');
  });

  it('a fully cached build reads no file index of its layers; a COPY planning on them reads them', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN mkdir /made && echo one > /made/a\nRUN echo two > /made/b\nCMD ["cat", "/made/a"]\n', 'c.txt': 'c' });
    expect((await tsbuild(['build', '-t', 'indexless:1', ctx], { root })).code).toBe(0);
    const indexRecords = async () => (await fs.readdir(path.join(root, 'meta'))).filter((f) => f.startsWith('layer-index.'));
    expect((await indexRecords()).length).toBeGreaterThanOrEqual(3);
    // Asking for a layer's index without its record reads the layer and writes the record again.
    for (const f of await indexRecords()) await fs.rm(path.join(root, 'meta', f));
    const cached = await tsbuild(['build', '--progress', 'plain', '-t', 'indexless:1', ctx], { root });
    expect(cached.code).toBe(0);
    expect(cached.stderr.match(/CACHED/g)?.length).toBe(2);
    expect(await indexRecords()).toEqual([]);
    // A COPY resolves its destination through the layers below: those indexes are read.
    await fs.writeFile(path.join(ctx, 'Dockerfile'), 'FROM busybox\nRUN mkdir /made && echo one > /made/a\nRUN echo two > /made/b\nCOPY c.txt /made/\n');
    const out = path.join(work, 'indexless-out');
    const copied = await tsbuild(['build', '--progress', 'plain', '-o', `type=local,dest=${out}`, ctx], { root });
    expect(copied.code).toBe(0);
    expect(copied.stderr.match(/CACHED/g)?.length).toBe(2);
    expect((await indexRecords()).length).toBeGreaterThanOrEqual(3);
    expect(await fs.readFile(path.join(out, 'made', 'b'), 'utf8')).toBe('two\n');
    expect(await fs.readFile(path.join(out, 'made', 'c.txt'), 'utf8')).toBe('c');
  });

  it('a --build-arg that changes reruns the RUN steps after its ARG, not a COPY (as BuildKit)', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nARG VERSION\nCOPY a.txt /a.txt\nRUN echo "$VERSION" > /version\n', 'a.txt': 'a' });
    expect((await tsbuild(['build', '--build-arg', 'VERSION=1', ctx], { root })).code).toBe(0);
    const out = path.join(work, 'arg-out');
    const again = await tsbuild(['build', '--progress', 'plain', '--build-arg', 'VERSION=2', '-o', `type=local,dest=${out}`, ctx], { root });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/\] COPY a\.txt \/a\.txt\n#\d+ CACHED/);
    expect(again.stderr.match(/CACHED/g)?.length).toBe(1);
    expect(await fs.readFile(path.join(out, 'version'), 'utf8')).toBe('2\n');
  });

  it('copies files made by RUN from one stage into another', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox AS build\nRUN mkdir /out && echo artefact > /out/app\nFROM scratch\nCOPY --from=build /out/app /app\n' });
    const out = path.join(work, 'ms');
    const r = await tsbuild(['build', '--output', `type=local,dest=${out}`, ctx], { root });
    expect(r.code).toBe(0);
    expect(await fs.readFile(path.join(out, 'app'), 'utf8')).toBe('artefact\n');
  });

  it('reports a failing RUN with its line, exit code and last output, and leaves nothing behind', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN echo first line && echo the reason >&2 && exit 3\n' });
    const r = await tsbuild(['build', ctx], { root });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:2: .*exited with code 3/);
    expect(r.stderr).toContain('the reason');
    expect(r.stderr).not.toMatch(/\n\s+at .*\.js:\d+/);
    expect(await fs.readdir(path.join(root, 'tmp'))).toEqual([]);
    const mounts = await fs.readFile('/proc/mounts', 'utf8');
    expect(mounts).not.toContain(root);
  });

  it('gives a command that does not exist exit code 127 as an error', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN no-such-command\n' });
    const r = await tsbuild(['build', ctx], { root });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:2: .*code 127/);
  });

  // Two tsbuild processes on one store, the first holding a cache mount for a while.
  it('cache sharing=locked makes a second build wait; sharing=private gives it its own directory', async () => {
    const sroot = path.join(work, 'sharing-store');
    await storeWithBusybox(sroot);
    const mounts = path.join(sroot, 'cache-mounts');
    const started = async (file: string): Promise<void> => {
      for (let i = 0; i < 600; i++) {
        for (const d of await fs.readdir(mounts).catch(() => [] as string[])) if (await fs.stat(path.join(mounts, d, file)).catch(() => undefined)) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`${file} never appeared`);
    };
    const build = async (step: string, out?: string) =>
      tsbuild(['build', '--no-cache', '--progress', 'plain', ...(out ? ['-o', `type=local,dest=${out}`] : []), await ctxWith({ Dockerfile: `FROM busybox\n${step}\n` })], { root: sroot });

    const locked = 'RUN --mount=type=cache,target=/c,id=lk,sharing=locked';
    const first = build(`${locked} touch /c/a-start && sleep 2 && touch /c/a-end`);
    await started('a-start');
    // Without the lock this step would run at once and find no a-end.
    const second = await build(`${locked} test -f /c/a-end`);
    expect(second.code, second.stderr).toBe(0);
    expect((await first).code).toBe(0);

    const priv = 'RUN --mount=type=cache,target=/c,id=pv,sharing=private';
    const holder = build(`${priv} touch /c/h-start && sleep 2 && touch /c/h-end`);
    await started('h-start');
    const busyOut = path.join(work, 'private-busy');
    const busy = await build(`${priv} ls /c > /seen`, busyOut);
    expect(busy.code, busy.stderr).toBe(0);
    expect(await fs.readFile(path.join(busyOut, 'seen'), 'utf8')).toBe(''); // a fresh directory, not the one in use
    expect((await holder).code).toBe(0);
    const aloneOut = path.join(work, 'private-alone');
    const alone = await build(`${priv} ls /c > /seen`, aloneOut);
    expect(alone.code, alone.stderr).toBe(0);
    expect(await fs.readFile(path.join(aloneOut, 'seen'), 'utf8')).toBe('h-end\nh-start\n'); // the cache itself, kept
  });

  it('supports cache, bind, tmpfs and secret mounts, and no secret reaches the store or the output', async () => {
    const secretValue = `tsbuild-secret-${process.pid}-${Date.now()}`;
    const ctx = await ctxWith({
      Dockerfile: [
        'FROM busybox',
        'RUN --mount=type=cache,target=/cache echo run >> /cache/log && wc -l < /cache/log | tr -d " " > /count',
        'RUN --mount=type=secret,id=tok test -s /run/secrets/tok && cat /run/secrets/tok | wc -c > /secret-size',
        'RUN --mount=type=secret,id=tok,env=TOK test -n "$TOK" && echo env-ok',
        'RUN --mount=type=bind,source=src,target=/src cp /src/b.txt /b.txt',
        'RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch > /scratch-list',
        '',
      ].join('\n'),
      'src/b.txt': 'bound',
    });
    const secretFile = path.join(work, 'secret.txt');
    await fs.writeFile(secretFile, secretValue);
    const mroot = path.join(work, 'mount-store');
    await storeWithBusybox(mroot);
    const outs: string[] = [];
    for (const i of [1, 2]) {
      const out = path.join(work, `mounts-${i}`);
      const r = await tsbuild(['build', '--no-cache', '--progress', 'plain', '--secret', `id=tok,src=${secretFile}`, '--output', `type=local,dest=${out}`, ctx], { root: mroot });
      expect(r.stderr).not.toMatch(/error/i);
      expect(r.code).toBe(0);
      expect(r.stderr).toContain('env-ok');
      expect(r.stderr + r.stdout).not.toContain(secretValue);
      outs.push(out);
    }
    expect(await fs.readFile(path.join(outs[0]!, 'count'), 'utf8')).toBe('1\n');
    expect(await fs.readFile(path.join(outs[1]!, 'count'), 'utf8')).toBe('2\n'); // the cache mount persisted
    expect((await fs.readFile(path.join(outs[1]!, 'secret-size'), 'utf8')).trim()).toBe(String(secretValue.length));
    expect(await fs.readFile(path.join(outs[1]!, 'b.txt'), 'utf8')).toBe('bound');
    expect(await fs.readFile(path.join(outs[1]!, 'scratch-list'), 'utf8')).toBe('x\n');
    for (const gone of ['cache', 'src', 'scratch', 'run']) await expect(fs.access(path.join(outs[1]!, gone))).rejects.toThrow();
    // grep the whole store (blobs, meta, snapshots) for the secret
    const found = await tool('grep', ['-rl', '--', secretValue, path.join(mroot, 'blobs'), path.join(mroot, 'meta'), path.join(mroot, 'snapshots'), outs[1]!]).catch(() => ({ stdout: '' }));
    expect(found.stdout).toBe('');
  });

  it('refuses a missing required secret with the hint how to pass it', async () => {
    const ctx = await ctxWith({ Dockerfile: 'FROM busybox\nRUN --mount=type=secret,id=nope,required=true true\n' });
    const r = await tsbuild(['build', ctx], { root });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Dockerfile:2: .*secret "nope" is required/);
    expect(r.stderr).toMatch(/--secret id=nope/);
  });

  it('runs RUN without network with --network none', async () => {
    const ifaces = 'ls /sys/class/net > /IF || cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " " > /IF';
    // RUN --network=default is the build's default, so it is offline too.
    const ctx = await ctxWith({ Dockerfile: `FROM busybox\nRUN ${ifaces.replaceAll('IF', 'ifaces')}\nRUN --network=default ${ifaces.replaceAll('IF', 'default')}\n` });
    const out = path.join(work, 'nonet');
    const r = await tsbuild(['build', '--network', 'none', '--output', `type=local,dest=${out}`, ctx], { root });
    expect(r.code).toBe(0);
    expect((await fs.readFile(path.join(out, 'ifaces'), 'utf8')).trim()).toBe('lo');
    expect((await fs.readFile(path.join(out, 'default'), 'utf8')).trim()).toBe('lo');
  });

  it('runs RUN as an unprivileged user in a user namespace, with chown to other IDs', async () => {
    // The suite runs as root; this build runs as the tsbuild-test user scripts/setup creates.
    await withTestUser('run', async ({ dir, give, ok }) => {
      await writeTree(path.join(dir, 'ctx'), {
        Dockerfile:
          'FROM busybox AS build\nRUN mkdir /out && echo art > /out/a && chown -R 77:88 /out\n' +
          'FROM busybox\nRUN mkdir /d && echo x > /d/f && chown -R 1234:2345 /d && rm /etc/group && id -u > /uid\nRUN test "$(stat -c %u:%g /d/f)" = 1234:2345\n' +
          'COPY --from=build /out /out\nRUN test "$(stat -c %u:%g /out/a)" = 77:88\n',
      });
      await give();
      await ok(`${MAKE_BUSYBOX} >/dev/null && ${CLI} build --output type=oci,dest=${dir}/o.tar ${dir}/ctx`);
      const layers = await layerListings(path.join(dir, 'o.tar'));
      const verbose = await tool('sh', ['-c', `cd ${dir}/o.tar.d && for b in blobs/sha256/*; do tar -tvzf "$b" 2>/dev/null; done; true`]);
      expect(layers.some((l) => /^etc\/\.wh\.group$/m.test(l))).toBe(true);
      expect(verbose.stdout).toMatch(/77\/88 .* out\/a$/m); // COPY --from keeps the stage's owners
      expect(verbose.stdout).toMatch(/1234\/2345 .* d\/f$/m);
      expect(verbose.stdout).toMatch(/0\/0 .* uid$/m); // container root, not the host user
    });
  });

  it('gives a rootless cache mount the uid and gid it names, so a USER step can write it; prune removes it', async () => {
    await withTestUser('cache-ids', async ({ dir, give, ok }) => {
      await writeTree(path.join(dir, 'ctx'), {
        Dockerfile: 'FROM busybox\nRUN mkdir /d && touch /d/f && chown -R 1234:1234 /d && chmod 700 /d\nUSER 1000:1000\nRUN --mount=type=cache,target=/c,uid=1000,gid=1000 mkdir -p /c/sub && touch /c/sub/mine && stat -c %u:%g /c > /tmp/owner && cat /tmp/owner\n',
      });
      await give();
      const r = await ok(`${MAKE_BUSYBOX} >/dev/null && ${CLI} build --progress plain ${dir}/ctx`);
      expect(r.stderr).toMatch(/^#\d+ 1000:1000$/m);
      // The cache and the step's snapshot hold files of subordinate IDs the user cannot delete
      // directly: prune removes them inside the user namespace (it used to stop with EACCES).
      const p = await ok(`${CLI} prune -a --cache-mounts --filter until=0s`);
      expect(p.stdout).toMatch(/snapshots: [1-9]/);
      expect(await fs.readdir(path.join(dir, 'store', 'cache-mounts'))).toEqual([]);
      expect(await fs.readdir(path.join(dir, 'store', 'tmp'))).toEqual([]);
    });
  });
});
