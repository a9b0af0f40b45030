#!/usr/bin/env node
// Fuzz driver for scripts/torture section 4: N mutated Dockerfiles through the real parser
// (parseDockerfile, toInstructions, splitStages) and planner (planBuild), from dist/.
// Prints one JSON line: totals, slowest input, examples of crashes. Args: N SEED
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { parseDockerfile, splitStages, toInstructions } = await import(path.join(repo, 'dist/src/dockerfile/index.js'));
const { planBuild } = await import(path.join(repo, 'dist/src/plan/index.js'));
const { TsbuildError } = await import(path.join(repo, 'dist/src/errors.js'));
const N = Number(process.argv[2] ?? 10000);
let a = Number(process.argv[3] ?? 1) >>> 0;
const rand = () => { a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
const pick = (n) => Math.floor(rand() * n);
const seeds = [];
const ROOT = path.join(repo, 'testdata/conformance/parser');
for (const g of ['cases', 'derived-cases', 'negatives', 'derived-negatives']) {
  const d = path.join(ROOT, g);
  if (!existsSync(d)) continue;
  for (const n of readdirSync(d).sort()) { const f = path.join(d, n, 'Dockerfile'); if (existsSync(f) && n !== 'line-too-long') seeds.push(readFileSync(f)); }
}
seeds.push(Buffer.from('ARG BASE=busybox\nARG TAG=latest\nFROM ${BASE}:${TAG} AS build\nARG X=${BASE:-y}\nENV A=${X} B=${A:+z}\nRUN --mount=type=cache,target=/c echo $A\nFROM build AS two\nCOPY --from=build /a /b\nFROM scratch\nCOPY --from=two / /\n'));
seeds.push(Buffer.from('# syntax=docker/dockerfile:1\n# escape=`\nFROM --platform=$BUILDPLATFORM busybox AS a\nARG TARGETARCH\nRUN <<EOF\necho $TARGETARCH\nEOF\nFROM a\nONBUILD RUN x\nHEALTHCHECK --interval=5s CMD true\n'));
const SNIP = ['\\', '\\\n', '`', '<<EOF', '\nEOF\n', '"', "'", '\n', '\r', '\0', '#', '--', '--from=x ', '--platform=${X} ', '=', '${', '${A:-${B}}', '${A:?err}', '$', 'FROM ', 'ARG ', 'ENV ', 'COPY ', 'RUN ', 'ONBUILD ', 'AS ', ' AS x', '--mount=type=secret,id=s ', '--chown=${U}:${G} ', '\u00a0', '\ufeff'].map((s) => Buffer.from(s));
function mutate(b) {
  for (let r = 1 + pick(5); r > 0; r--) {
    const at = pick(b.length + 1);
    switch (pick(7)) {
      case 0: if (b.length) { b = Buffer.from(b); b[Math.min(at, b.length - 1)] = pick(256); } break;
      case 1: case 2: b = Buffer.concat([b.subarray(0, at), SNIP[pick(SNIP.length)], b.subarray(at)]); break;
      case 3: b = b.subarray(0, at); break;
      case 4: { const l = b.toString('latin1').split('\n'); const i = pick(l.length); l.splice(i, 0, l[i] ?? ''); b = Buffer.from(l.join('\n'), 'latin1'); break; }
      case 5: b = Buffer.concat([b.subarray(0, at), b.subarray(at + pick(40))]); break;
      default: { const o = seeds[pick(seeds.length)]; const s = pick(o.length + 1); b = Buffer.concat([b.subarray(0, at), o.subarray(s, s + pick(200)), b.subarray(at)]); }
    }
  }
  return b;
}
const P = { os: 'linux', architecture: 'amd64' };
const res = { total: 0, planned: 0, located: 0, unlocated: 0, crashes: 0, slowestMs: 0, examples: [] };
for (let i = 0; i < N; i++) {
  const input = mutate(seeds[pick(seeds.length)]);
  const t0 = performance.now();
  res.total++;
  try {
    const parsed = parseDockerfile(input, { file: 'Dockerfile' });
    const split = splitStages(toInstructions(parsed));
    planBuild(split, { buildArgs: new Map([['X', 'y']]), targetPlatform: P, buildPlatform: P, escapeToken: parsed.escapeToken });
    res.planned++;
  } catch (e) {
    if (e instanceof TsbuildError) {
      if (e.location) res.located++;
      else res.unlocated++;
    } else {
      res.crashes++;
      if (res.examples.length < 5) res.examples.push(`input ${i}: ${e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : String(e)} :: ${JSON.stringify(input.toString('latin1').slice(0, 200))}`);
    }
  }
  res.slowestMs = Math.max(res.slowestMs, Math.round(performance.now() - t0));
}
console.log(JSON.stringify(res));
