import { describe, expect, it } from 'vitest';
import type { Digest } from '../oci/index.js';
import type { CacheKey, CopiedEntry, StepKeyInputs } from './cache-key.js';
import { explainMiss, formatExplainMap, parseExplainMap, parseKeyInputsSummary, summarizeKeyInputs } from './key-explain.js';
import { formatStepRecord, parseStepRecord } from './step-record.js';

const d = (c: string) => `sha256:${c.repeat(64)}` as Digest;
const parent = d('a') as CacheKey;

function copy(files: Record<string, string>, more: Partial<StepKeyInputs> = {}): StepKeyInputs {
  const entries: CopiedEntry[] = Object.keys(files)
    .sort()
    .map((p) => ({ path: p, type: 'file', mode: 0o644, uid: 0, gid: 0, content: d(files[p]!) }));
  return { parent, kind: 'COPY', instruction: 'COPY src/ /app/', entries, platform: 'linux/amd64', ...more };
}

function run(visible: Record<string, string>, more: Partial<StepKeyInputs> = {}): StepKeyInputs {
  return { parent, kind: 'RUN', instruction: 'RUN make', visible, platform: 'linux/amd64', ...more };
}

const why = (a: StepKeyInputs, b: StepKeyInputs, ctx: Parameters<typeof summarizeKeyInputs>[1] = {}, ctxB = ctx) =>
  explainMiss(summarizeKeyInputs(a, ctx), summarizeKeyInputs(b, ctxB), { isBuildArg: (n) => n === 'VERSION' });

describe('why a step missed the cache', () => {
  it('names the copied file that changed, was added or removed', () => {
    expect(why(copy({ 'app/a.py': '1', 'app/b.py': '2' }), copy({ 'app/a.py': '1', 'app/b.py': '3' }))).toBe('/app/b.py changed');
    expect(why(copy({ 'app/a.py': '1' }), copy({ 'app/a.py': '1', 'app/n.py': '2' }))).toBe('/app/n.py added');
    expect(why(copy({ 'app/a.py': '1', 'app/z.py': '2' }), copy({ 'app/a.py': '1' }))).toBe('/app/z.py removed');
    expect(why(copy({ a: '1', b: '1', c: '1' }), copy({ a: '2', b: '2', c: '2' }))).toBe('/a and 2 more changed');
  });

  it('tells a build arg from an env variable, and never stores their values', () => {
    expect(why(run({ VERSION: '1' }), run({ VERSION: '2' }))).toBe('build arg VERSION changed');
    expect(why(run({ PATH: '/bin' }), run({ PATH: '/usr/bin' }))).toBe('env PATH changed');
    expect(JSON.stringify(summarizeKeyInputs(run({ TOKEN: 'hunter2-secret' })))).not.toContain('hunter2');
  });

  it('names the base image whose digest changed, the config step before, or the step before', () => {
    const other = d('b') as CacheKey;
    expect(why(run({}), run({}, { parent: other }), { base: { ref: '127.0.0.1:5000/x', digest: d('1') } }, { base: { ref: '127.0.0.1:5000/x', digest: d('2') } })).toBe(
      'base image 127.0.0.1:5000/x changed digest',
    );
    expect(why(copy({ a: '1' }), copy({ a: '1' }, { parent: other }), { chain: [['build arg VERSION', 'x1']] }, { chain: [['build arg VERSION', 'x2']] })).toBe('build arg VERSION changed');
    expect(why(copy({ a: '1' }), copy({ a: '1' }, { parent: other }))).toBe('previous step changed');
    expect(why(run({}), run({}, { instruction: 'RUN make all' }))).toBe('instruction changed');
    // Two reasons at most on the line, the step's own first.
    expect(why(copy({ a: '1' }), copy({ a: '2' }, { parent: other }))).toBe('/a changed; previous step changed');
  });

  it('stays bounded for a big COPY and still names a change among the files it lists', () => {
    const many: Record<string, string> = {};
    for (let i = 0; i < 20_000; i++) many[`ctx/dir${String(i % 100).padStart(3, '0')}/file-${String(i).padStart(5, '0')}.txt`] = 'c';
    const before = summarizeKeyInputs(copy(many));
    expect(JSON.stringify(before).length).toBeLessThan(40 * 1024);
    expect(before.files?.count).toBe(20_000);
    const first = Object.keys(many).sort()[0]!;
    const last = Object.keys(many).sort().at(-1)!;
    expect(explainMiss(before, summarizeKeyInputs(copy({ ...many, [first]: 'd' })))).toBe(`/${first} changed`);
    // A change past the listed entries is still seen (the digest over all), though not named.
    expect(explainMiss(before, summarizeKeyInputs(copy({ ...many, [last]: 'd' })))).toMatch(/^copied files changed \(20000 files/);
  });

  it('keeps the summary in the step record; records without one stay valid, a malformed one is dropped', () => {
    const inputs = summarizeKeyInputs(copy({ a: '1' }));
    const record = parseStepRecord(JSON.parse(JSON.stringify(formatStepRecord({ kind: 'layer', diffId: d('c'), size: 3, inputs }))));
    expect(record).toEqual({ kind: 'layer', diffId: d('c'), size: 3, inputs });
    expect(parseStepRecord({ diffId: d('c'), size: 3 })).toEqual({ kind: 'layer', diffId: d('c'), size: 3 });
    expect(parseStepRecord({ empty: true, inputs: { v: 99 } })).toEqual({ kind: 'empty' });
    expect(parseKeyInputsSummary({ ...inputs, files: { count: 'x' } })).toBeUndefined();
  });

  it('merges the last key per step into an exported explain map, newest over oldest, and reads back only keys', () => {
    const k = (c: string) => d(c) as CacheKey;
    const first = formatExplainMap(new Map([['a', k('1')], ['b', k('2')]]));
    const second = JSON.parse(JSON.stringify(formatExplainMap(new Map([['b', k('3')]]), JSON.parse(JSON.stringify(first)))));
    expect(parseExplainMap(second)).toEqual(new Map([['a', k('1')], ['b', k('3')]]));
    expect(parseExplainMap({ v: 1, steps: { a: 'not a digest', b: k('4') } })).toEqual(new Map([['b', k('4')]]));
    expect(parseExplainMap('junk').size).toBe(0);
  });
});
