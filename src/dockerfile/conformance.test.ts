/**
 * The parser conformance suite (testdata/conformance/parser, BuildKit's parser test files plus
 * cases derived from its Go tests) run in-process, so `npm test` covers what check.sh checks
 * through the CLI: positive cases must dump exactly to `result` (trailing whitespace of lines
 * and trailing blank lines forgiven, as check.sh does); negative cases must be rejected with a
 * located TsbuildError.
 */
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { dumpDockerfile, parseDockerfile } from './index.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../testdata/conformance/parser');

const normalize = (s: string): string =>
  s
    .split('\n')
    .map((line) => line.replace(/\s+$/, ''))
    .join('\n')
    .replace(/\n+$/, '');

function caseDirs(group: string): string[] {
  const dir = path.join(ROOT, group);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => existsSync(path.join(dir, name, 'Dockerfile')))
    .sort();
}

describe.each(['cases', 'derived-cases'])('parser conformance: %s', (group) => {
  const names = caseDirs(group);
  it('has cases', () => expect(names.length).toBeGreaterThan(0));
  it.each(names)('%s', (name) => {
    const dir = path.join(ROOT, group, name);
    const parsed = parseDockerfile(readFileSync(path.join(dir, 'Dockerfile')), { file: `${name}/Dockerfile` });
    expect(normalize(dumpDockerfile(parsed))).toBe(normalize(readFileSync(path.join(dir, 'result'), 'utf8')));
  });
});

describe.each(['negatives', 'derived-negatives'])('parser conformance: %s', (group) => {
  const names = caseDirs(group);
  it('has cases', () => expect(names.length).toBeGreaterThan(0));
  it.each(names)('%s', (name) => {
    const bytes = readFileSync(path.join(ROOT, group, name, 'Dockerfile'));
    let error: unknown;
    try {
      parseDockerfile(bytes, { file: 'Dockerfile' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TsbuildError);
    const err = error as TsbuildError;
    expect(['DOCKERFILE_SYNTAX', 'DOCKERFILE_EMPTY']).toContain(err.code);
    expect(err.location?.file).toBe('Dockerfile');
    expect(err.location?.startLine).toBeGreaterThanOrEqual(1);
  });
});
