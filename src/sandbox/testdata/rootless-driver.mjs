// Rootless sandbox scenario, run by rootless.test.ts as the unprivileged test user:
//   runuser -u tsbuild-test -- node src/sandbox/testdata/rootless-driver.mjs BASE_DIR
// It imports the compiled front door (dist/src/sandbox/index.js, built by `npx tsc -p .`)
// and prints one JSON document with what it saw; the test (as root) asserts on it and on the
// host-side ownership of the upper dirs it leaves in BASE_DIR.
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';

const base = process.argv[2];
if (!base) throw new Error('usage: rootless-driver.mjs BASE_DIR');
const dist = new URL('../../../dist/src/sandbox/', import.meta.url);
const sb = await import(new URL('index.js', dist).href);
const fx = await import(new URL('test-fixture.js', dist).href);

const caps = await sb.probeSandbox();
const out = { uid: process.getuid(), describe: sb.describeCapabilities(caps), idMapping: caps.idMapping, steps: {} };

async function inNs(args) {
  const err = [];
  const r = await sb.runInUserNamespace(args[0], args.slice(1), { capabilities: caps, stderr: (c) => err.push(c) });
  if (r.exitCode !== 0) throw new Error(`${args.join(' ')}: ${Buffer.concat(err)}`);
}

// Layers are made inside the user namespace (DESIGN.md: extraction happens there).
const lower = join(base, 'busybox');
await inNs([join(fx.repoRoot(), 'scripts', 'make-busybox-rootfs'), lower]);
const apt = join(base, 'apt-layer');
await inNs(['sh', '-c', 'mkdir -p "$1/var/cache/apt/archives/partial" "$1/data/old" && echo a > "$1/data/old/a" && echo s > "$1/var/cache/apt/archives/partial/pkg.deb" && chown -R 100:65534 "$1/var/cache/apt/archives/partial" && chmod 0700 "$1/var/cache/apt/archives/partial" && chmod 0600 "$1/var/cache/apt/archives/partial/pkg.deb"', 'sh', apt]);
const lowerDirs = [lower, apt];

let n = 0;
async function step(runner, script, over = {}, signal) {
  n++;
  const upper = join(base, `upper${n}`);
  const work = join(base, `work${n}`);
  await mkdir(upper);
  await mkdir(work);
  const o = [];
  const e = [];
  const t0 = Date.now();
  let result;
  try {
    result = await runner.run(
      {
        rootfs: { lowerDirs, upperDir: upper, workDir: work },
        args: ['/bin/sh', '-c', script],
        env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'],
        cwd: '/',
        user: { uid: 0, gid: 0 },
        network: 'host',
        stdout: (c) => o.push(c),
        stderr: (c) => e.push(c),
        ...over,
      },
      { signal },
    );
  } catch (err) {
    return { error: { name: err.name, code: err.code, message: String(err.message) }, ms: Date.now() - t0, upper, work };
  }
  const capture = await import(new URL('../snapshot/capture.js', dist).href);
  const changes = await capture.collectChanges(capture.captureUpperDir(upper, { capabilities: caps, lowerDirs }));
  return {
    exitCode: result.exitCode,
    stdout: Buffer.concat(o).toString(),
    stderr: Buffer.concat(e).toString(),
    changes: changes.map((c) => ({ kind: c.kind, path: c.path, uid: c.uid, gid: c.gid, mode: c.mode })),
    ms: Date.now() - t0,
    upper,
    work,
  };
}

for (const [name, make] of [
  ['bwrap', () => sb.createBwrapRunner({ capabilities: caps })],
  ['runc', () => sb.createRuncRunner({ capabilities: caps })],
]) {
  const s = {};
  s.chown = await step(
    make(),
    'id -u; echo f > /f && chown 1234:1234 /f && stat -c %u:%g /f; rm /etc/group; rm -rf /data/old && mkdir /data/old; ' +
      // apt-style: a root step writes into a 0700 dir owned by _apt (100) and hands files to it.
      'echo n > /var/cache/apt/archives/partial/new.deb && chown 100:65534 /var/cache/apt/archives/partial/new.deb && ls -ln /var/cache/apt/archives/partial',
  );
  s.user1000 = await step(make(), 'id -u; id -g; echo x > /tmp/u1000', { user: { uid: 1000, gid: 1000 } });
  s.bigId = await step(make(), 'touch /big && chown 70000 /big');
  const marker = `${3000 + n}.5`;
  s.background = await step(make(), `sleep ${marker} & echo started`);
  s.backgroundLeft = await fx.processesMatching(`sleep ${marker}`);
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 400);
  const marker2 = `${4000 + n}.5`;
  s.abort = await step(make(), `sleep ${marker2}`, {}, ac.signal);
  s.abortLeft = await fx.processesMatching(`sleep ${marker2}`);
  s.mountsLeft = await fx.mountsUnder(base);
  out.steps[name] = s;
}

// Single-ID fallback (a user without /etc/subuid entry), forced on the real host: container
// root works, other IDs are refused up front or fail inside, with the missing entry named.
{
  const single = {
    ...caps,
    subordinateIds: { ok: false, reason: 'no subordinate ID range for user tsbuild-test in /etc/subuid', hint: 'usermod --add-subuids 200000-265535 --add-subgids 200000-265535 tsbuild-test' },
    idMapping: { kind: 'single', uids: [{ containerId: 0, hostId: process.getuid(), size: 1 }], gids: [{ containerId: 0, hostId: process.getgid(), size: 1 }] },
  };
  const runner = sb.createBwrapRunner({ capabilities: single });
  out.single = {
    root: await step(runner, 'id -u; echo x > /x; chown 1234 /x'),
    user1000: await step(runner, 'id -u', { user: { uid: 1000, gid: 1000 } }),
  };
}

const idOut = [];
await sb.runInUserNamespace('id', ['-u'], { capabilities: caps, stdout: (c) => idOut.push(c) });
out.idInNamespace = Buffer.concat(idOut).toString().trim();

// removeTree inside the namespace removes what the host user could not (0700 dirs of other IDs, work/work).
// (snapshot/'s host filesystem capability, which runs rm -rf inside the namespace).
const snapshot = await import(new URL('../snapshot/index.js', dist).href);
const remove = (await snapshot.hostFilesystem()).removeTree;
const victim = out.steps.bwrap.chown.work;
await remove(victim);
out.removedWork = await stat(victim).then(() => false, () => true);
out.leftInBase = (await readdir(base)).sort();
process.stdout.write(JSON.stringify(out));
