import { describe, expect, it } from 'vitest';
import { canonicalJson, parseDigest, sha256Digest, type Digest } from '../oci/index.js';
import { cacheKeyFor, KEY_SCHEME, linkedStateKey, type CacheKey, type CopiedEntry, type StepKeyInputs } from './cache-key.js';

const digest = (c: string): Digest => parseDigest(`sha256:${c.repeat(64)}`);
const parent = digest('a') as CacheKey;

const base: StepKeyInputs = {
  parent,
  kind: 'COPY',
  instruction: 'COPY a /b',
  visible: { A: '1', B: '2' },
  entries: [{ path: 'b', type: 'file', mode: 0o644, uid: 0, gid: 0, content: digest('b') }],
  platform: 'linux/amd64',
};

describe('cacheKeyFor', () => {
  it('is stable for the same input, whatever the key order of visible values', () => {
    expect(cacheKeyFor(base)).toBe(cacheKeyFor({ ...base, visible: { B: '2', A: '1' } }));
  });

  it.each<[string, Partial<StepKeyInputs>]>([
    ['parent', { parent: digest('c') as CacheKey }],
    ['instruction', { instruction: 'COPY a /c' }],
    ['kind', { kind: 'ADD' }],
    ['visible value', { visible: { A: '1', B: '3' } }],
    ['visible name', { visible: { A: '1', C: '2' } }],
    ['entry content', { entries: [{ path: 'b', type: 'file', mode: 0o644, uid: 0, gid: 0, content: digest('d') }] }],
    ['entry owner', { entries: [{ path: 'b', type: 'file', mode: 0o644, uid: 1, gid: 0, content: digest('b') }] }],
    ['source', { sources: [{ kind: 'state', key: 'scratch' }] }],
    ['epoch', { epoch: 0 }],
    ['platform', { platform: 'linux/arm64' }],
  ])('changes when the %s changes', (_name, patch) => {
    expect(cacheKeyFor({ ...base, ...patch })).not.toBe(cacheKeyFor(base));
  });

  it('hashes the document of its definition: entries quoted one by one and in batches give the same bytes', () => {
    const odd = ['plain/path.txt', 'quote"d', 'back\\slash', 'tab\there', 'nul\0in', 'ctl\u0001\u001f', 'del\u007f', 'é-ü', '\u2028\u2029', 'emoji-\ud83d\ude00', 'lone-\ud800', 'lone-\udc80x', '<&>'];
    const entries = Array.from({ length: 3000 }, (_, i): CopiedEntry => ({
      path: `${odd[i % odd.length]}/${i}`,
      type: i % 3 === 0 ? 'symlink' : 'file',
      mode: 0o644 + (i % 8),
      uid: i % 5,
      gid: 7,
      ...(i % 3 === 0 ? { linkTarget: odd[(i + 1) % odd.length] } : { content: digest(((i % 6) + 10).toString(16)) }),
    }));
    const input: StepKeyInputs = { ...base, sources: [{ kind: 'state', key: parent }], epoch: 3, entries };
    const strings = [`root:${parent}`, 'epoch:3', ...entries.map((e) => `${e.path}\0${e.type}\0${e.mode.toString(8)}\0${e.uid}:${e.gid}\0${e.linkTarget ?? ''}\0${e.content ?? ''}`)];
    const doc = canonicalJson({ scheme: KEY_SCHEME, parent, kind: 'COPY', instruction: base.instruction, visible: base.visible, inputs: strings, platform: base.platform }, { htmlSafe: false });
    expect(doc.length).toBeGreaterThan(3 * 65536);
    expect(cacheKeyFor(input)).toBe(sha256Digest(doc));
  });

  it('depends on the order of the entries', () => {
    const a = { path: 'a', type: 'dir', mode: 0o755, uid: 0, gid: 0 };
    const b = { path: 'b', type: 'dir', mode: 0o755, uid: 0, gid: 0 };
    expect(cacheKeyFor({ ...base, entries: [a, b] })).not.toBe(cacheKeyFor({ ...base, entries: [b, a] }));
  });

  it('gives the keys earlier releases gave (scheme v1), so an upgrade keeps every cached step', () => {
    // Golden values computed with the release before typed key inputs, from the same inputs
    // written as that release's prefixed strings. `&&`, `<` and `>` must not be HTML-escaped.
    const p = parent;
    const copy = cacheKeyFor({
      parent: p,
      kind: 'COPY',
      instruction: 'COPY --from=0 a && b <c> /app',
      sources: [
        { kind: 'state', key: `image:${p}` },
        { kind: 'url', url: 'https://x/y', digest: 'sha256:c' },
        { kind: 'archive', path: 'a.tar', digest: 'sha256:d' },
      ],
      epoch: 5,
      entries: [
        { path: 'app/a.txt', type: 'file', mode: 0o644, uid: 0, gid: 0, content: digest('b') },
        { path: 'app/l', type: 'symlink', mode: 0o777, uid: 1, gid: 2, linkTarget: 'a.txt' },
      ],
      platform: 'linux/amd64',
    });
    expect(copy).toBe('sha256:5b186e9d4660868f3dd23c90209944d52be1124f47331e75792444dd6fbc074f');
    const run = cacheKeyFor({
      parent: p,
      kind: 'RUN',
      instruction: 'RUN a && b > c',
      visible: { Z: 'é', A: '1' },
      epoch: 5,
      mounts: [
        { kind: 'bind-state', key: undefined },
        { kind: 'bind-context', path: 'src', digest: 'sha256:e' },
      ],
      platform: 'linux/amd64',
    });
    expect(run).toBe('sha256:bde2cdf391241f79140b50c9a2d5790abd24ce47c70fcfe7d686d00edd06a84e');
    expect(cacheKeyFor({ parent: 'scratch', kind: 'WORKDIR', instruction: 'WORKDIR /w', platform: 'linux/amd64' })).toBe('sha256:8f1684d2060927d0438869451a46e675b98587f0ad8bf62eacd8b6560f5cb585');
    expect(cacheKeyFor({ parent: p, kind: 'SEAL', instruction: JSON.stringify({ a: '<b>' }), layers: [digest('f')], platform: 'linux/amd64' })).toBe(
      'sha256:e5da26d67e7ebc7dbd66eb7fae303b6b4d73f9b0a7ce89bb872f83df9b309c67',
    );
    expect(cacheKeyFor({ parent: p, kind: 'ENV', instruction: 'ENV A=1', visible: { A: '1' }, platform: 'linux/amd64' })).toBe('sha256:c800089c5a2f46f1629e9314de847b1245c7391f8d55a2343e98d5ef90fcb0a1');
  });

  it('writes --add-host entries as one input after the mounts, in their order', () => {
    const hosts = [{ host: 'a', ip: '1.1.1.1' }, { host: 'b', ip: '::1' }];
    const key = cacheKeyFor({ parent: 'scratch', kind: 'RUN', instruction: 'RUN x', epoch: 1, mounts: [{ kind: 'bind-state', key: 'scratch' }, { kind: 'extra-hosts', hosts }], platform: 'linux/amd64' });
    const doc = '{"inputs":["epoch:1","bind-from:scratch","extra-hosts:a=1.1.1.1,b=::1"],"instruction":"RUN x","kind":"RUN","parent":"scratch","platform":"linux/amd64","scheme":"tsbuild-cache-v1","visible":{}}';
    expect(key).toBe(sha256Digest(doc));
    expect(cacheKeyFor({ parent: 'scratch', kind: 'RUN', instruction: 'RUN x', epoch: 1, mounts: [{ kind: 'bind-state', key: 'scratch' }, { kind: 'extra-hosts', hosts: [...hosts].reverse() }], platform: 'linux/amd64' })).not.toBe(key);
  });

  it('writes --shm-size and --ulimit after the mounts, and nothing when they are not given', () => {
    const run = { parent: 'scratch', kind: 'RUN', instruction: 'RUN x', platform: 'linux/amd64' } as const;
    const key = cacheKeyFor({ ...run, resources: { shmSize: 1024, ulimits: [{ name: 'nofile', soft: 1, hard: 2 }] } });
    const doc = '{"inputs":["shm-size:1024","ulimits:nofile=1:2"],"instruction":"RUN x","kind":"RUN","parent":"scratch","platform":"linux/amd64","scheme":"tsbuild-cache-v1","visible":{}}';
    expect(key).toBe(sha256Digest(doc));
    expect(cacheKeyFor({ ...run, resources: {} })).toBe(cacheKeyFor(run));
  });

  it('cannot be confused by a field value that looks like JSON', () => {
    const a = cacheKeyFor({ ...base, instruction: 'x","kind":"ADD' });
    const b = cacheKeyFor({ ...base, kind: 'ADD', instruction: 'x' });
    expect(a).not.toBe(b);
  });
});

describe('linkedStateKey', () => {
  it('keys the state after a --link layer by the parent and the layer key, in a document of its own', () => {
    const layer = cacheKeyFor({ ...base, parent: 'scratch' });
    const key = linkedStateKey(parent, layer, 'linux/amd64');
    const doc = `{"inputs":["root:${layer}"],"instruction":"","kind":"LINK","parent":"${parent}","platform":"linux/amd64","scheme":"tsbuild-cache-v1","visible":{}}`;
    expect(key).toBe(sha256Digest(doc));
    expect(linkedStateKey(digest('c') as CacheKey, layer, 'linux/amd64')).not.toBe(key);
    expect(linkedStateKey(parent, cacheKeyFor({ ...base, parent: 'scratch', instruction: 'COPY a /c' }), 'linux/amd64')).not.toBe(key);
    expect(key).not.toBe(layer);
  });
});
