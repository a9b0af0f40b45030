#!/usr/bin/env node
// Reliability and security suite (issue 7). Runs the compiled CLI (dist/) end to end and prints
// figures. Usage: scripts/torture [SECTION...]
//   sections: crash concurrency compose platforms cache faults layers contexts sandbox secrets rootless
// Env: TORTURE_QUICK=1 (small counts), TORTURE_SEED=N, TORTURE_KILLS=N (build kills),
//      TORTURE_OP_KILLS=N (kills each of push, pull, prune), TORTURE_ROUNDS=N (concurrency),
//      TORTURE_FAULT_ROUNDS=N (per fault rate), TORTURE_ROOTLESS_KILLS=N, TORTURE_MUTANTS=N,
//      TORTURE_COMPOSE_KILLS=N, TORTURE_PLATFORM_KILLS=N, TORTURE_CACHE_KILLS=N, TORTURE_CACHE_ROUNDS=N, TORTURE_KEEP=1 (keep the work directory).
// Exit code: 0 when every check held, 1 otherwise.
import { spawn, execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath, pathToFileURL } from 'node:url';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BIN = path.join(repo, 'dist', 'cmd', 'tsbuild.cjs');
const QUICK = process.env.TORTURE_QUICK === '1';
const SEED = Number(process.env.TORTURE_SEED ?? 0x70127);
const KILLS = Number(process.env.TORTURE_KILLS ?? (QUICK ? 10 : 50));
const OP_KILLS = Number(process.env.TORTURE_OP_KILLS ?? (QUICK ? 4 : 25));
const FAULT_ROUNDS = Number(process.env.TORTURE_FAULT_ROUNDS ?? (QUICK ? 5 : 50));
const ROOTLESS_KILLS = Number(process.env.TORTURE_ROOTLESS_KILLS ?? (QUICK ? 5 : 20));
const TEST_USER = process.env.TSBUILD_TEST_USER ?? 'tsbuild-test';
const ROUNDS = Number(process.env.TORTURE_ROUNDS ?? (QUICK ? 3 : 25));
const MUTANTS = Number(process.env.TORTURE_MUTANTS ?? 10_000);
const MARK = `torture-mark-${process.pid}`;

function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = prng(SEED);

const figures = []; // [section, figure, value, ok]
const findings = [];
let failed = false;
function fig(section, name, value, ok = true) {
  figures.push([section, name, String(value), ok]);
  if (!ok) failed = true;
  console.log(`  ${ok ? 'ok  ' : 'FAIL'} ${name}: ${value}`);
}
function note(s) {
  findings.push(s);
  console.log(`  note: ${s}`);
}

/** Runs the CLI; never rejects. timeout kills with SIGKILL and sets timedOut. */
function tsbuild(args, { root, cwd, env, timeout = 300_000, killAfter, asUser } = {}) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    // setpriv execs node, so the pid we kill is tsbuild's own (runuser/su would fork and wait).
    const [cmd, argv] = asUser
      ? ['setpriv', ['--reuid', asUser, '--regid', asUser, '--init-groups', '--', process.execPath, BIN, ...args]]
      : [process.execPath, [BIN, ...args]];
    const child = spawn(cmd, argv, {
      cwd: cwd ?? repo,
      env: { ...process.env, ...(root ? { TSBUILD_ROOT: root } : {}), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let killed = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeout);
    const k = killAfter !== undefined ? setTimeout(() => ((killed = true), child.kill('SIGKILL')), killAfter) : undefined;
    child.on('close', (code, signal) => {
      clearTimeout(t);
      if (k) clearTimeout(k);
      resolve({ code: code ?? -1, signal, stdout, stderr, timedOut, killed, ms: Date.now() - t0, pid: child.pid });
    });
  });
}

function sh(cmd) {
  return execFileSync('bash', ['-c', cmd], { encoding: 'utf8', maxBuffer: 256 << 20 });
}

async function writeTree(root, files) {
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(root, rel);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.writeFile(p, content);
  }
}

async function bigFile(file, mib, salt) {
  const fh = await fsp.open(file, 'w');
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < mib; i++) {
    for (let j = 0; j < chunk.length; j += 4) chunk.writeUInt32LE(((i * chunk.length + j + salt) * 2654435761) >>> 0, j);
    await fh.write(chunk);
  }
  await fh.close();
}

async function storeWithBusybox(root) {
  sh(`TSBUILD_ROOT='${root}' '${repo}/scripts/make-busybox-image' >/dev/null`);
}

function mountsUnder(p) {
  return fs.readFileSync('/proc/mounts', 'utf8').split('\n').filter((l) => l.includes(p)).length;
}

/** Processes that belong to our builds: marked RUN commands, or sandbox tools rooted in our dirs. */
function strays(before, dirs) {
  const out = [];
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || before.has(pid) || Number(pid) === process.pid) continue;
    let comm = '';
    let cmd = '';
    try {
      comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    if (comm === 'node' || comm === 'bash' && !cmd.includes(MARK)) continue;
    let linked = '';
    for (const l of ['cwd', 'root']) {
      try {
        linked += fs.readlinkSync(`/proc/${pid}/${l}`) + ' ';
      } catch {}
    }
    const ours = cmd.includes(MARK) || dirs.some((d) => cmd.includes(d) || linked.includes(d));
    if (ours || (['bwrap', 'runc', 'unshare'].includes(comm) && dirs.some((d) => cmd.includes(d)))) {
      // State and parent, so a process that outlives its build says why (D: stuck in the kernel;
      // a parent that is alive: the parent-death signal never came).
      let status = '';
      try {
        const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
        status = ['State', 'PPid', 'NSpid'].map((k) => new RegExp(`^${k}:\\s*(.*)$`, 'm').exec(st)?.[1] ?? '?').join(' / ');
      } catch {}
      out.push({ pid, comm, cmd: `${cmd.slice(0, 120)} [${status}]` });
    }
  }
  return out;
}
function pidSet() {
  return new Set(fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)));
}
const work = fs.mkdtempSync(path.join('/work', `.torture-${process.pid}-`));
const sentinelDir = path.join(work, 'sentinel');
const sentinel = path.join(sentinelDir, 'sentinel.txt');
const SENTINEL_TEXT = `sentinel ${crypto.randomBytes(8).toString('hex')}\n`;
const rootSentinel = `/root/.torture-sentinel-${process.pid}`;
fs.mkdirSync(sentinelDir, { recursive: true });
fs.writeFileSync(sentinel, SENTINEL_TEXT);
fs.writeFileSync(rootSentinel, SENTINEL_TEXT);
function sentinelIntact() {
  const names = fs.readdirSync(sentinelDir).sort().join(',');
  return fs.readFileSync(sentinel, 'utf8') === SENTINEL_TEXT && names === 'sentinel.txt' && fs.readFileSync(rootSentinel, 'utf8') === SENTINEL_TEXT;
}

// ---------------------------------------------------------------- shared: registry, fault proxy
// The real registry (docker-registry) and the fault proxy, as the tests start them: the TS
// modules in test/support are not in dist/, so they are compiled here into the work dir.
let supportMods;
async function support() {
  if (supportMods) return supportMods;
  const out = path.join(work, 'support');
  execFileSync(path.join(repo, 'node_modules', '.bin', 'tsc'), [
    '--outDir', out, '--rootDir', path.join(repo, 'test', 'support'), '--module', 'NodeNext', '--moduleResolution', 'NodeNext',
    '--target', 'ES2023', '--types', 'node', '--skipLibCheck', '--strict',
    path.join(repo, 'test', 'support', 'fault-proxy.ts'), path.join(repo, 'test', 'support', 'registry.ts'),
  ], { cwd: repo, stdio: 'inherit' });
  fs.writeFileSync(path.join(out, 'package.json'), '{"type":"module"}\n');
  const proxy = await import(pathToFileURL(path.join(out, 'fault-proxy.js')).href);
  const registry = await import(pathToFileURL(path.join(out, 'registry.js')).href);
  supportMods = { startFaultProxy: proxy.startFaultProxy, startRegistry: registry.startRegistry };
  return supportMods;
}
let runningRegistry;
async function getRegistry() {
  if (!runningRegistry) runningRegistry = await (await support()).startRegistry({ mode: { kind: 'open' } });
  return runningRegistry;
}
const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
/** A failure is clean when tsbuild exits 1 with its one-line error and no stack trace. */
function cleanFailure(r) {
  return r.code === 1 && !r.timedOut && /^error: /m.test(r.stderr) && !/\n\s+at .+[(:]\d+/.test(r.stderr) && !/internal error/i.test(r.stderr);
}
/** The first error line, with digests, hosts and numbers blurred, to tally failure kinds. */
function errorKind(stderr) {
  const line = (stderr.split('\n').find((l) => l.startsWith('error: ')) ?? firstLine(stderr)).slice(7);
  return line.replace(/sha256:[a-f0-9]{64}/g, 'sha256:…').replace(/127\.0\.0\.\d+:\d+/g, 'HOST').replace(/\d+/g, 'N').slice(0, 110);
}
function tally(map, key) {
  map.set(key, (map.get(key) ?? 0) + 1);
}
function topOf(map, n = 4) {
  return [...map].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `${v}× "${k}"`).join('; ');
}
/** Step dirs of process `pid` still in the OS temp dir (tsbuild-run(c)-<pid>-…). */
function stepDirsOf(pid) {
  return fs.readdirSync(os.tmpdir()).filter((n) => n.startsWith(`tsbuild-run-${pid}-`) || n.startsWith(`tsbuild-runc-${pid}-`));
}

/**
 * Kill `n` runs of one command at seeded random moments (uniform over 10..95 % of its measured
 * duration); after each: no mount or process left, fsck consistent, then `next` must succeed.
 * A kill that comes after the command exited does not count; at most 2n attempts.
 */
async function killLoop(kind, n, { root, durMs, args, prepare, next, dirs, asUser }) {
  const st = { kind, attempts: 0, killed: 0, finished: 0, fsckOk: 0, nextOk: 0, mounts: 0, procs: 0, slow: 0, tempNotes: 0, stepDirsAfterNext: 0, failures: [] };
  for (let i = 0; st.killed < n && i < 2 * n; i++) {
    st.attempts++;
    if (prepare) await prepare(i);
    const before = pidSet();
    const delay = Math.floor((typeof durMs === 'function' ? durMs(i) : durMs) * (0.1 + 0.85 * rand()));
    const r = await tsbuild(args(i), { root, killAfter: delay, asUser, env: { HOME: asUser ? path.dirname(root) : process.env.HOME } });
    if (r.killed && r.signal === 'SIGKILL') st.killed++;
    else {
      st.finished++;
      if (r.code !== 0) st.failures.push(`${kind} ${i}: unkilled run failed ${r.code}: ${r.stderr.slice(-200)}`);
    }
    await sleep(150);
    st.mounts += mountsUnder(root) + mountsUnder(work);
    const s0 = strays(before, dirs);
    let s = s0;
    // A killed command's sandbox takes a moment to go on a loaded machine: a process still there
    // after 5 s counts as left behind; one that went in the meantime is noted as slow.
    for (let w = 0; s.length && w < 50; w++) {
      await sleep(100);
      s = s.filter((p) => fs.existsSync(`/proc/${p.pid}`));
    }
    st.slow += s0.length - s.length;
    if (s0.length > s.length) st.failures.push(`${kind} ${i} @${delay}ms: gone within 5 s but not 150 ms: ${s0.filter((p) => !s.includes(p)).map((p) => `${p.comm}(${p.cmd})`).join('; ')}`);
    st.procs += s.length;
    if (s.length) st.failures.push(`${kind} ${i} @${delay}ms: stray after 5 s: ${s.map((p) => `${p.comm}(${p.cmd})`).join('; ')}`);
    for (const p of s) try { process.kill(Number(p.pid), 'SIGKILL'); } catch {}
    const f = await tsbuild(['fsck'], { root, asUser, env: { HOME: asUser ? path.dirname(root) : process.env.HOME } });
    if (f.code === 0 && /consistent/.test(f.stdout)) st.fsckOk++;
    else st.failures.push(`${kind} ${i} @${delay}ms: fsck ${f.code}: ${(f.stdout + f.stderr).slice(0, 300)}`);
    // Temps of the killed process (fsck lists them as harmless notes; the next prune removes them).
    st.tempNotes += f.stdout.split('\n').filter((l) => l.startsWith('note: leftover temporary') && l.includes(`of process ${r.pid},`)).length;
    const nx = await next(i);
    if (nx.ok) st.nextOk++;
    else st.failures.push(`${kind} ${i} @${delay}ms: next command failed: ${nx.why}`);
    st.stepDirsAfterNext += stepDirsOf(r.pid).length;
    if (st.attempts % 10 === 0) console.log(`  ... ${kind}: ${st.attempts} attempts, ${st.killed} killed mid-command`);
  }
  return st;
}
/** `prune -f` each store, then count what fsck still notes (must be 0). */
async function tempsAfterPrune(roots, asUser) {
  let notes = 0;
  for (const root of roots) {
    const env = { HOME: asUser ? path.dirname(root) : process.env.HOME };
    const p = await tsbuild(['prune', '-f'], { root, asUser, env });
    if (p.code !== 0) note(`prune -f in ${root}: ${p.stderr.slice(-200)}`);
    const f = await tsbuild(['fsck'], { root, asUser, env });
    notes += (f.stdout.match(/^note: /gm) ?? []).length;
  }
  return notes;
}
function reportKills(section, st, extra = '') {
  const a = st.attempts;
  fig(section, `${st.kind}: SIGKILLed mid-command / finished before the kill${extra}`, `${st.killed} / ${st.finished}`, st.killed > 0);
  fig(section, `${st.kind}: fsck consistent after each / next command succeeded`, `${st.fsckOk}/${a} / ${st.nextOk}/${a}`, st.fsckOk === a && st.nextOk === a);
  fig(section, `${st.kind}: mounts / processes left 5 s after the kill (sum) [processes that took 0.15-5 s to go]`, `${st.mounts} / ${st.procs} [${st.slow}]`, st.mounts === 0 && st.procs === 0);
  fig(section, `${st.kind}: temps of the killed process noted by fsck (sum over kills) / step dirs of the killed pid left after the next command`, `${st.tempNotes} / ${st.stepDirsAfterNext}`, st.stepDirsAfterNext === 0);
  for (const e of st.failures.slice(0, 6)) note(e);
}

// ---------------------------------------------------------------- 1. crashes
async function crashes() {
  console.log(`\n== 1. crashes: SIGKILLs at seeded random moments (seed ${SEED}): ${KILLS} builds, ${OP_KILLS} each of push, pull, prune`);
  const root = path.join(work, 'crash-store');
  await storeWithBusybox(root);
  const ctxs = {};
  ctxs.big = path.join(work, 'crash-big');
  await writeTree(ctxs.big, { Dockerfile: 'FROM busybox\nCOPY big.bin /big.bin\nCOPY small.txt /small.txt\nRUN cat /small.txt > /copied\n', 'small.txt': 'small\n' });
  await bigFile(path.join(ctxs.big, 'big.bin'), 32, 1);
  ctxs.run = path.join(work, 'crash-run');
  await writeTree(ctxs.run, {
    Dockerfile: `FROM busybox\nRUN echo ${MARK} && dd if=/dev/urandom of=/r1 bs=1M count=8 2>/dev/null && sleep 0.3\nRUN sh -c 'echo ${MARK}; for i in 1 2 3 4 5; do head -c 1048576 /dev/urandom > /f$i; done; sleep 0.2'\nCOPY . /ctx\nRUN (sleep 5; echo ${MARK}) & echo bg\n`,
    'a.txt': 'a\n',
  });
  ctxs.multi = path.join(work, 'crash-multi');
  await writeTree(ctxs.multi, {
    Dockerfile: `FROM busybox AS a\nRUN echo ${MARK} && mkdir -p /o && seq 1 50000 > /o/seq\nFROM busybox\nCOPY --from=a /o /o\nCOPY big2.bin /b\nRUN wc -l /o/seq > /count\n`,
  });
  await bigFile(path.join(ctxs.multi, 'big2.bin'), 24, 7);
  const kinds = [
    ['big', 'cold', ['--no-cache']],
    ['big', 'cached', []],
    ['run', 'cold', ['--no-cache']],
    ['run', 'cached', []],
    ['multi', 'cold', ['--no-cache']],
    ['multi', 'cached', []],
  ];
  // Calibrate: how long does each kind take uncancelled?
  const dur = {};
  for (const [c, label, extra] of kinds) {
    const r = await tsbuild(['build', ...extra, '-t', `crash-${c}:1`, ctxs[c]], { root });
    if (r.code !== 0) throw new Error(`calibration build ${c} failed: ${r.stderr}`);
    dur[`${c}/${label}`] = r.ms;
  }
  console.log(`  build times (ms): ${JSON.stringify(dur)}`);
  const builds = await killLoop('build', KILLS, {
    root,
    dirs: [root, work],
    durMs: (i) => dur[`${kinds[i % kinds.length][0]}/${kinds[i % kinds.length][1]}`],
    args: (i) => { const [c, , extra] = kinds[i % kinds.length]; return ['build', ...extra, '-t', `crash-${c}:1`, ctxs[c]]; },
    next: async (i) => { const [c] = kinds[i % kinds.length]; const n = await tsbuild(['build', '-t', `crash-${c}:1`, ctxs[c]], { root }); return { ok: n.code === 0, why: n.stderr.slice(-300) }; },
  });
  reportKills('crashes', builds, ' (cold --no-cache and cached; COPY 32/24 MiB, RUN writing 8 and 5 MiB, a background sleep, COPY --from)');

  // The runc runtime, on its own: its step must die with tsbuild as bwrap's does (setpriv's
  // parent-death signal on unshare, runc as PID 1 of its own PID namespace), leaving no runc,
  // no container process (the background sleep) and no step dir.
  const runcArgs = ['build', '--no-cache', '--runtime', 'runc', '-t', 'crash-runc:1', ctxs.run];
  const runcCal = await tsbuild(runcArgs, { root });
  if (runcCal.code !== 0) throw new Error(`calibration build with runc failed: ${runcCal.stderr}`);
  const runcKills = await killLoop('build --runtime runc', Math.max(3, Math.round(KILLS / 5)), {
    root,
    dirs: [root, work],
    durMs: () => runcCal.ms,
    args: () => runcArgs,
    next: async () => { const n = await tsbuild(runcArgs, { root }); return { ok: n.code === 0, why: n.stderr.slice(-300) }; },
  });
  reportKills('crashes', runcKills, ' (RUN under runc, cold: a background sleep and 8 MiB written)');

  // push, pull, prune against the real registry.
  const reg = await getRegistry();
  const opRoot = (name) => path.join(work, name);
  const pushOnce = (repoName, killAfter) => tsbuild(['push', 'crash-big:1', `${reg.host}/${repoName}:1`], { root, killAfter });
  const pushFirst = await pushOnce('crash/calibrate');
  if (pushFirst.code !== 0) throw new Error(`calibration push failed: ${pushFirst.stderr}`);
  // Calibrate on a second push to a new repository: the first one was the only one that had to
  // upload every blob to the registry (later ones mount or find them, and take a fraction).
  const pushCal = await pushOnce('crash/calibrate-2');
  if (pushCal.code !== 0) throw new Error(`calibration push failed: ${pushCal.stderr}`);
  const pushes = await killLoop('push', OP_KILLS, {
    root,
    dirs: [root, work],
    durMs: pushCal.ms,
    // A new repository each time: every layer is uploaded again (no blob is linked there yet).
    args: (i) => ['push', 'crash-big:1', `${reg.host}/crash/push-${i}:1`],
    next: async (i) => { const n = await pushOnce(`crash/push-${i}`); return { ok: n.code === 0, why: n.stderr.slice(-300) }; },
  });
  // What a killed-then-repeated push left in the registry is whole: pull every 5th back.
  let pushedOk = 0, pushedChecked = 0;
  const wantId = JSON.parse((await tsbuild(['inspect', 'crash-big:1'], { root })).stdout)[0]?.Id;
  for (let i = 0; i < pushes.attempts; i += 5) {
    const vr = opRoot(`crash-verify-${i}`);
    const v = await tsbuild(['pull', `${reg.host}/crash/push-${i}:1`], { root: vr });
    pushedChecked++;
    const fv = await tsbuild(['fsck'], { root: vr });
    if (v.code === 0 && v.stdout.trim() === wantId && fv.code === 0) pushedOk++;
    else note(`pushed image crash/push-${i} pulled back: ${v.code} ${v.stdout.trim()} (want ${wantId}) ${v.stderr.slice(-200)}`);
    fs.rmSync(vr, { recursive: true, force: true });
  }
  reportKills('crashes', pushes, ` (crash-big:1, ${Math.round(pushCal.ms)} ms uncancelled)`);
  fig('crashes', 'push: images pushed after a kill, pulled back and verified (every 5th)', `${pushedOk}/${pushedChecked}`, pushedOk === pushedChecked);

  const pullRef = `${reg.host}/crash/calibrate:1`;
  const pullRoot = opRoot('crash-pull-store');
  const pullCal = await tsbuild(['pull', pullRef], { root: pullRoot });
  if (pullCal.code !== 0) throw new Error(`calibration pull failed: ${pullCal.stderr}`);
  const pulls = await killLoop('pull', OP_KILLS, {
    root: pullRoot,
    dirs: [pullRoot, work],
    durMs: pullCal.ms,
    prepare: async () => fs.rmSync(pullRoot, { recursive: true, force: true }), // fresh store: the whole image downloads
    args: () => ['pull', pullRef],
    next: async () => {
      const n = await tsbuild(['pull', pullRef], { root: pullRoot });
      const f = await tsbuild(['fsck'], { root: pullRoot });
      return { ok: n.code === 0 && n.stdout.trim() === wantId && f.code === 0, why: `${n.code} ${n.stdout.trim()} ${n.stderr.slice(-200)} fsck ${f.stdout.slice(-200)}` };
    },
  });
  reportKills('crashes', pulls, ` (crash-big:1 into an empty store, ${Math.round(pullCal.ms)} ms uncancelled; the next pull gave the right image ID, fsck clean)`);

  // prune: a store with three loaded images, untagged, then prune --all killed.
  const pruneRoot = opRoot('crash-prune-store');
  const archives = [];
  for (const c of ['big', 'run', 'multi']) {
    const a = path.join(work, `crash-${c}.tar`);
    const sv = await tsbuild(['save', '-o', a, `crash-${c}:1`], { root });
    if (sv.code !== 0) throw new Error(`save failed: ${sv.stderr}`);
    archives.push([a, `crash-${c}:1`]);
  }
  const fillPruneStore = async () => {
    for (const [a, tag] of archives) {
      const l = await tsbuild(['load', '-i', a], { root: pruneRoot });
      if (l.code !== 0) throw new Error(`load failed: ${l.stderr}`);
      await tsbuild(['rmi', '-f', tag], { root: pruneRoot });
    }
  };
  await fillPruneStore();
  const pruneCal = await tsbuild(['prune', '--all', '-f'], { root: pruneRoot });
  if (pruneCal.code !== 0) throw new Error(`calibration prune failed: ${pruneCal.stderr}`);
  const prunes = await killLoop('prune', OP_KILLS, {
    root: pruneRoot,
    dirs: [pruneRoot, work],
    durMs: pruneCal.ms,
    prepare: fillPruneStore,
    args: () => ['prune', '--all', '-f'],
    next: async () => {
      const n = await tsbuild(['prune', '--all', '-f'], { root: pruneRoot });
      const f = await tsbuild(['fsck'], { root: pruneRoot });
      const left = (f.stdout.match(/^note: leftover temporary/gm) ?? []).length;
      return { ok: n.code === 0 && f.code === 0 && left === 0, why: `${n.code} ${n.stderr.slice(-200)}; fsck after: ${f.stdout.slice(-200)}` };
    },
  });
  reportKills('crashes', prunes, ` (prune --all -f of 3 loaded, untagged images, ${Math.round(pruneCal.ms)} ms uncancelled; the next prune left no temps)`);

  const leftTemps = await tempsAfterPrune([root, pullRoot, pruneRoot]);
  fig('crashes', 'leftover temps in the three stores after one plain `prune -f` (fsck notes)', leftTemps, leftTemps === 0);
  const fin = await tsbuild(['fsck'], { root });
  const total = builds.killed + pushes.killed + pulls.killed + prunes.killed;
  fig('crashes', 'SIGKILLs mid-command in total (build + push + pull + prune)', `${total} (${builds.killed} + ${pushes.killed} + ${pulls.killed} + ${prunes.killed})`, total >= 100 || QUICK);
  fig('crashes', 'final fsck of the build store', fin.code === 0 ? 'consistent' : fin.stdout + fin.stderr, fin.code === 0);
}

// ---------------------------------------------------------------- 2. concurrency
async function concurrency() {
  console.log(`\n== 2. concurrency: 4 builds at once on one store, ${ROUNDS} rounds (+ a prune alongside)`);
  const root = path.join(work, 'conc-store');
  await storeWithBusybox(root);
  let ok = 0, total = 0, right = 0, sameId = 0, fsckOk = 0, pruneOk = 0;
  const problems = [];
  for (let round = 0; round < ROUNDS; round++) {
    const jobs = [];
    const shared = path.join(work, `conc-shared-${round % 3}`);
    await writeTree(shared, { Dockerfile: `FROM busybox\nCOPY s.txt /s.txt\nRUN cat /s.txt > /t.txt && echo shared >> /t.txt\n`, 's.txt': `shared ${round % 3}\n` });
    for (let k = 0; k < 2; k++) {
      const ctx = path.join(work, `conc-${round}-${k}`);
      const val = `round ${round} build ${k} ${crypto.randomBytes(4).toString('hex')}`;
      await writeTree(ctx, { Dockerfile: `FROM busybox\nCOPY v.txt /v.txt\nRUN cp /v.txt /w.txt && echo ${k} >> /w.txt\nCOPY common.txt /c\n`, 'v.txt': val + '\n', 'common.txt': 'common\n' });
      const out = path.join(work, `conc-out-${round}-${k}`);
      jobs.push(tsbuild(['build', '-t', `conc${k}:${round}`, '--output', `type=local,dest=${out}`, ctx], { root }).then(async (r) => {
        total++;
        if (r.code !== 0) return problems.push(`round ${round} build ${k}: ${r.stderr.slice(-300)}`);
        ok++;
        const w = await fsp.readFile(path.join(out, 'w.txt'), 'utf8').catch(() => '');
        if (w === `${val}\n${k}\n`) right++;
        else problems.push(`round ${round} build ${k}: wrong /w.txt ${JSON.stringify(w)}`);
      }));
    }
    const ids = [];
    for (let k = 0; k < 2; k++) {
      const iid = path.join(work, `conc-iid-${round}-${k}`);
      // SOURCE_DATE_EPOCH: identical inputs give one image ID (else "created" differs by the second).
      jobs.push(tsbuild(['build', '-t', `shared:${round}`, '--iidfile', iid, shared], { root, env: { SOURCE_DATE_EPOCH: '1700000000' } }).then(async (r) => {
        total++;
        if (r.code !== 0) return problems.push(`round ${round} shared ${k}: ${r.stderr.slice(-300)}`);
        ok++;
        ids.push(await fsp.readFile(iid, 'utf8'));
      }));
    }
    if (round % 5 === 4) jobs.push(tsbuild(['prune', '--all', '-f'], { root }).then((r) => { if (r.code === 0) pruneOk++; else problems.push(`prune: ${r.stderr.slice(-300)}`); }));
    await Promise.all(jobs);
    if (ids.length === 2 && ids[0] === ids[1]) { sameId++; right += 2; }
    else problems.push(`round ${round}: identical builds gave ${ids.join(' / ')}`);
    const f = await tsbuild(['fsck'], { root });
    if (f.code === 0) fsckOk++;
    else problems.push(`round ${round}: fsck ${f.stdout}${f.stderr}`);
  }
  // Same check across rounds: shared:N for rounds with the same input must have the same ID.
  fig('concurrency', 'builds succeeded', `${ok}/${total}`, ok === total);
  fig('concurrency', 'right contents / image IDs', `${right}/${total}`, right === total);
  fig('concurrency', 'identical builds gave one image ID', `${sameId}/${ROUNDS}`, sameId === ROUNDS);
  fig('concurrency', 'prunes alongside succeeded', `${pruneOk}/${Math.floor(ROUNDS / 5)}`, pruneOk === Math.floor(ROUNDS / 5));
  fig('concurrency', 'fsck clean after round', `${fsckOk}/${ROUNDS}`, fsckOk === ROUNDS);
  for (const p of problems.slice(0, 10)) note(p);
}

// ---------------------------------------------------------------- 2b. platforms
/** Processes running under a qemu-user interpreter (binfmt_misc runs it as the program's exe). */
function qemuPids() {
  const out = new Set();
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (/qemu-[a-z0-9_]+(-static)?$/.test(fs.readlinkSync(`/proc/${pid}/exe`))) out.add(pid);
    } catch {}
  }
  return out;
}

/**
 * Multi-platform builds (`--platform linux/amd64,linux/arm64`) whose arm64 RUN steps run under
 * qemu-user, SIGKILLed at seeded random moments: after each kill no process of the build is
 * left, in particular none under qemu, fsck is consistent, no index is tagged unless whole, and
 * the next build succeeds.
 */
async function platforms() {
  const n = Number(process.env.TORTURE_PLATFORM_KILLS ?? (QUICK ? 5 : 20));
  console.log(`\n== 2b. platforms: ${n} SIGKILLs of a two-platform build with emulated arm64 RUN steps`);
  if (!fs.existsSync('/proc/sys/fs/binfmt_misc/qemu-aarch64')) throw new Error('qemu-aarch64 is not registered in binfmt_misc (scripts/setup)');
  const root = path.join(work, 'platform-store');
  sh(`TSBUILD_ROOT='${root}' '${repo}/scripts/make-busybox-image' --platform linux/amd64 busybox:amd64 >/dev/null`);
  sh(`TSBUILD_ROOT='${root}' '${repo}/scripts/make-busybox-image' --platform linux/arm64 busybox:arm64 >/dev/null`);
  const mk = await tsbuild(['manifest', 'create', 'busybox:multi', 'busybox:amd64', 'busybox:arm64'], { root });
  if (mk.code !== 0) throw new Error(`manifest create failed: ${mk.stderr}`);
  const ctx = path.join(work, 'platform-ctx');
  await writeTree(ctx, {
    Dockerfile: [
      'FROM --platform=$BUILDPLATFORM busybox:multi AS gen',
      'ARG SALT',
      `RUN echo ${MARK} && echo $SALT > /gen && dd if=/dev/urandom of=/gen.bin bs=1M count=2 2>/dev/null`,
      'FROM busybox:multi',
      'ARG SALT',
      'COPY --from=gen /gen /gen',
      // Emulated on arm64: a busy loop, a file, a background process the sandbox must take down.
      `RUN echo ${MARK} $SALT && uname -m > /arch && i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; dd if=/dev/urandom of=/r.bin bs=1M count=2 2>/dev/null; (sleep 5; echo ${MARK}) & echo bg`,
      '',
    ].join('\n'),
  });
  const args = (salt) => ['build', '--platform', 'linux/amd64,linux/arm64', '--build-arg', `SALT=${salt}`, '-t', 'torture/multi:latest', ctx];
  const qemuBefore = qemuPids();
  const cal = await tsbuild(args('calibrate'), { root });
  if (cal.code !== 0) throw new Error(`calibration build failed: ${cal.stderr.slice(-500)}`);
  let salt = 'calibrate';
  let qemuLeft = 0, indexWhole = 0, indexBroken = 0;
  const st = await killLoop('two-platform build', n, {
    root,
    dirs: [root, work],
    durMs: cal.ms,
    prepare: (i) => { salt = `round-${i}-${crypto.randomBytes(3).toString('hex')}`; },
    args: () => args(salt),
    next: async () => {
      const left = [...qemuPids()].filter((p) => !qemuBefore.has(p));
      qemuLeft += left.length;
      for (const p of left) try { process.kill(Number(p), 'SIGKILL'); } catch {}
      // The tag names a whole index (both platforms inspectable) or nothing new.
      const a = await tsbuild(['inspect', '--platform', 'linux/amd64', 'torture/multi:latest'], { root });
      const b = await tsbuild(['inspect', '--platform', 'linux/arm64', 'torture/multi:latest'], { root });
      if (a.code === 0 && b.code === 0) indexWhole++;
      else indexBroken++;
      const r = await tsbuild(args(salt), { root });
      if (r.code !== 0) return { ok: false, why: r.stderr.slice(-300) };
      const arch = await tsbuild(['run', '--rm', '--platform', 'linux/arm64', 'torture/multi:latest', 'cat', '/arch'], { root });
      return arch.code === 0 && arch.stdout.trim() === 'aarch64' ? { ok: true } : { ok: false, why: `arm64 image says ${JSON.stringify(arch.stdout.trim())} (${arch.stderr.slice(-200)})` };
    },
  });
  reportKills('platforms', st, ` (${Math.round(cal.ms)} ms uncancelled; a $BUILDPLATFORM stage, an emulated arm64 RUN with a background sleep)`);
  fig('platforms', 'processes under qemu left after the kills (sum)', qemuLeft, qemuLeft === 0);
  fig('platforms', 'after each kill the tag names a whole two-platform index / a broken one', `${indexWhole}/${st.attempts} / ${indexBroken}`, indexBroken === 0);
  fig('platforms', 'temps left in the store after one plain `prune -f` (fsck notes)', await tempsAfterPrune([root]), true);
}

// ---------------------------------------------------------------- 2a. compose
/**
 * `tsbuild compose build` of a three-service project (base; api FROM the just-built base through
 * `additional_contexts: service:base`; worker, sharing a step with base), every service cold
 * each round (a new SALT build arg), SIGKILLed at seeded random moments. After each kill: no
 * process or mount left, fsck consistent, and no partial image tagged: each service's tag is
 * either the last complete build's image or this round's complete one (its label says which
 * round; a tag is only ever written after the image it names is sealed, whole and verified).
 * Then the next `compose build` succeeds and tags all three with this round's images.
 */
async function compose() {
  const n = Number(process.env.TORTURE_COMPOSE_KILLS ?? (QUICK ? 5 : 25));
  console.log(`\n== 2a. compose: ${n} SIGKILLs of \`compose build\` (3 services, built concurrently)`);
  const root = path.join(work, 'compose-store');
  await storeWithBusybox(root);
  const proj = path.join(work, 'compose-proj');
  const step = (what) => `RUN echo ${MARK} && echo ${what}-$SALT > /${what} && dd if=/dev/urandom of=/${what}.bin bs=1M count=4 2>/dev/null && sleep 0.2`;
  await writeTree(proj, {
    'compose.yaml': [
      'services:',
      '  base:',
      '    image: torture/base:latest',
      '    build: { context: ./base }',
      '  api:',
      '    image: torture/api:latest',
      '    build:',
      '      context: ./api',
      '      additional_contexts: { base: "service:base" }',
      '  worker:',
      '    image: torture/worker:latest',
      '    build: { context: ./worker }',
      '',
    ].join('\n'),
    'base/Dockerfile': `FROM busybox\nARG SALT\nLABEL salt=$SALT\n${step('shared')}\n${step('base')}\nCOPY b.txt /b.txt\n`,
    'base/b.txt': 'base\n',
    'api/Dockerfile': `FROM base\nARG SALT\nLABEL salt=$SALT\n${step('api')}\nCOPY a.bin /a.bin\n`,
    'worker/Dockerfile': `FROM busybox\nARG SALT\nLABEL salt=$SALT\n${step('shared')}\nCOPY w.bin /w.bin\nRUN (sleep 5; echo ${MARK}) & echo bg\n`,
  });
  await bigFile(path.join(proj, 'api', 'a.bin'), 8, 11);
  await bigFile(path.join(proj, 'worker', 'w.bin'), 8, 12);
  const services = ['base', 'api', 'worker'];
  const args = (salt) => ['compose', '-f', path.join(proj, 'compose.yaml'), 'build', '--build-arg', `SALT=${salt}`];
  const build = (salt, killAfter) => tsbuild(args(salt), { root, killAfter });
  /** Each service's tag: the image's salt label, or undefined when untagged. */
  const tagged = async () => {
    const out = {};
    for (const sv of services) {
      const r = await tsbuild(['inspect', `torture/${sv}:latest`], { root });
      out[sv] = r.code === 0 ? (JSON.parse(r.stdout)[0]?.Config?.Labels?.salt ?? '(no label)') : undefined;
    }
    return out;
  };
  const cal = await build('calibrate');
  if (cal.code !== 0) throw new Error(`calibration compose build failed: ${cal.stderr}`);
  let complete = 'calibrate'; // the salt of the last build that finished
  let salt = complete;
  let whole = 0, partial = 0, newer = 0;
  const partials = [];
  const st = await killLoop('compose build', n, {
    root,
    dirs: [root, work],
    durMs: cal.ms,
    prepare: (i) => { salt = `round-${i}-${crypto.randomBytes(3).toString('hex')}`; },
    args: () => args(salt),
    next: async (i) => {
      // What the killed build left tagged: the last complete image or this round's, never other.
      const t = await tagged();
      const bad = services.filter((sv) => t[sv] !== complete && t[sv] !== salt);
      if (bad.length === 0) whole++;
      else { partial++; partials.push(`round ${i}: ${bad.map((sv) => `${sv}=${t[sv]}`).join(', ')} (last complete ${complete}, this round ${salt})`); }
      newer += services.filter((sv) => t[sv] === salt).length;
      const r = await build(salt);
      if (r.code !== 0) return { ok: false, why: r.stderr.slice(-300) };
      complete = salt;
      const after = await tagged();
      const stale = services.filter((sv) => after[sv] !== salt);
      return stale.length === 0 ? { ok: true } : { ok: false, why: `after the next build, ${stale.join(', ')} not this round's image` };
    },
  });
  reportKills('compose', st, ` (${Math.round(cal.ms)} ms uncancelled; RUN steps writing 4 MiB each, COPY 8 MiB, a step shared by two services, a background sleep)`);
  fig('compose', 'after each kill, every service tag is the last complete image or this round\'s whole one / a partial or foreign image tagged', `${whole}/${st.attempts} / ${partial}`, partial === 0 && whole === st.attempts);
  fig('compose', 'service tags already moved to this round\'s image by the killed build (sum)', newer);
  for (const p of partials.slice(0, 6)) note(p);
  fig('compose', 'temps left in the store after one plain `prune -f` (fsck notes)', await tempsAfterPrune([root]), true);
}

// ---------------------------------------------------------------- 2c. remote cache
/**
 * `--cache-to`/`--cache-from type=registry` against the real registry: SIGKILLs during an export
 * and during an import, a faulted registry (10 % and 30 %) during both, a cache blob the registry
 * serves with other bytes (a cache that lies), and two exports to one ref at once. What must
 * hold: a build never fails because of the cache (imports; exports with ignore-error=true), never
 * uses a blob it has not verified (fsck re-hashes every blob of the importing store, and the
 * image ID is the one a build without cache gives), and the ref always holds a complete version
 * (a fresh store importing from it builds the right image).
 */
async function remoteCache() {
  const n = Number(process.env.TORTURE_CACHE_KILLS ?? (QUICK ? 4 : 15));
  const rounds = Number(process.env.TORTURE_CACHE_ROUNDS ?? (QUICK ? 3 : 10));
  console.log(`\n== 2c. remote cache: ${n} SIGKILLs each of export and import, ${rounds} rounds per fault rate and of concurrent exports`);
  const reg = await getRegistry();
  const { startFaultProxy } = await support();
  const proxy = await startFaultProxy({ upstream: `http://${reg.host}` });
  const ctx = path.join(work, 'cache-ctx');
  // Deterministic content (no urandom) and SOURCE_DATE_EPOCH: one image ID per SALT, with or without cache.
  await writeTree(ctx, {
    Dockerfile: `FROM busybox\nARG SALT\nRUN echo ${MARK} && echo $SALT > /salt && seq 1 400000 > /seq && sleep 0.3\nCOPY big.bin /big.bin\nRUN cat /salt /seq | md5sum > /sum\n`,
  });
  await bigFile(path.join(ctx, 'big.bin'), 8, 21);
  const env = { SOURCE_DATE_EPOCH: '1700000000' };
  const fresh = (name) => { const r = path.join(work, `cache-${name}`); fs.rmSync(r, { recursive: true, force: true }); return r; };
  const refOf = (host, name) => `${host}/cache/app:${name}`;
  // Plain progress (stderr) says which steps were CACHED; stdout has the image ID alone.
  const build = (root, salt, extra, killAfter) => tsbuild(['build', '--progress', 'plain', '--build-arg', `SALT=${salt}`, ...extra, ctx], { root, env, killAfter });
  const ids = new Map(); // salt -> image ID built without any cache
  const idOf = async (salt) => {
    if (!ids.has(salt)) {
      const root = fresh('reference');
      await storeWithBusybox(root);
      const r = await build(root, salt, ['--no-cache']);
      if (r.code !== 0) throw new Error(`reference build failed: ${r.stderr.slice(-300)}`);
      ids.set(salt, r.stdout.trim());
    }
    return ids.get(salt);
  };
  /** A fresh store importing from `ref`: exit 0, an allowed image ID, fsck clean (every blob re-hashed). */
  const importCheck = async (name, ref, salt, allowed) => {
    const root = fresh(name);
    await storeWithBusybox(root);
    const r = await build(root, salt, ['--cache-from', `type=registry,ref=${ref}`]);
    const f = await tsbuild(['fsck'], { root });
    const hits = (r.stderr.match(/CACHED/g) ?? []).length;
    const ok = r.code === 0 && allowed.includes(r.stdout.trim()) && f.code === 0;
    return { ok, hits, why: ok ? '' : `exit ${r.code} id ${r.stdout.trim()} fsck ${f.code}: ${r.stderr.slice(-300)}` };
  };
  const exportArgs = (ref) => ['--cache-to', `type=registry,ref=${ref},mode=max`];
  const problems = [];
  try {
    // 1. SIGKILL during an export: the ref keeps its last complete version.
    const exRoot = path.join(work, 'cache-export-store');
    await storeWithBusybox(exRoot);
    const exRef = refOf(reg.host, 'export-kills');
    let last = 'export-0';
    const first = await build(exRoot, last, ['--no-cache', ...exportArgs(exRef)]);
    if (first.code !== 0) throw new Error(`first export failed: ${first.stderr.slice(-300)}`);
    let salt = last;
    let importHits = 0;
    const exports = await killLoop('build --cache-to (export)', n, {
      root: exRoot,
      dirs: [exRoot, work],
      durMs: first.ms,
      prepare: (i) => { salt = `export-${i + 1}`; },
      args: () => ['build', '-q', '--no-cache', '--build-arg', `SALT=${salt}`, ...exportArgs(exRef), ctx],
      next: async (i) => {
        // The ref holds a complete version: the last finished export's, or this one's if it finished.
        const c = await importCheck('export-check', exRef, last, [await idOf(last)]);
        if (!c.ok) return { ok: false, why: `import after export kill ${i}: ${c.why}` };
        importHits += c.hits;
        const again = await build(exRoot, salt, ['--no-cache', ...exportArgs(exRef)]);
        if (again.code !== 0) return { ok: false, why: again.stderr.slice(-300) };
        last = salt;
        return { ok: true };
      },
    });
    reportKills('cache', exports, ' (a cold build exporting mode=max to the real registry)');
    fig('cache', 'after each export kill, a fresh store imported from the ref: right image ID, fsck clean (the ref whole) / steps it took from the cache (sum)', `${exports.nextOk}/${exports.attempts} / ${importHits}`, exports.nextOk === exports.attempts && importHits > 0);

    // 2. SIGKILL during an import.
    const imRoot = path.join(work, 'cache-import-store');
    const want = await idOf(last);
    const imports = await killLoop('build --cache-from (import)', n, {
      root: imRoot,
      dirs: [imRoot, work],
      durMs: (await (async () => { fs.rmSync(imRoot, { recursive: true, force: true }); await storeWithBusybox(imRoot); return (await build(imRoot, last, ['--cache-from', `type=registry,ref=${exRef}`])).ms; })()),
      prepare: async () => { fs.rmSync(imRoot, { recursive: true, force: true }); await storeWithBusybox(imRoot); },
      args: () => ['build', '-q', '--build-arg', `SALT=${last}`, '--cache-from', `type=registry,ref=${exRef}`, ctx],
      next: async () => {
        const r = await build(imRoot, last, ['--cache-from', `type=registry,ref=${exRef}`]);
        const f = await tsbuild(['fsck'], { root: imRoot });
        return r.code === 0 && r.stdout.trim() === want && f.code === 0 ? { ok: true } : { ok: false, why: `exit ${r.code} id ${r.stdout.trim()} (want ${want}) fsck ${f.code}: ${r.stderr.slice(-200)}` };
      },
    });
    reportKills('cache', imports, ' (into an empty store, then the same import again: right image ID, fsck clean)');

    // 3. A faulted registry during exports (ignore-error=true) and imports.
    const KINDS = ['500', '503', '429', 'reset', 'truncate', 'corrupt', 'slow'];
    for (const rate of [0.1, 0.3]) {
      const pct = Math.round(rate * 100);
      let exOk = 0, imOk = 0, imHits = 0, refWhole = 0;
      const fRoot = path.join(work, `cache-fault-${pct}`);
      await storeWithBusybox(fRoot);
      for (let r = 0; r < rounds; r++) {
        const fsalt = `fault-${pct}-${r}`;
        const ref = refOf(proxy.host, `faults-${pct}`);
        proxy.setFaults(rate, KINDS, SEED + pct * 100 + r);
        const e = await build(fRoot, fsalt, ['--no-cache', '--cache-to', `type=registry,ref=${ref},mode=max,ignore-error=true`]);
        if (e.code === 0 && e.stdout.trim() === (await idOf(fsalt))) exOk++;
        else problems.push(`${pct}% export round ${r}: exit ${e.code}: ${e.stderr.slice(-200)}`);
        const c = await importCheck(`fault-import-${pct}`, ref, fsalt, [await idOf(fsalt)]);
        if (c.ok) { imOk++; imHits += c.hits; } else problems.push(`${pct}% import round ${r}: ${c.why}`);
        proxy.setFaults(0, []);
        // Directly from the registry: the ref is whole (whichever export last completed).
        const d = await importCheck(`fault-direct-${pct}`, refOf(reg.host, `faults-${pct}`), fsalt, [await idOf(fsalt)]);
        if (d.ok) refWhole++; else problems.push(`${pct}% ref read directly, round ${r}: ${d.why}`);
      }
      fig('cache', `${pct} % faults: exports (ignore-error=true) whose build succeeded with the right image / imports that succeeded with the right image and a clean fsck (steps from the cache) / the ref read back whole without the proxy`, `${exOk}/${rounds} / ${imOk}/${rounds} (${imHits}) / ${refWhole}/${rounds}`, exOk === rounds && imOk === rounds && refWhole === rounds);
    }

    // 4. A cache that lies: the registry serves another blob's bytes under a cache layer's digest.
    const lieRef = refOf(reg.host, 'liar');
    const lRoot = path.join(work, 'cache-liar-src');
    await storeWithBusybox(lRoot);
    const lsalt = 'liar';
    const le = await build(lRoot, lsalt, ['--no-cache', ...exportArgs(lieRef)]);
    if (le.code !== 0) throw new Error(`liar export failed: ${le.stderr.slice(-300)}`);
    const manifest = JSON.parse(sh(`curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' http://${reg.host}/v2/cache/app/manifests/liar`));
    const layers = manifest.layers ?? [];
    let lied = 0, lieOk = 0;
    for (let k = 0; k < layers.length; k++) {
      const other = layers[(k + 1) % layers.length];
      if (!other || other.digest === layers[k].digest) continue;
      const body = execFileSync('curl', ['-sf', `http://${reg.host}/v2/cache/app/blobs/${other.digest}`], { maxBuffer: 256 << 20 });
      proxy.setRules([{ path: new RegExp(`/blobs/${layers[k].digest}`), respond: { status: 200, headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length) }, body } }]);
      const c = await importCheck(`liar-${k}`, refOf(proxy.host, 'liar'), lsalt, [await idOf(lsalt)]);
      proxy.setRules([]);
      lied++;
      if (c.ok) lieOk++; else problems.push(`lying blob ${k}: ${c.why}`);
    }
    fig('cache', 'a cache layer served with another blob\'s bytes: builds that still succeeded with the right image and a clean fsck (the bad blob refused, its step run)', `${lieOk}/${lied}`, lied > 0 && lieOk === lied);

    // 5. Two exports to one ref at once.
    const cRef = refOf(reg.host, 'concurrent');
    const roots = [path.join(work, 'cache-conc-a'), path.join(work, 'cache-conc-b')];
    for (const r of roots) await storeWithBusybox(r);
    let concOk = 0, concWhole = 0;
    for (let r = 0; r < rounds; r++) {
      const salts = [`conc-${r}-a`, `conc-${r}-b`];
      const res = await Promise.all(roots.map((root, k) => build(root, salts[k], ['--no-cache', ...exportArgs(cRef)])));
      if (res.every((x) => x.code === 0)) concOk++;
      else problems.push(`concurrent exports round ${r}: ${res.map((x) => `${x.code} ${x.stderr.slice(-150)}`).join(' | ')}`);
      // The ref is one complete version: importing either salt builds its right image.
      let whole = true;
      for (const sl of salts) {
        const c = await importCheck('conc-import', cRef, sl, [await idOf(sl)]);
        if (!c.ok) { whole = false; problems.push(`after concurrent exports round ${r}, import of ${sl}: ${c.why}`); }
      }
      if (whole) concWhole++;
    }
    fig('cache', 'two exports to one ref at once: both builds succeeded / the ref then served both salts\' builds with the right image and a clean fsck', `${concOk}/${rounds} / ${concWhole}/${rounds}`, concOk === rounds && concWhole === rounds);
  } finally {
    await proxy.stop();
  }
  for (const p of problems.slice(0, 8)) note(p);
}

// ---------------------------------------------------------------- 2b. registry faults
async function faults() {
  console.log(`\n== 2b. registry faults: push and pull through the fault proxy, ${FAULT_ROUNDS} rounds at 10 % and 30 %`);
  const { startFaultProxy } = await support();
  const reg = await getRegistry();
  const root = path.join(work, 'faults-src');
  await storeWithBusybox(root);
  const ctx = path.join(work, 'faults-ctx');
  await writeTree(ctx, { Dockerfile: 'FROM busybox\nCOPY a.bin /a.bin\nCOPY b.bin /b.bin\nCOPY c.txt /c.txt\nENV X=1\n', 'c.txt': 'c\n' });
  await bigFile(path.join(ctx, 'a.bin'), 3, 11);
  fs.writeFileSync(path.join(ctx, 'b.bin'), crypto.randomBytes(300_000));
  const iid = path.join(work, 'faults-iid');
  const b = await tsbuild(['build', '-t', 'faults-src:1', '--iidfile', iid, ctx], { root });
  if (b.code !== 0) throw new Error(`build failed: ${b.stderr}`);
  const id = fs.readFileSync(iid, 'utf8').trim();
  const layers = JSON.parse((await tsbuild(['inspect', 'faults-src:1'], { root })).stdout)[0]?.RootFS?.Layers?.length;
  const base = await tsbuild(['push', 'faults-src:1', `${reg.host}/faults/base:v1`], { root });
  if (base.code !== 0) throw new Error(`direct push failed: ${base.stderr}`);
  const proxy = await startFaultProxy({ upstream: `http://${reg.host}` });
  const KINDS = ['500', '503', '429', 'reset', 'truncate', 'corrupt', 'slow'];
  console.log(`  image ${id}, ${layers} layers (busybox + 3 MiB + 300 kB + 2 bytes); faults ${KINDS.join(' ')}`);
  try {
    for (const rate of [0.1, 0.3]) {
      const pct = Math.round(rate * 100);
      const push = { ok: 0, clean: 0, unclean: [], kinds: new Map() };
      const pull = { ok: 0, clean: 0, unclean: [], kinds: new Map() };
      let pushedVerified = 0, pushedBad = [], pullFsck = 0, pullBad = [];
      const faultsBefore = { ...proxy.stats.faults };
      const requestsBefore = proxy.stats.requests;
      for (let r = 0; r < FAULT_ROUNDS; r++) {
        proxy.setFaults(rate, KINDS, SEED + pct * 1000 + r);
        // push through the proxy
        const ref = `faults/push-${pct}-${r}:v1`;
        const p = await tsbuild(['push', 'faults-src:1', `${proxy.host}/${ref}`], { root, timeout: 240_000 });
        if (p.code === 0) push.ok++;
        else if (cleanFailure(p)) { push.clean++; tally(push.kinds, errorKind(p.stderr)); }
        else push.unclean.push(`push ${pct}% round ${r}: exit ${p.code}${p.timedOut ? ' (timed out)' : ''}: ${p.stderr.slice(-300)}`);
        // What the registry now holds under that tag, read directly: the whole image or nothing.
        const vr = path.join(work, `faults-verify-${pct}-${r}`);
        const v = await tsbuild(['pull', `${reg.host}/${ref}`], { root: vr });
        const fv = await tsbuild(['fsck'], { root: vr });
        if (v.code === 0 && v.stdout.trim() === id && fv.code === 0) pushedVerified++;
        else if (v.code === 0 || p.code === 0) pushedBad.push(`push ${pct}% round ${r} (exit ${p.code}): pulled back ${v.code} ${v.stdout.trim()} ${v.stderr.slice(-200)}`);
        fs.rmSync(vr, { recursive: true, force: true });
        // pull through the proxy into an empty store
        const ps = path.join(work, `faults-pull-${pct}-${r}`);
        const q = await tsbuild(['pull', `${proxy.host}/faults/base:v1`], { root: ps, timeout: 240_000 });
        if (q.code === 0) {
          if (q.stdout.trim() === id) pull.ok++;
          else pull.unclean.push(`pull ${pct}% round ${r}: wrong image ${q.stdout.trim()}`);
        } else if (cleanFailure(q)) { pull.clean++; tally(pull.kinds, errorKind(q.stderr)); }
        else pull.unclean.push(`pull ${pct}% round ${r}: exit ${q.code}${q.timedOut ? ' (timed out)' : ''}: ${q.stderr.slice(-300)}`);
        const fq = await tsbuild(['fsck'], { root: ps });
        const tags = q.code === 0 ? '' : (await tsbuild(['images', '-q'], { root: ps })).stdout.trim();
        const temps = (fq.stdout.match(/^note: /gm) ?? []).length;
        if (fq.code === 0 && temps === 0 && tags === '') pullFsck++;
        else pullBad.push(`pull ${pct}% round ${r} (exit ${q.code}): fsck ${fq.code} ${fq.stdout.slice(-200)} images: ${tags}`);
        fs.rmSync(ps, { recursive: true, force: true });
        if ((r + 1) % 10 === 0) console.log(`  ... ${pct}%: ${r + 1} rounds`);
      }
      const injected = Object.entries(proxy.stats.faults).map(([k, v]) => [k, v - (faultsBefore[k] ?? 0)]).filter(([, v]) => v > 0);
      const nreq = proxy.stats.requests - requestsBefore;
      fig('faults', `${pct}%: requests through the proxy / faults injected`, `${nreq} / ${injected.reduce((n, [, v]) => n + v, 0)} (${injected.map(([k, v]) => `${k} ${v}`).join(', ')})`, true);
      fig('faults', `${pct}%: pushes succeeded / failed cleanly (exit 1, one error line, no stack) / otherwise`, `${push.ok} / ${push.clean} / ${push.unclean.length}`, push.unclean.length === 0);
      fig('faults', `${pct}%: pushed tags read back directly (whole image, right ID, fsck clean) / corrupt or partial`, `${pushedVerified} / ${pushedBad.length} (${FAULT_ROUNDS - pushedVerified - pushedBad.length} failed pushes left no tag)`, pushedBad.length === 0 && pushedVerified >= push.ok);
      fig('faults', `${pct}%: pulls succeeded (right image ID) / failed cleanly / otherwise`, `${pull.ok} / ${pull.clean} / ${pull.unclean.length}`, pull.unclean.length === 0);
      fig('faults', `${pct}%: pull stores fsck clean (every blob re-hashed, no temps; no tag after a failure)`, `${pullFsck}/${FAULT_ROUNDS}`, pullFsck === FAULT_ROUNDS);
      if (push.kinds.size) note(`${pct}% push failures: ${topOf(push.kinds)}`);
      if (pull.kinds.size) note(`${pct}% pull failures: ${topOf(pull.kinds)}`);
      for (const e of [...push.unclean, ...pull.unclean, ...pushedBad, ...pullBad].slice(0, 8)) note(e);
    }
    const f = await tsbuild(['fsck'], { root });
    fig('faults', 'source store fsck after all pushes', f.code === 0 ? 'consistent' : f.stdout, f.code === 0);
  } finally {
    await proxy.stop();
  }
}

// ---------------------------------------------------------------- 3. hostile layers
// A minimal tar writer with full control over every header field.
function octal(n, len) {
  return n.toString(8).padStart(len - 1, '0') + '\0';
}
function tarHeader({ name, size = 0, type = '0', mode = 0o644, linkname = '', devmajor = 0, devminor = 0, rawSize }) {
  const h = Buffer.alloc(512);
  const nb = Buffer.from(name);
  let prefix = '';
  if (nb.length > 100) throw new Error('name too long for the tiny writer: ' + name);
  nb.copy(h, 0);
  h.write(octal(mode, 8), 100);
  h.write(octal(0, 8), 108);
  h.write(octal(0, 8), 116);
  if (rawSize) rawSize.copy(h, 124);
  else h.write(octal(size, 12), 124);
  h.write(octal(0, 12), 136);
  h.write('        ', 148);
  h.write(type, 156);
  Buffer.from(linkname).copy(h, 157);
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.write(octal(devmajor, 8), 329);
  h.write(octal(devminor, 8), 337);
  h.write(prefix, 345);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148);
  return h;
}
function pad(len) {
  return Buffer.alloc((512 - (len % 512)) % 512);
}
function paxRecords(rec) {
  let body = '';
  for (const [k, v] of Object.entries(rec)) {
    const tail = ` ${k}=${v}\n`;
    let n = tail.length + 1;
    while (String(n).length + tail.length !== n) n = String(n).length + tail.length;
    body += n + tail;
  }
  return Buffer.from(body);
}
/** entries: {name, type, body, mode, linkname, pax, gpax, devmajor, devminor, rawSize, noPadBody} */
function makeTar(entries) {
  const parts = [];
  for (const e of entries) {
    for (const [kind, rec] of [['g', e.gpax], ['x', e.pax]]) {
      if (!rec) continue;
      const b = paxRecords(rec);
      parts.push(tarHeader({ name: `PaxHeaders/${kind}`, size: b.length, type: kind }), b, pad(b.length));
    }
    const body = e.body === undefined ? Buffer.alloc(0) : Buffer.from(e.body);
    parts.push(tarHeader({ ...e, size: e.declared ?? body.length }), body, pad(body.length));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
const GOARCH = { x64: 'amd64', arm64: 'arm64' }[process.arch] ?? process.arch;

/** An OCI image layout tar around the given layers ({tar: Buffer} or {gz, diffId}). */
function ociArchive(layers, refName) {
  const blobs = new Map();
  const layerDescs = [];
  const diffIds = [];
  for (const l of layers) {
    const gz = l.gz ?? zlib.gzipSync(l.tar);
    const d = sha(gz);
    blobs.set(d, gz);
    layerDescs.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${d}`, size: gz.length });
    diffIds.push(`sha256:${l.diffId ?? sha(l.tar)}`);
  }
  const config = Buffer.from(JSON.stringify({ architecture: GOARCH, os: 'linux', config: { Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: diffIds }, history: layers.map(() => ({ created_by: 'torture' })) }));
  blobs.set(sha(config), config);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha(config)}`, size: config.length }, layers: layerDescs }));
  blobs.set(sha(manifest), manifest);
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${sha(manifest)}`, size: manifest.length, annotations: { 'io.containerd.image.name': `docker.io/library/${refName}`, 'org.opencontainers.image.ref.name': refName.split(':')[1] } }] }));
  const entries = [
    { name: 'oci-layout', body: '{"imageLayoutVersion":"1.0.0"}' },
    { name: 'index.json', body: index },
    { name: 'blobs/', type: '5', mode: 0o755 },
    { name: 'blobs/sha256/', type: '5', mode: 0o755 },
  ];
  for (const [d, b] of blobs) entries.push({ name: `blobs/sha256/${d}`, body: b });
  return makeTar(entries);
}

async function gzipBomb(gib) {
  // One file of `gib` GiB of zeros, streamed through gzip (never held in memory uncompressed).
  const total = gib * 1024 * 1024 * 1024;
  const hash = crypto.createHash('sha256');
  const gz = zlib.createGzip({ level: 9 });
  const chunks = [];
  gz.on('data', (c) => chunks.push(c));
  const done = new Promise((res) => gz.on('end', res));
  const write = (b) => {
    hash.update(b);
    return gz.write(b) ? undefined : new Promise((r) => gz.once('drain', r));
  };
  await write(tarHeader({ name: 'zeros', size: total }));
  const zero = Buffer.alloc(1 << 20);
  for (let i = 0; i < total / zero.length; i++) await write(zero);
  await write(Buffer.alloc(1024));
  gz.end();
  await done;
  return { gz: Buffer.concat(chunks), diffId: hash.digest('hex') };
}

async function hostileLayers() {
  console.log('\n== 3. hostile layers: load + build FROM + --output type=local');
  const root = path.join(work, 'layers-store');
  await storeWithBusybox(root);
  const S = sentinelDir; // absolute host path
  const up = '../'.repeat(12);
  const esc = (n) => `/tmp/torture-escape-${process.pid}-${n}`;
  const bigSize = Buffer.alloc(12);
  bigSize[0] = 0x80;
  bigSize.writeBigUInt64BE(1n << 50n, 4); // base-256: 1 PiB
  const base = makeTar([{ name: 'etc/', type: '5', mode: 0o755 }, { name: 'etc/hostname', body: 'base\n' }, { name: 'keep.txt', body: 'keep\n' }, { name: 'bin/', type: '5', mode: 0o755 }]);
  const cases = [
    ['dotdot', [{ name: `${up}tmp/torture-escape-${process.pid}-dotdot`, body: 'x' }, { name: `a/../../${up}${S.slice(1)}/sentinel.txt`, body: 'pwned' }]],
    ['absolute', [{ name: `${esc('abs')}`, body: 'x' }, { name: `${S}/sentinel.txt`, body: 'pwned' }]],
    ['symlink-write-through', [{ name: 'link', type: '2', linkname: S }, { name: 'link/sentinel.txt', body: 'pwned' }, { name: 'link/new.txt', body: 'pwned' }]],
    ['relative-symlink-write-through', [{ name: 'd/', type: '5', mode: 0o755 }, { name: 'd/up', type: '2', linkname: `../${up}${S.slice(1)}` }, { name: 'd/up/sentinel.txt', body: 'pwned' }]],
    ['symlink-chain', [{ name: 'a', type: '2', linkname: 'b' }, { name: 'b', type: '2', linkname: `/${up}${S.slice(1)}` }, { name: 'a/sentinel.txt', body: 'pwned' }]],
    ['hardlink-outside', [{ name: 'hl', type: '1', linkname: sentinel }, { name: 'hl2', type: '1', linkname: `${up}${sentinel.slice(1)}` }]],
    ['hardlink-then-write', [{ name: 'hl', type: '1', linkname: sentinel }, { name: 'hl', body: 'pwned' }]],
    ['hardlink-via-symlink', [{ name: 's', type: '2', linkname: sentinel }, { name: 'h', type: '1', linkname: 's' }, { name: 'h', body: 'pwned' }]],
    ['device-nodes', [{ name: 'dev/', type: '5', mode: 0o755 }, { name: 'dev/mem', type: '3', devmajor: 1, devminor: 1, mode: 0o666 }, { name: 'dev/sda', type: '4', devmajor: 8, devminor: 0, mode: 0o666 }, { name: 'fifo', type: '6' }]],
    ['file-dir-file', [{ name: 'x', body: 'file1' }, { name: 'x/', type: '5', mode: 0o755 }, { name: 'x/y', body: 'inner' }, { name: 'x', body: 'file2' }]],
    ['huge-declared-size', [{ name: 'huge', rawSize: bigSize, body: 'short' }]],
    ['declared-size-past-end', [{ name: 'big', declared: 1 << 30, body: 'short' }]],
    ['pax-path-dotdot', [{ name: 'innocent', pax: { path: `${up}tmp/torture-escape-${process.pid}-pax` }, body: 'x' }, { name: 'innocent2', pax: { path: `${S}/sentinel.txt` }, body: 'pwned' }]],
    ['pax-linkpath', [{ name: 'l', type: '2', linkname: 'ok', pax: { linkpath: S } }, { name: 'l/new.txt', body: 'pwned' }]],
    ['pax-global-path', [{ name: 'g1', gpax: { path: `${up}tmp/torture-escape-${process.pid}-gpax` }, body: 'x' }]],
    ['pax-size-override', [{ name: 'ps', pax: { size: '99999999999' }, body: 'short' }]],
    ['pax-bad-records', [{ name: 'pb', pax: { path: 'a\0/../../x', 'SCHILY.xattr.security.capability': 'AAAA', uid: '-1', mtime: 'nan' }, body: 'x' }]],
    ['whiteout-escape', [{ name: `${up}tmp/.wh.torture`, body: '' }, { name: `.wh.${up}${S.slice(1)}/sentinel.txt`, body: '' }, { name: '.wh...', body: '' }]],
    ['opaque-whiteout-root', [{ name: '.wh..wh..opq', body: '' }, { name: 'after.txt', body: 'after' }]],
    ['setuid-and-modes', [{ name: 'suid', body: '#!/bin/sh\n', mode: 0o6777 }, { name: 'nodir/', type: '5', mode: 0 }, { name: 'nodir/f', body: 'x' }]],
    ['long-name-pax', [{ name: 'ln', pax: { path: 'a/'.repeat(3000) + 'f' }, body: 'x' }]],
    // A PAX name, then a name too long to create (ENAMETOOLONG): once a build that exited 0 with nothing.
    ['pax-then-enametoolong', [{ name: 'p', pax: { path: 'p'.repeat(150) }, body: 'x' }, { name: 'q', pax: { path: `${Array.from({ length: 30 }, (_, i) => String(i).padStart(3, '0') + 'd'.repeat(197)).join('/')}/f` }, body: 'x' }]],
  ];
  // Layers whose build must succeed, so that the check of their type=local output is not vacuous:
  // the output then holds no device node and no setuid/setgid file, and the build said so.
  const mustBuild = new Set(['device-nodes', 'setuid-and-modes']);
  const results = [];
  const dockerfileCtx = path.join(work, 'layers-ctx');
  await writeTree(dockerfileCtx, { 'f.txt': 'f\n' });
  const mk = async (name, layers) => {
    const archive = path.join(work, `hostile-${name}.tar`);
    fs.writeFileSync(archive, ociArchive(layers, `hostile-${name}:latest`));
    return archive;
  };
  const caseList = cases.map(([n, e]) => [n, async () => mk(n, [{ tar: base }, { tar: makeTar(e) }])]);
  caseList.push(['gzip-bomb-1gib', async () => mk('gzip-bomb-1gib', [{ tar: base }, await gzipBomb(1)])]);
  for (const [name, make] of caseList) {
    const archive = await make();
    const before = fs.readdirSync('/tmp').filter((n) => n.startsWith(`torture-escape-${process.pid}`)).length;
    const l = await tsbuild(['load', '-i', archive], { root, timeout: 180_000 });
    let outcome;
    let b = { code: -2, stderr: '' };
    const out = path.join(work, `hostile-out-${name}`);
    if (l.code !== 0) outcome = `refused at load: ${firstLine(l.stderr)}`;
    else {
      await fsp.writeFile(path.join(dockerfileCtx, 'Dockerfile'), `FROM hostile-${name}:latest\nCOPY f.txt /f.txt\n`);
      b = await tsbuild(['build', '--pull', 'never', '-t', `built-${name}:1`, '--output', `type=local,dest=${out}`, dockerfileCtx], { root, timeout: 240_000 });
      outcome = b.code === 0 ? `loaded, built: contained` : `loaded; build refused: ${firstLine(b.stderr)}`;
    }
    const escapes = fs.readdirSync('/tmp').filter((n) => n.startsWith(`torture-escape-${process.pid}`)).length - before;
    const intact = sentinelIntact();
    // Must hold for type=local: nothing in the output is a device node, a setuid/setgid file or a
    // hard link to the sentinel (preserve-special=true is not given).
    let outProblems = [];
    const produced = fs.existsSync(out);
    if (produced) {
      const sentinelIno = fs.statSync(sentinel).ino;
      for (const f of walk(out)) {
        const st = fs.lstatSync(f);
        if (st.isCharacterDevice() || st.isBlockDevice()) outProblems.push(`device ${path.relative(out, f)}`);
        if (st.ino === sentinelIno) outProblems.push(`hard link to sentinel ${path.relative(out, f)}`);
        if (st.isFile() && st.mode & 0o6000) outProblems.push(`setuid file ${path.relative(out, f)}`);
      }
      fs.rmSync(out, { recursive: true, force: true });
    }
    const f = await tsbuild(['fsck'], { root });
    // Exit 0 means an output: a build that stops without an error is the worst failure.
    if (b.code === 0 && !produced) outProblems.push('nothing, yet the build exited 0');
    if (mustBuild.has(name)) {
      if (b.code !== 0) outProblems.push('the build failed, so the output was not checked');
      else if (!/skipped|cleared/.test(b.stderr)) outProblems.push('no warning said what was left out');
    }
    const ok = intact && escapes === 0 && f.code === 0 && !l.timedOut && !b.timedOut && outProblems.length === 0;
    results.push({ name, outcome, ok });
    fig('layers', name, `${outcome}; type=local output ${outProblems.length ? `HAS ${outProblems.join(', ')}` : 'has no device, setuid file or sentinel link'}; sentinel ${intact ? 'unchanged' : 'CHANGED'}; escapes ${escapes}; fsck ${f.code === 0 ? 'ok' : 'FAIL'}`, ok);
    if (!intact) {
      fs.rmSync(sentinelDir, { recursive: true, force: true });
      fs.mkdirSync(sentinelDir);
      fs.writeFileSync(sentinel, SENTINEL_TEXT);
      fs.writeFileSync(rootSentinel, SENTINEL_TEXT);
    }
    fs.rmSync(archive, { force: true });
  }
  for (const n of fs.readdirSync('/tmp').filter((n) => n.startsWith(`torture-escape-${process.pid}`))) fs.rmSync(path.join('/tmp', n), { recursive: true, force: true });
  fig('layers', 'hostile layers refused or contained (output without devices or setuid files)', `${results.filter((r) => r.ok).length}/${results.length}`, results.every((r) => r.ok));
}
function firstLine(s) {
  return (s.split('\n').find((l) => /error|Error|refus|invalid|unsafe/.test(l)) ?? s.split('\n')[0] ?? '').trim().slice(0, 140);
}
function* walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    yield p;
    if (e.isDirectory()) yield* walk(p);
  }
}

// ---------------------------------------------------------------- 4. hostile contexts and Dockerfiles
async function contexts() {
  console.log('\n== 4. hostile contexts and Dockerfiles');
  const root = path.join(work, 'ctx-store');
  await storeWithBusybox(root);
  const build = async (name, files, extra = [], opts = {}) => {
    const ctx = path.join(work, `ctx-${name}`);
    await writeTree(ctx, files);
    if (opts.prepare) await opts.prepare(ctx);
    const out = path.join(work, `ctx-out-${name}`);
    const r = await tsbuild(['build', ...extra, '--output', `type=local,dest=${out}`, ctx], { root, timeout: opts.timeout ?? 120_000 });
    let leaked = false;
    if (fs.existsSync(out)) {
      for (const f of walk(out)) {
        const st = fs.lstatSync(f);
        if (st.isFile() && fs.readFileSync(f, 'utf8').includes(SENTINEL_TEXT.trim())) leaked = true;
      }
    }
    return { ...r, out, leaked };
  };
  const linkCtx = async (ctx) => {
    fs.symlinkSync(sentinelDir, path.join(ctx, 'outdir'));
    fs.symlinkSync(sentinel, path.join(ctx, 'outfile'));
    fs.symlinkSync('../'.repeat(10) + sentinel.slice(1), path.join(ctx, 'relout'));
  };
  const cases = [
    ['COPY through a symlinked dir out of the context', { Dockerfile: 'FROM busybox\nCOPY outdir/sentinel.txt /s\n' }, linkCtx],
    ['COPY a symlink to a file out of the context', { Dockerfile: 'FROM busybox\nCOPY outfile /s\n' }, linkCtx],
    ['COPY . with symlinks out of the context', { Dockerfile: 'FROM busybox\nCOPY . /c/\n' }, linkCtx],
    ['COPY relative symlink out', { Dockerfile: 'FROM busybox\nCOPY relout /s\n' }, linkCtx],
    ['COPY ../', { Dockerfile: 'FROM busybox\nCOPY ../ /up/\n' }],
    ['COPY ../../sentinel path', { Dockerfile: `FROM busybox\nCOPY ../sentinel/sentinel.txt /s\n` }],
    ['ADD absolute host path', { Dockerfile: `FROM busybox\nADD ${sentinel} /s\n` }],
    ['COPY --from=absolute path', { Dockerfile: `FROM busybox\nCOPY --from=busybox ${sentinel} /s\n` }],
    ['RUN --mount=type=bind,source=..', { Dockerfile: 'FROM busybox\nRUN --mount=type=bind,source=../sentinel,target=/m cat /m/sentinel.txt > /s || true\n' }],
  ];
  let contained = 0;
  for (const [name, files, prepare] of cases) {
    const r = await build(name.replace(/[^a-z0-9]+/gi, '-'), files, [], { prepare });
    const ok = !r.leaked && !r.timedOut && sentinelIntact();
    if (ok) contained++;
    fig('contexts', name, `${r.code === 0 ? 'built, no host content' : `refused: ${firstLine(r.stderr)}`}${r.leaked ? ' — SENTINEL CONTENT IN IMAGE' : ''}`, ok);
  }
  // .dockerignore excluding the Dockerfile: BuildKit still reads it, and it is not in COPY .
  {
    const r = await build('ignore-dockerfile', { Dockerfile: 'FROM busybox\nCOPY . /c/\n', '.dockerignore': 'Dockerfile\n.dockerignore\n', 'a.txt': 'a\n' });
    const ok = r.code === 0 && fs.existsSync(path.join(r.out, 'c/a.txt')) && !fs.existsSync(path.join(r.out, 'c/Dockerfile'));
    fig('contexts', '.dockerignore excludes the Dockerfile', ok ? 'built; Dockerfile read, not copied' : `code ${r.code} ${firstLine(r.stderr)}`, ok);
  }
  // Enormous Dockerfiles
  {
    const lines = ['FROM busybox'];
    for (let i = 0; i < 10_000; i++) lines.push(i % 3 === 0 ? `ENV V${i}=value${i}` : i % 3 === 1 ? `LABEL l${i}="x ${i}"` : `ARG A${i}=${i}`);
    const ctx = path.join(work, 'ctx-enormous');
    await writeTree(ctx, { Dockerfile: lines.join('\n') + '\n' });
    const p = await tsbuild(['parse', path.join(ctx, 'Dockerfile')], { root, timeout: 60_000 });
    fig('contexts', '10,000-instruction Dockerfile: parse', `${p.code === 0 ? 'ok' : `code ${p.code} ${firstLine(p.stderr)}`} in ${p.ms} ms`, p.code === 0 && !p.timedOut);
    const b = await tsbuild(['build', '-q', ctx], { root, timeout: 300_000 });
    fig('contexts', '10,000-instruction Dockerfile: build', `${b.code === 0 ? 'ok' : `code ${b.code} ${b.timedOut ? 'TIMEOUT' : firstLine(b.stderr)}`} in ${b.ms} ms`, b.code === 0 && !b.timedOut);
    const runs = ['FROM busybox'];
    for (let i = 0; i < 2000; i++) runs.push(`RUN echo ${i}`);
    const hugeLine = `FROM busybox\nRUN echo ${'x'.repeat(1 << 20)} > /dev/null\n`;
    const ctx2 = path.join(work, 'ctx-hugeline');
    await writeTree(ctx2, { Dockerfile: hugeLine });
    const h = await tsbuild(['build', '-q', ctx2], { root, timeout: 120_000 });
    fig('contexts', '1 MiB single-line RUN', `${h.code === 0 ? 'ok' : `refused: ${firstLine(h.stderr)}`} in ${h.ms} ms`, !h.timedOut && (h.code === 0 || /line|long|arg/i.test(h.stderr)));
  }
  // Deep ARG/ENV recursion: doubling chains (exponential growth) and deep nesting.
  {
    const dbl = ['ARG A0=xxxxxxxxxxxxxxxx', 'FROM busybox', 'ARG A0'];
    for (let i = 1; i <= 40; i++) dbl.push(`ENV A${i}=\${A${i - 1}}\${A${i - 1}}`);
    dbl.push('RUN echo done');
    const ctx = path.join(work, 'ctx-doubling');
    await writeTree(ctx, { Dockerfile: dbl.join('\n') + '\n' });
    const r = await tsbuild(['build', '-q', ctx], { root, timeout: 120_000, env: { NODE_OPTIONS: '--max-old-space-size=2048' } });
    const clean = r.code !== 0 && !r.timedOut && /error/i.test(r.stderr) && !/FATAL ERROR|heap out of memory|RangeError/.test(r.stderr);
    fig('contexts', 'ENV doubling chain (2^40 x 16 bytes)', r.code === 0 ? `built?! ${r.ms} ms` : `${r.timedOut ? 'TIMEOUT' : firstLine(r.stderr)} (${r.ms} ms)`, clean);
    if (!clean) note(`ENV doubling chain: exit ${r.code}${r.timedOut ? ' (timeout)' : ''}: ${r.stderr.slice(-400)}`);
    let nest = 'x';
    for (let i = 0; i < 5000; i++) nest = `\${U${i}:-${nest}}`;
    const ctx3 = path.join(work, 'ctx-nesting');
    await writeTree(ctx3, { Dockerfile: `FROM busybox\nENV N=${nest}\nRUN test "$N" = x\n` });
    const n = await tsbuild(['build', '-q', ctx3], { root, timeout: 120_000 });
    const nclean = !n.timedOut && (n.code === 0 || (/error/i.test(n.stderr) && !/Maximum call stack|RangeError|FATAL/.test(n.stderr)));
    fig('contexts', '5,000-deep ${a:-${b:-...}} nesting', n.code === 0 ? `built in ${n.ms} ms` : `${n.timedOut ? 'TIMEOUT' : firstLine(n.stderr)}`, nclean);
    if (!nclean) note(`nested expansion: exit ${n.code}: ${n.stderr.slice(-400)}`);
  }
  // Mutated Dockerfiles through parseDockerfile + splitStages + toInstructions + planBuild, in a child.
  {
    const r = await runChild(path.join(repo, 'scripts', 'torture-fuzz.mjs'), [String(MUTANTS), String(SEED)], 600_000);
    let res;
    try { res = JSON.parse(r.stdout.trim().split('\n').pop()); } catch { res = null; }
    if (!res) fig('contexts', `${MUTANTS} mutated Dockerfiles`, `driver failed: ${r.timedOut ? 'TIMEOUT' : r.stderr.slice(-300)}`, false);
    else {
      fig('contexts', `mutated Dockerfiles through parse+plan`, `${res.total} inputs: ${res.planned} planned, ${res.located} located errors, ${res.unlocated} unlocated errors, ${res.crashes} crashes; slowest ${res.slowestMs} ms`, res.crashes === 0 && res.slowestMs < 5000);
      for (const c of res.examples) note(`fuzz: ${c}`);
    }
  }
}
function runChild(script, args, timeout) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [script, ...args], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '', timedOut = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => ((timedOut = true), child.kill('SIGKILL')), timeout);
    child.on('close', (code) => { clearTimeout(t); resolve({ code, stdout, stderr, timedOut }); });
  });
}

// ---------------------------------------------------------------- 5. sandbox escapes
async function sandbox() {
  console.log('\n== 5. sandbox escapes through RUN steps');
  const root = path.join(work, 'sb-store');
  await storeWithBusybox(root);
  const hostTarget = path.join(sentinelDir, 'written-by-run');
  const procTarget = `/tmp/torture-escape-${process.pid}-procroot`;
  const mountsBefore = fs.readFileSync('/proc/mounts', 'utf8').split('\n').length;
  const before = pidSet();
  const df = `FROM busybox
RUN mkdir -p /res
RUN cat ${sentinel} > /res/read-work 2>/dev/null; cat ${rootSentinel} > /res/read-root 2>/dev/null; cat /proc/1/root${sentinel} > /res/read-proc1 2>/dev/null; true
RUN echo pwned > ${hostTarget} 2>/dev/null; echo pwned > /proc/1/root${procTarget} 2>/dev/null; echo pwned > ${sentinel} 2>/dev/null; true
RUN ls /proc | grep -E '^[0-9]+$' | wc -l > /res/nproc; ps -o pid,comm > /res/ps 2>&1 || ps > /res/ps 2>&1; cat /proc/1/cmdline | tr '\\0' ' ' > /res/pid1
RUN (mount -t tmpfs none /mnt && echo mounted > /res/mount-tmpfs || echo refused > /res/mount-tmpfs) 2>/dev/null; (mount -o remount,rw / 2>/dev/null && echo remounted > /res/remount || echo refused > /res/remount); (mount --bind /proc/1/root /mnt 2>/dev/null && ls /mnt > /res/bind-host || echo refused > /res/bind-host); true
RUN (sleep 987 &) ; nohup sleep 988 >/dev/null 2>&1 & setsid sleep 989 >/dev/null 2>&1 < /dev/null & echo ${MARK} started
RUN (chroot /proc/1/root cat ${sentinel} > /res/chroot 2>/dev/null || echo refused > /res/chroot); (nsenter -t 1 -m cat ${sentinel} > /res/nsenter 2>/dev/null || echo refused > /res/nsenter); true
RUN (ls /sys/fs/cgroup > /dev/null 2>&1; echo 1 > /proc/sys/kernel/sysrq 2>/dev/null && echo wrote > /res/sysctl || echo refused > /res/sysctl); (echo c > /proc/sysrq-trigger 2>/dev/null && echo wrote > /res/sysrq || echo refused > /res/sysrq); (mknod /res/mem c 1 1 2>/dev/null && head -c 16 /res/mem > /res/mem-read 2>/dev/null; rm -f /res/mem); true
`;
  const variants = [['root, bwrap', []], ['root, runc', ['--runtime', 'runc']]];
  for (const [label, extra] of variants) {
    const ctx = path.join(work, `sb-ctx-${label.replace(/\W+/g, '-')}`);
    await writeTree(ctx, { Dockerfile: df });
    const out = path.join(work, `sb-out-${label.replace(/\W+/g, '-')}`);
    const r = await tsbuild(['build', '--no-cache', ...extra, '--output', `type=local,dest=${out}`, ctx], { root, timeout: 180_000 });
    if (r.code !== 0) { fig('sandbox', `${label}: build`, `failed: ${r.stderr.slice(-300)}`, false); continue; }
    const rd = (n) => { try { return fs.readFileSync(path.join(out, 'res', n), 'utf8').trim(); } catch { return ''; } };
    const readHost = ['read-work', 'read-root', 'read-proc1', 'chroot', 'nsenter'].filter((n) => rd(n).includes(SENTINEL_TEXT.trim()));
    fig('sandbox', `${label}: read host files (${sentinel}, ${rootSentinel}, /proc/1/root, chroot, nsenter)`, readHost.length ? `READ via ${readHost.join(',')}` : 'none readable', readHost.length === 0);
    const wrote = fs.existsSync(hostTarget) || fs.existsSync(procTarget) || !sentinelIntact();
    fig('sandbox', `${label}: write host paths`, wrote ? 'HOST WRITTEN' : 'nothing written', !wrote);
    const nproc = Number(rd('nproc'));
    const pid1 = rd('pid1');
    const hostProcs = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).length;
    const psLines = rd('ps').split('\n').filter((l) => /\d/.test(l)).length;
    fig('sandbox', `${label}: processes visible to a step`, `${nproc} (/proc) / ${psLines} (ps), pid 1 = "${pid1.slice(0, 40)}"; host has ${hostProcs}`, nproc <= 6 && nproc < hostProcs);
    fig('sandbox', `${label}: mount tmpfs / remount / bind host root`, `${rd('mount-tmpfs')} / ${rd('remount')} / ${rd('bind-host') ? (rd('bind-host') === 'refused' ? 'refused' : 'bound (inside the step)') : '?'}`, !(rd('bind-host') && rd('bind-host') !== 'refused' && rd('bind-host').includes(path.basename(work))));
    fig('sandbox', `${label}: sysctl / sysrq / mknod mem read`, `${rd('sysctl')} / ${rd('sysrq')} / ${rd('mem-read') ? 'READ /dev/mem' : 'no'}`, rd('sysctl') !== 'wrote' && rd('sysrq') !== 'wrote' && !rd('mem-read'));
    await new Promise((res) => setTimeout(res, 300));
    const sleepers = [];
    for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p) && !before.has(p))) {
      try { const c = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '); if (/sleep 98[789]/.test(c)) sleepers.push(pid); } catch {}
    }
    fig('sandbox', `${label}: background processes alive after the step`, sleepers.length, sleepers.length === 0);
    for (const p of sleepers) try { process.kill(Number(p), 'SIGKILL'); } catch {}
    fs.rmSync(hostTarget, { force: true });
    fs.rmSync(procTarget, { force: true });
  }
  const mountsAfter = fs.readFileSync('/proc/mounts', 'utf8').split('\n').length;
  fig('sandbox', 'host mount table grew by', mountsAfter - mountsBefore, mountsAfter - mountsBefore <= 0);
  // The rootless variant is section "rootless".
}

// ---------------------------------------------------------------- 7. rootless
async function rootless() {
  console.log(`\n== 7. rootless: crashes and sandbox escapes as the unprivileged user ${TEST_USER}`);
  try { sh(`id -u ${TEST_USER}`); } catch { throw new Error(`user ${TEST_USER} missing: run scripts/setup`); }
  const uid = Number(sh(`id -u ${TEST_USER}`).trim());
  // The user's own directory (the work dir is root's, mode 0700); its store lives inside.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsbuild-torture-rootless-'));
  const root = path.join(dir, 'store');
  const hostDir = path.join(dir, 'host');
  const secretText = `user-secret ${crypto.randomBytes(6).toString('hex')}\n`;
  fs.mkdirSync(hostDir);
  fs.writeFileSync(path.join(hostDir, 'secret.txt'), secretText, { mode: 0o644 });
  sh(`chown -R ${TEST_USER}: '${dir}'`);
  const as = { asUser: TEST_USER, env: { HOME: dir } };
  const run = (args, o = {}) => tsbuild(args, { root, ...as, ...o });
  try {
    sh(`setpriv --reuid ${TEST_USER} --regid ${TEST_USER} --init-groups -- env HOME='${dir}' TSBUILD_ROOT='${root}' '${repo}/scripts/make-busybox-image' >/dev/null`);
    const ctx = path.join(dir, 'crash-ctx');
    await writeTree(ctx, {
      Dockerfile: `FROM busybox\nRUN echo ${MARK} && dd if=/dev/urandom of=/r1 bs=1M count=6 2>/dev/null && chown 1234:2345 /r1 && sleep 0.2\nCOPY . /ctx\nRUN sh -c 'echo ${MARK}; for i in 1 2 3; do head -c 1048576 /dev/urandom > /f$i; done'; (sleep 5; echo ${MARK}) & echo bg\n`,
      'big.bin': crypto.randomBytes(4 << 20),
    });
    sh(`chown -R ${TEST_USER}: '${ctx}'`);
    const kinds = [['cold', ['--no-cache']], ['cached', []]];
    const dur = {};
    for (const [label, extra] of kinds) {
      const r = await run(['build', ...extra, '-t', 'rl:1', ctx]);
      if (r.code !== 0) throw new Error(`rootless calibration build failed: ${r.stderr}`);
      dur[label] = r.ms;
    }
    console.log(`  build times as ${TEST_USER} (ms): ${JSON.stringify(dur)}`);
    const st = await killLoop('rootless build', ROOTLESS_KILLS, {
      root,
      asUser: TEST_USER,
      dirs: [root, dir],
      durMs: (i) => dur[kinds[i % 2][0]],
      args: (i) => ['build', ...kinds[i % 2][1], '-t', 'rl:1', ctx],
      next: async () => { const n = await run(['build', '-t', 'rl:1', ctx]); return { ok: n.code === 0, why: n.stderr.slice(-300) }; },
    });
    reportKills('rootless', st, ` (as ${TEST_USER}, uid ${uid}; cold and cached builds with RUN as container root and chown to subordinate IDs)`);
    // Processes of the user left behind at the end (the loop checked after each kill too); other
    // test suites on this machine may run as the same user, so only ours (our dir, our mark) count.
    const userProcs = sh(`pgrep -u ${uid} -a || true`).trim().split('\n').filter((l) => l.includes(dir) || l.includes(MARK));
    fig('rootless', `processes of ${TEST_USER} from these builds still running after the kills`, userProcs.length ? userProcs.length + ': ' + userProcs.join('; ').slice(0, 200) : 0, userProcs.length === 0);

    // Sandbox escapes as the user: the host files it may read itself must stay out of reach of a step.
    const target = path.join(hostDir, 'written-by-run');
    const df = `FROM busybox
RUN mkdir -p /res
RUN cat ${hostDir}/secret.txt > /res/read-user 2>/dev/null; cat ${sentinel} > /res/read-work 2>/dev/null; cat /proc/1/root${hostDir}/secret.txt > /res/read-proc1 2>/dev/null; true
RUN echo pwned > ${target} 2>/dev/null; echo pwned > /proc/1/root${target} 2>/dev/null; echo pwned > ${hostDir}/secret.txt 2>/dev/null; true
RUN ls /proc | grep -E '^[0-9]+$' | wc -l > /res/nproc
RUN (mount -t tmpfs none /mnt 2>/dev/null && echo mounted > /res/mount-tmpfs || echo refused > /res/mount-tmpfs); (mount --bind /proc/1/root /mnt 2>/dev/null && ls /mnt > /res/bind-host || echo refused > /res/bind-host); true
RUN (sleep 987 &) ; nohup sleep 988 >/dev/null 2>&1 & setsid sleep 989 >/dev/null 2>&1 < /dev/null & echo ${MARK} started
RUN (chroot /proc/1/root cat ${hostDir}/secret.txt > /res/chroot 2>/dev/null || echo refused > /res/chroot); (nsenter -t 1 -m cat ${hostDir}/secret.txt > /res/nsenter 2>/dev/null || echo refused > /res/nsenter); (echo 1 > /proc/sys/kernel/sysrq 2>/dev/null && echo wrote > /res/sysctl || echo refused > /res/sysctl); true
`;
    const before = pidSet();
    for (const [label, extra] of [['bwrap', []], ['runc', ['--runtime', 'runc']]]) {
      const sctx = path.join(dir, `sb-${label}`);
      await writeTree(sctx, { Dockerfile: df });
      const out = path.join(dir, `sb-out-${label}`);
      sh(`chown -R ${TEST_USER}: '${sctx}'`);
      const r = await run(['build', '--no-cache', ...extra, '--output', `type=local,dest=${out}`, sctx], { timeout: 180_000 });
      if (r.code !== 0) { fig('rootless', `${label}: escape build`, `failed: ${firstLine(r.stderr.split('\n').filter((l) => l.startsWith('error')).join('\n') || r.stderr.slice(-300))}`, false); continue; }
      const rd = (n) => { try { return fs.readFileSync(path.join(out, 'res', n), 'utf8').trim(); } catch { return ''; } };
      const read = ['read-user', 'read-work', 'read-proc1', 'chroot', 'nsenter'].filter((n) => rd(n).includes('user-secret') || rd(n).includes(SENTINEL_TEXT.trim()));
      fig('rootless', `${label}: read host files (the user's own ${hostDir}/secret.txt, the root sentinel, via /proc/1/root, chroot, nsenter)`, read.length ? `READ via ${read.join(',')}` : 'none readable', read.length === 0);
      const wrote = fs.existsSync(target) || fs.readFileSync(path.join(hostDir, 'secret.txt'), 'utf8') !== secretText || !sentinelIntact();
      fig('rootless', `${label}: write host paths (the user's own dir, via /proc/1/root)`, wrote ? 'HOST WRITTEN' : 'nothing written', !wrote);
      const nproc = Number(rd('nproc'));
      fig('rootless', `${label}: processes visible to a step / mount tmpfs / bind host root / sysctl`, `${nproc} / ${rd('mount-tmpfs')} / ${rd('bind-host') === 'refused' ? 'refused' : rd('bind-host') ? 'bound (inside the step)' : '?'} / ${rd('sysctl')}`, nproc <= 6 && rd('sysctl') !== 'wrote' && !(rd('bind-host') && rd('bind-host') !== 'refused' && rd('bind-host').includes('tsbuild-torture-rootless')));
      await sleep(300);
      const sleepers = [];
      for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p) && !before.has(p))) {
        try { if (/sleep 98[789]/.test(fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' '))) sleepers.push(pid); } catch {}
      }
      fig('rootless', `${label}: background processes alive after the step`, sleepers.length, sleepers.length === 0);
      for (const p of sleepers) try { process.kill(Number(p), 'SIGKILL'); } catch {}
      fs.rmSync(target, { force: true });
    }
    const leftTemps = await tempsAfterPrune([root], TEST_USER);
    fig('rootless', 'leftover temps in the user store after one plain `prune -f` (fsck notes)', leftTemps, leftTemps === 0);
    const fin = await run(['fsck']);
    fig('rootless', 'final fsck of the user store', fin.code === 0 ? 'consistent' : fin.stdout + fin.stderr, fin.code === 0);
  } finally {
    try { sh(`setpriv --reuid ${TEST_USER} --regid ${TEST_USER} --init-groups -- sh -c "unshare --map-auto --map-root-user rm -rf '${root}'" 2>/dev/null || true`); } catch {}
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- 6. secrets
async function secrets() {
  console.log('\n== 6. secrets: no trace in the store, logs or errors');
  const root = path.join(work, 'secret-store');
  await storeWithBusybox(root);
  const value = `S3CR3T-${crypto.randomBytes(12).toString('hex')}`;
  const envValue = `ENVS3CR3T-${crypto.randomBytes(12).toString('hex')}`;
  const secretFile = path.join(work, 'secret-src', 'tok');
  await writeTree(path.dirname(secretFile), { tok: value });
  const ctx = path.join(work, 'secret-ctx');
  await writeTree(ctx, {
    Dockerfile: `FROM busybox\nRUN --mount=type=secret,id=tok cat /run/secrets/tok | sha256sum > /tok.sha\nRUN --mount=type=secret,id=env,env=E test -n "$E" && echo -n "$E" | wc -c > /env.len\nRUN --mount=type=secret,id=tok,target=/etc/tok cp /etc/tok /tmp/copy && rm /tmp/copy\nCOPY a.txt /a\n`,
    'a.txt': 'a\n',
  });
  const failCtx = path.join(work, 'secret-fail');
  await writeTree(failCtx, { Dockerfile: `FROM busybox\nRUN --mount=type=secret,id=tok test "$(cat /run/secrets/tok)" = nope\n` });
  const secretArgs = ['--secret', `id=tok,src=${secretFile}`, '--secret', 'id=env,env=TORTURE_SECRET'];
  const env = { TORTURE_SECRET: envValue };
  const logs = [];
  const out = path.join(work, 'secret-out');
  const r1 = await tsbuild(['build', '--log-level', 'trace', '--progress', 'plain', ...secretArgs, '-t', 'secret:1', '--output', `type=local,dest=${out}`, ctx], { root, env });
  logs.push(r1.stdout, r1.stderr);
  const r2 = await tsbuild(['build', '--log-level', 'trace', '--progress', 'plain', ...secretArgs, '-t', 'secret:1', ctx], { root, env });
  logs.push(r2.stdout, r2.stderr);
  const r3 = await tsbuild(['build', '--log-level', 'trace', '--progress', 'plain', ...secretArgs, failCtx], { root, env });
  logs.push(r3.stdout, r3.stderr);
  const r4 = await tsbuild(['build', '--log-level', 'trace', '--progress', 'json', ...secretArgs, '--no-cache', '-t', 'secret:2', ctx], { root, env });
  logs.push(r4.stdout, r4.stderr);
  for (const fmt of ['oci', 'docker']) {
    const a = path.join(work, `secret-${fmt}.tar`);
    const s = await tsbuild(['build', ...secretArgs, '--output', `type=${fmt},dest=${a}`, ctx], { root, env });
    logs.push(s.stdout, s.stderr);
  }
  const h = await tsbuild(['history', '--no-trunc', 'secret:1'], { root });
  const ins = await tsbuild(['inspect', 'secret:1'], { root });
  logs.push(h.stdout, ins.stdout);
  fig('secrets', 'builds with secrets', `${[r1, r2, r4].filter((r) => r.code === 0).length}/3 ok; failing step exit ${r3.code}`, r1.code === 0 && r2.code === 0 && r4.code === 0 && r3.code !== 0);
  const sha = fs.existsSync(path.join(out, 'tok.sha')) ? fs.readFileSync(path.join(out, 'tok.sha'), 'utf8').split(' ')[0] : '';
  const want = crypto.createHash('sha256').update(value).digest('hex');
  fig('secrets', 'the step saw the secret (sha256 matches)', sha === want ? 'yes' : `no (${sha})`, sha === want);
  // Search: every file of the store, decompressed where gzip or zstd; the archives; the logs; /tmp.
  let files = 0, hits = [];
  const search = (p, label) => {
    let buf = fs.readFileSync(p);
    files++;
    try {
      if (buf[0] === 0x1f && buf[1] === 0x8b) buf = zlib.gunzipSync(buf);
      else if (buf.readUInt32LE(0) === 0xfd2fb528) buf = execFileSync('zstd', ['-dc', p], { maxBuffer: 1 << 30 });
    } catch {}
    const s = buf.toString('latin1');
    if (s.includes(value) || s.includes(envValue)) hits.push(label);
  };
  for (const f of walk(root)) if (fs.lstatSync(f).isFile()) search(f, path.relative(work, f));
  for (const fmt of ['oci', 'docker']) {
    const a = path.join(work, `secret-${fmt}.tar`);
    if (!fs.existsSync(a)) continue;
    const d = path.join(work, `secret-x-${fmt}`);
    fs.mkdirSync(d);
    sh(`tar -xf '${a}' -C '${d}'`);
    for (const f of walk(d)) if (fs.lstatSync(f).isFile()) search(f, `${fmt} archive ${path.relative(d, f)}`);
  }
  for (const f of walk(out)) if (fs.lstatSync(f).isFile()) search(f, `local output ${path.relative(out, f)}`);
  fig('secrets', 'store + archives + output files searched (decompressed)', `${files} files, ${hits.length} hits${hits.length ? ': ' + hits.slice(0, 5).join(', ') : ''}`, hits.length === 0);
  const logHits = logs.filter((l) => l.includes(value) || l.includes(envValue)).length;
  const logBytes = logs.reduce((n, l) => n + l.length, 0);
  fig('secrets', 'logs (trace level, plain+json progress), errors, history, inspect', `${logBytes} bytes, ${logHits} hits`, logHits === 0);
  let tmpHits = '';
  try { tmpHits = sh(`grep -rlsF --binary-files=text -e '${value}' -e '${envValue}' /tmp 2>/dev/null || true`).trim(); } catch {}
  fig('secrets', 'left in /tmp', tmpHits ? tmpHits.split('\n').length + ' files: ' + tmpHits.slice(0, 200) : 'none', tmpHits === '');
  if (r3.code !== 0) console.log(`  (failing step's error: ${firstLine(r3.stderr)})`);
}

// ---------------------------------------------------------------- main
const all = { crash: crashes, concurrency, compose, platforms, cache: remoteCache, faults, layers: hostileLayers, contexts, sandbox, secrets, rootless };
const chosen = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(all);
const t0 = Date.now();
console.log(`tsbuild torture: ${new Date().toISOString()} on ${os.hostname()} (${os.cpus().length} cpu, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.release()}), node ${process.version}, seed ${SEED}${QUICK ? ', QUICK' : ''}`);
console.log(`work directory ${work}; sentinels ${sentinel}, ${rootSentinel}`);
try {
  for (const s of chosen) {
    if (!all[s]) throw new Error(`unknown section ${s}; sections: ${Object.keys(all).join(' ')}`);
    const ts = Date.now();
    try {
      await all[s]();
    } catch (e) {
      fig(s, 'section crashed', e.stack ?? String(e), false);
    }
    console.log(`  (${s}: ${((Date.now() - ts) / 1000).toFixed(1)} s)`);
  }
} finally {
  await runningRegistry?.stop().catch(() => undefined);
  if (process.env.TORTURE_KEEP !== '1') fs.rmSync(work, { recursive: true, force: true });
  fs.rmSync(rootSentinel, { force: true });
}
console.log(`\n== summary (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
console.log('| section | figure | value | ok |\n| --- | --- | --- | --- |');
for (const [s, n, v, ok] of figures) console.log(`| ${s} | ${n} | ${v.replace(/\|/g, '\\|').replace(/\n/g, ' ')} | ${ok ? 'yes' : '**NO**'} |`);
if (findings.length) {
  console.log('\nnotes:');
  for (const f of findings) console.log(`- ${f}`);
}
process.exit(failed ? 1 : 0);
