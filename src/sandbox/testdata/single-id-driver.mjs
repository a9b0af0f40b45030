// Single-ID fallback on the real host, run by rootless.test.ts as a user with no /etc/subuid
// entry (`nobody`): runuser -u nobody -- node single-id-driver.mjs BASE_DIR
// Prints one JSON report: the probe, a root step, a chown to an unmapped ID, a USER 1000 step.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

const base = process.argv[2];
const dist = new URL('../../../dist/src/sandbox/', import.meta.url);
const sb = await import(new URL('index.js', dist).href);
const fx = await import(new URL('test-fixture.js', dist).href);
const caps = await sb.probeSandbox();
const lower = join(base, 'busybox');
await sb.runInUserNamespace(join(fx.repoRoot(), 'scripts', 'make-busybox-rootfs'), [lower], { capabilities: caps });
const runner = sb.createBwrapRunner({ capabilities: caps });
let n = 0;
async function step(script, user) {
  n++;
  const upper = join(base, `u${n}`);
  const work = join(base, `w${n}`);
  await mkdir(upper);
  await mkdir(work);
  const o = [];
  const e = [];
  try {
    const r = await runner.run(
      { rootfs: { lowerDirs: [lower], upperDir: upper, workDir: work }, args: ['/bin/sh', '-c', script], env: ['PATH=/bin'], cwd: '/', user, network: 'host', stdout: (c) => o.push(c), stderr: (c) => e.push(c) },
      {},
    );
    return { exitCode: r.exitCode, stdout: Buffer.concat(o).toString(), stderr: Buffer.concat(e).toString() };
  } catch (err) {
    return { error: { code: err.code, message: err.message, hint: err.hint } };
  }
}
const out = {
  subordinateIds: caps.subordinateIds,
  idMapping: caps.idMapping.kind,
  root: await step('id -u; echo x > /x', { uid: 0, gid: 0 }),
  chown: await step('echo x > /y; chown 1234 /y', { uid: 0, gid: 0 }),
  user1000: await step('id -u', { uid: 1000, gid: 1000 }),
};
process.stdout.write(JSON.stringify(out));
