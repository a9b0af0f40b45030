/**
 * Test support for the fuzz tests (src/dockerfile/fuzz.test.ts, src/plan/fuzz.test.ts): the
 * conformance suite's Dockerfiles as seeds and a seeded byte-level mutator, so a failure names
 * the seed and input index to replay. Not exported from index.ts.
 */
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../testdata/conformance/parser');

/** mulberry32: small, fast, good enough for test input generation. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function corpus(): Buffer[] {
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

export function mutate(input: Buffer, rand: () => number): Buffer {
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
