/**
 * Robustness: mutated Dockerfiles (from the conformance suite) must each give a tree or a
 * TsbuildError with a location, never hang and never throw anything else; the same holds for
 * the dump, the typed instructions and the stage split of every tree that parses.
 * Deterministic: a seeded PRNG, so a failure names the seed and input index to replay.
 */
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { dumpDockerfile, parseDockerfile, splitStages, toInstructions } from './index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../testdata/conformance/parser');
const SEED = 0x5eed_2024;
const INPUTS = 20_000;

/** mulberry32: small, fast, good enough for test input generation. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function corpus(): Buffer[] {
  const out: Buffer[] = [];
  for (const group of ['cases', 'derived-cases', 'negatives', 'derived-negatives']) {
    const dir = path.join(ROOT, group);
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir).sort()) {
      const file = path.join(dir, name, 'Dockerfile');
      // The 65 KiB line-too-long case would dominate the run time; short inputs find more.
      if (existsSync(file) && name !== 'line-too-long') out.push(readFileSync(file));
    }
  }
  return out;
}

const SNIPPETS = [
  '\\', '\\\n', '`', '<<EOF', '<<-EOF\n', '\nEOF\n', 'EOF', '<<"A"', "<<'B'", '3<<X', '[', ']', '["a", 1]',
  '"', "'", '\n', '\r\n', '\r', '\0', '\t', ' ', '#', '# escape=`\n', '# syntax=x\n', '--', '--from=x ', '=',
  'ONBUILD ', 'RUN ', 'COPY ', 'ENV ', 'LABEL ', 'HEALTHCHECK ', 'ARG ', 'FROM ', '${', '$', '\u00a0', '\ufeff',
].map((s) => Buffer.from(s, 'utf8'));
const RAW_BYTES = [0x00, 0x0b, 0x0c, 0x80, 0x85, 0xa0, 0xc3, 0xe2, 0xed, 0xf0, 0xfe, 0xff];

function mutate(input: Buffer, rand: () => number): Buffer {
  const pick = (n: number): number => Math.floor(rand() * n);
  let b = input;
  const rounds = 1 + pick(4);
  for (let r = 0; r < rounds; r++) {
    const at = pick(b.length + 1);
    switch (pick(8)) {
      case 0: {
        // flip a byte
        if (b.length === 0) break;
        const c = Buffer.from(b);
        c[Math.min(at, c.length - 1)] = pick(256);
        b = c;
        break;
      }
      case 1:
      case 2: {
        const s = SNIPPETS[pick(SNIPPETS.length)] ?? Buffer.alloc(0);
        b = Buffer.concat([b.subarray(0, at), s, b.subarray(at)]);
        break;
      }
      case 3:
        b = Buffer.concat([b.subarray(0, at), Buffer.from([RAW_BYTES[pick(RAW_BYTES.length)] ?? 0]), b.subarray(at)]);
        break;
      case 4:
        b = b.subarray(0, at); // truncate
        break;
      case 5: {
        // duplicate a line
        const lines = b.toString('latin1').split('\n');
        const i = pick(lines.length);
        lines.splice(i, 0, lines[i] ?? '');
        b = Buffer.from(lines.join('\n'), 'latin1');
        break;
      }
      case 6: {
        // delete a range
        const len = pick(40);
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + len)]);
        break;
      }
      default: {
        // swap two lines
        const lines = b.toString('latin1').split('\n');
        const i = pick(lines.length);
        const j = pick(lines.length);
        [lines[i], lines[j]] = [lines[j] ?? '', lines[i] ?? ''];
        b = Buffer.from(lines.join('\n'), 'latin1');
      }
    }
  }
  return b;
}

function expectLocatedTsbuildError(e: unknown, context: string): void {
  if (!(e instanceof TsbuildError)) {
    throw new Error(`${context}: threw a non-TsbuildError: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  }
  const loc = e.location;
  if (loc === undefined || loc.file !== 'Dockerfile' || !(loc.startLine >= 1) || !(loc.endLine >= loc.startLine)) {
    throw new Error(`${context}: TsbuildError ${e.code} "${e.message}" without a proper location: ${JSON.stringify(loc)}`);
  }
}

describe('parser fuzz', () => {
  it(`gives a tree or a located TsbuildError for ${INPUTS} mutated Dockerfiles`, () => {
    const rand = prng(SEED);
    const seeds = corpus();
    expect(seeds.length).toBeGreaterThan(20);
    const started = performance.now();
    let parsed = 0;
    let rejected = 0;
    for (let i = 0; i < INPUTS; i++) {
      const input = mutate(seeds[i % seeds.length] ?? Buffer.alloc(0), rand);
      const context = `seed ${SEED} input ${i} (${JSON.stringify(input.toString('latin1').slice(0, 200))})`;
      let tree;
      try {
        tree = parseDockerfile(input, { file: 'Dockerfile' });
      } catch (e) {
        expectLocatedTsbuildError(e, context);
        rejected++;
        continue;
      }
      parsed++;
      expect(typeof dumpDockerfile(tree)).toBe('string');
      try {
        splitStages(toInstructions(tree));
      } catch (e) {
        expectLocatedTsbuildError(e, context);
      }
    }
    const seconds = (performance.now() - started) / 1000;
    // Both outcomes must occur, or the mutations are not exercising the parser.
    expect(parsed).toBeGreaterThan(INPUTS / 10);
    expect(rejected).toBeGreaterThan(INPUTS / 100);
    console.log(`fuzz: ${INPUTS} inputs, ${parsed} parsed, ${rejected} rejected, ${seconds.toFixed(2)} s`);
  });

  it('copes with pathological inputs', () => {
    const cases = [
      Buffer.alloc(200_000, 0x5c), // one huge line of backslashes
      Buffer.from(`RUN ${'\\\n'.repeat(50_000)}x`),
      Buffer.from(`RUN ${'<<EOF '.repeat(5_000)}\n`),
      Buffer.from(`CMD ${'['.repeat(20_000)}${']'.repeat(20_000)}`),
      Buffer.from(`ENV ${'a="b c" '.repeat(5_000)}`),
      Buffer.from(`${'#\n'.repeat(100_000)}FROM a`),
      Buffer.alloc(70_000, 0xff),
      Buffer.from(`RUN ${'"'.repeat(30_000)} <<EOF\nEOF\n`),
      Buffer.from(`RUN ${'${a:-'.repeat(10_000)}<<EOF\nEOF\n`),
      Buffer.from(`RUN <<${'${a:-'.repeat(10_000)}x${'}'.repeat(10_000)}\nEOF\n`),
      Buffer.from(`RUN <<${' '.repeat(60_000)}a<\n`),
      Buffer.from(`#a=x${' '.repeat(60_000)}x\nFROM a\n`),
    ];
    for (const [i, input] of cases.entries()) {
      try {
        dumpDockerfile(parseDockerfile(input, { file: 'Dockerfile' }));
      } catch (e) {
        expectLocatedTsbuildError(e, `pathological input ${i}`);
      }
    }
  });
});
