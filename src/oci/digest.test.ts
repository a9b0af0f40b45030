import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import {
  Digester,
  DigestStream,
  digestAlgorithm,
  digestBytes,
  digestHex,
  isDigest,
  parseDigest,
  sha256Digest,
} from './digest.js';

// FIPS 180-2 / NIST test vectors.
const EMPTY_SHA256 = 'sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const ABC_SHA256 = 'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad';
const MSG448_SHA256 = 'sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1';
const ABC_SHA512 =
  'sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f';
const MSG448 = 'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq';

describe('sha256Digest', () => {
  it.each([
    ['', EMPTY_SHA256],
    ['abc', ABC_SHA256],
    [MSG448, MSG448_SHA256],
  ])('%j', (input, want) => {
    expect(sha256Digest(input)).toBe(want);
    expect(sha256Digest(Buffer.from(input))).toBe(want);
  });

  it('hashes a million "a"s', () => {
    expect(sha256Digest('a'.repeat(1_000_000))).toBe(
      'sha256:cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0',
    );
  });
});

describe('digestBytes', () => {
  it('supports sha256 and sha512', () => {
    expect(digestBytes('abc', 'sha256')).toBe(ABC_SHA256);
    expect(digestBytes('abc', 'sha512')).toBe(ABC_SHA512);
  });
});

describe('Digester and DigestStream', () => {
  // A few MiB in uneven chunks, so chunk boundaries fall everywhere.
  const chunks: Buffer[] = [];
  let seed = 1;
  for (let i = 0; i < 200; i++) {
    const chunk = Buffer.alloc(((i * 7919) % 65_537) + 1);
    for (let j = 0; j < chunk.length; j++) {
      seed = (seed * 1_103_515_245 + 12_345) >>> 0;
      chunk[j] = seed >>> 24;
    }
    chunks.push(chunk);
  }
  const whole = Buffer.concat(chunks);

  it('Digester over chunks equals the one-shot digest and counts bytes', () => {
    const d = new Digester();
    for (const c of chunks) d.update(c);
    expect(d.size).toBe(whole.length);
    expect(d.digest()).toBe(sha256Digest(whole));
  });

  it('DigestStream passes data through unchanged and reports digest and size', async () => {
    const hasher = new DigestStream();
    const received: Buffer[] = [];
    await pipeline(
      Readable.from(chunks),
      hasher,
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          received.push(chunk);
          cb();
        },
      }),
    );
    expect(Buffer.concat(received).equals(whole)).toBe(true);
    expect(hasher.result()).toEqual({ digest: sha256Digest(whole), size: whole.length });
  });

  it('DigestStream of an empty stream is the empty digest', async () => {
    const hasher = new DigestStream();
    await pipeline(Readable.from([]), hasher, new Writable({ write: (_c, _e, cb) => cb() }));
    expect(hasher.result()).toEqual({ digest: EMPTY_SHA256, size: 0 });
  });

  it('DigestStream.result() before the end throws', () => {
    expect(() => new DigestStream().result()).toThrow(/before the stream ended/);
  });
});

describe('parseDigest and isDigest', () => {
  it.each([EMPTY_SHA256, ABC_SHA512])('accepts %s', (d) => {
    expect(isDigest(d)).toBe(true);
    expect(parseDigest(d)).toBe(d);
  });

  it.each([
    '',
    'sha256',
    'sha256:',
    EMPTY_SHA256.toUpperCase(),
    EMPTY_SHA256.replace('sha256', 'SHA256'),
    EMPTY_SHA256.slice(0, -1),
    EMPTY_SHA256 + '0',
    `sha256:${'g'.repeat(64)}`,
    `sha512:${'a'.repeat(64)}`,
    `sha384:${'a'.repeat(96)}`,
    `md5:${'a'.repeat(32)}`,
    `sha256+b64:${'a'.repeat(43)}=`,
    ` ${EMPTY_SHA256}`,
    `${EMPTY_SHA256}\n`,
    'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
  ])('rejects %j', (d) => {
    expect(isDigest(d)).toBe(false);
    let err: unknown;
    try {
      parseDigest(d);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(TsbuildError);
    expect((err as TsbuildError).code).toBe('DIGEST_INVALID');
  });

  it('splits algorithm and hex', () => {
    expect(digestAlgorithm(parseDigest(ABC_SHA512))).toBe('sha512');
    expect(digestHex(parseDigest(ABC_SHA256))).toBe(ABC_SHA256.slice(7));
  });
});
