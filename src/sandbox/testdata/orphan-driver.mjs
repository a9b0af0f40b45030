// Run by runner.test.ts ("a bwrap/runc runner SIGKILLed before the sandbox starts"): runs one
// step whose mount wrapper's shell is a slow stand-in (it creates READY, waits a second, creates
// READY.passed and execs the real sh), so the test can SIGKILL this process while the chain has
// not reached bwrap or runc yet.
//   node src/sandbox/testdata/orphan-driver.mjs BASE_DIR LOWER_DIR READY_FILE MARKER [bwrap|runc]
// Imports the compiled front door (dist/, `npx tsc -p .`).
import { mkdir, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';

const [base, lower, ready, marker, runtime = 'bwrap'] = process.argv.slice(2);
if (!marker) throw new Error('usage: orphan-driver.mjs BASE_DIR LOWER_DIR READY_FILE MARKER');
const sb = await import(new URL('../../../dist/src/sandbox/index.js', import.meta.url).href);
const caps = await sb.probeSandbox();
const slowSh = join(base, 'slow-sh');
await writeFile(slowSh, `#!${caps.tools.sh}\n: > '${ready}'\nsleep 1\n: > '${ready}.passed'\nexec ${caps.tools.sh} "$@"\n`);
await chmod(slowSh, 0o755);
const upper = join(base, `orphan-upper-${runtime}`);
const work = join(base, `orphan-work-${runtime}`);
await mkdir(upper, { recursive: true });
await mkdir(work, { recursive: true });
const create = runtime === 'runc' ? sb.createRuncRunner : sb.createBwrapRunner;
const runner = create({ capabilities: { ...caps, tools: { ...caps.tools, sh: slowSh } }, tmpDir: base });
await runner.run(
  {
    rootfs: { lowerDirs: [lower], upperDir: upper, workDir: work },
    args: ['/bin/sh', '-c', `echo ${marker}; sleep 30`],
    env: ['PATH=/usr/sbin:/usr/bin:/sbin:/bin'],
    cwd: '/',
    user: { uid: 0, gid: 0 },
    network: 'host',
  },
  {},
);
