import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { canonicalJson } from './canonical-json.js';
import { sha256Digest } from './digest.js';
import {
  DOCKER_IMAGE_CONFIG,
  DOCKER_LAYER_TAR_GZIP,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_SCHEMA1_SIGNED_MANIFEST,
  OCI_EMPTY_JSON,
  OCI_IMAGE_CONFIG,
  OCI_IMAGE_INDEX,
  OCI_IMAGE_MANIFEST,
  OCI_LAYER_TAR_GZIP,
} from './media-types.js';
import {
  MAX_MANIFEST_BYTES,
  manifestKind,
  parseImageConfig,
  parseImageIndex,
  parseImageManifest,
  parseManifestOrIndex,
} from './parse-documents.js';

const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;
const D3 = `sha256:${'3'.repeat(64)}`;

type Json = Record<string, unknown>;
const enc = (v: unknown): Buffer => canonicalJson(v);

function ociManifest(): Json {
  return {
    schemaVersion: 2,
    mediaType: OCI_IMAGE_MANIFEST,
    config: { mediaType: OCI_IMAGE_CONFIG, digest: D1, size: 1234 },
    layers: [
      { mediaType: OCI_LAYER_TAR_GZIP, digest: D2, size: 5678 },
      { mediaType: OCI_LAYER_TAR_GZIP, digest: D3, size: 0, annotations: { a: 'b' }, urls: ['https://x/y'] },
    ],
    annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' },
  };
}

function dockerManifest(): Json {
  return {
    schemaVersion: 2,
    mediaType: DOCKER_MANIFEST,
    config: { mediaType: DOCKER_IMAGE_CONFIG, digest: D1, size: 1469 },
    layers: [{ mediaType: DOCKER_LAYER_TAR_GZIP, digest: D2, size: 2_000_000 }],
  };
}

function ociIndex(): Json {
  return {
    schemaVersion: 2,
    mediaType: OCI_IMAGE_INDEX,
    manifests: [
      { mediaType: OCI_IMAGE_MANIFEST, digest: D1, size: 500, platform: { architecture: 'amd64', os: 'linux' } },
      {
        mediaType: OCI_IMAGE_MANIFEST,
        digest: D2,
        size: 500,
        platform: { architecture: 'arm64', os: 'linux', variant: 'v8' },
      },
      {
        mediaType: OCI_IMAGE_MANIFEST,
        digest: D3,
        size: 800,
        platform: { architecture: 'unknown', os: 'unknown' },
        annotations: { 'vnd.docker.reference.type': 'attestation-manifest', 'vnd.docker.reference.digest': D1 },
      },
    ],
  };
}

/** Shaped like what Docker writes: nulls for unset lists, Docker-only fields. */
function dockerConfig(): Json {
  return {
    architecture: 'amd64',
    os: 'linux',
    created: '2023-05-19T20:19:20.123456789Z',
    config: {
      Hostname: '',
      User: '',
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: ['sh'],
      Entrypoint: null,
      OnBuild: null,
      Labels: null,
      Volumes: { '/data': {} },
      ExposedPorts: { '80/tcp': {} },
      WorkingDir: '',
      Healthcheck: { Test: ['CMD-SHELL', 'true'], Interval: 30_000_000_000, Retries: 3 },
      Shell: ['/bin/sh', '-c'],
      StopSignal: 'SIGTERM',
      ArgsEscaped: true,
    },
    container_config: { Cmd: ['/bin/sh'] },
    docker_version: '20.10.23',
    rootfs: { type: 'layers', diff_ids: [D2] },
    history: [
      { created: '2023-05-19T20:19:20Z', created_by: '/bin/sh -c #(nop) ADD file:x in / ' },
      { created: '2023-05-19T20:19:20+02:00', created_by: '/bin/sh -c #(nop)  CMD ["sh"]', empty_layer: true },
    ],
  };
}

function codeAndMessage(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(TsbuildError);
    expect((e as TsbuildError).code).toBe('MANIFEST_INVALID');
    return (e as TsbuildError).message;
  }
  throw new Error('expected MANIFEST_INVALID');
}

/** A copy of `doc` with `path` (dot-separated or a key list, numeric for array items) set or, for undefined, removed. */
function edit(doc: Json, path: string | string[], value: unknown): Json {
  const copy = structuredClone(doc);
  const keys = Array.isArray(path) ? path : path.split('.');
  let at: Record<string, unknown> = copy;
  for (const k of keys.slice(0, -1)) at = at[k] as Record<string, unknown>;
  const last = keys[keys.length - 1] ?? '';
  if (value === undefined) delete at[last];
  else at[last] = value;
  return copy;
}

describe('parseImageManifest', () => {
  it('accepts OCI and Docker schema2 manifests and returns them as parsed', () => {
    expect(parseImageManifest(enc(ociManifest()))).toEqual(ociManifest());
    expect(parseImageManifest(enc(dockerManifest()))).toEqual(dockerManifest());
  });

  it('accepts a manifest without mediaType (OCI: SHOULD, not MUST), no layers, a subject and unknown fields', () => {
    const m = { ...edit(ociManifest(), 'mediaType', undefined), layers: [], subject: { mediaType: OCI_IMAGE_MANIFEST, digest: D3, size: 10 }, extra: 1 };
    expect(parseImageManifest(enc(m))).toEqual(m);
  });

  it('accepts an artifact with an empty config whose data is embedded and correct', () => {
    const m = {
      ...ociManifest(),
      artifactType: 'application/vnd.example+type',
      config: { mediaType: OCI_EMPTY_JSON, digest: sha256Digest('{}'), size: 2, data: 'e30=' },
    };
    expect(parseImageManifest(enc(m)).config.data).toBe('e30=');
  });

  it('checks the expected media type against the document', () => {
    expect(parseImageManifest(enc(ociManifest()), { mediaType: `${OCI_IMAGE_MANIFEST}; charset=utf-8` })).toBeDefined();
    expect(codeAndMessage(() => parseImageManifest(enc(ociManifest()), { mediaType: DOCKER_MANIFEST }))).toMatch(
      /does not match the expected/,
    );
    expect(codeAndMessage(() => parseImageManifest(enc(ociManifest()), { mediaType: OCI_IMAGE_INDEX }))).toMatch(
      /is not/,
    );
  });

  it.each<[string, Json, RegExp]>([
    ['schemaVersion missing', edit(ociManifest(), 'schemaVersion', undefined), /schemaVersion: missing/],
    ['schemaVersion 3', edit(ociManifest(), 'schemaVersion', 3), /must be 2/],
    ['schemaVersion "2"', edit(ociManifest(), 'schemaVersion', '2'), /must be 2/],
    ['an index mediaType', edit(ociManifest(), 'mediaType', OCI_IMAGE_INDEX), /is an image index/],
    ['an unknown mediaType', edit(ociManifest(), 'mediaType', 'application/json'), /is not application\/vnd.oci.image.manifest/],
    ['a non-string mediaType', edit(ociManifest(), 'mediaType', 5), /must be a string/],
    ['an index document without mediaType', { schemaVersion: 2, manifests: [] }, /image index, not an image manifest/],
    ['config missing', edit(ociManifest(), 'config', undefined), /config: missing/],
    ['config not an object', edit(ociManifest(), 'config', []), /config: must be a JSON object/],
    ['layers missing', edit(ociManifest(), 'layers', undefined), /layers: missing/],
    ['layers not an array', edit(ociManifest(), 'layers', {}), /layers: must be an array/],
    ['a layer without digest', edit(ociManifest(), 'layers.0.digest', undefined), /layers\[0\]\.digest: missing/],
    ['an uppercase digest', edit(ociManifest(), 'layers.0.digest', D2.toUpperCase()), /layers\[0\]\.digest: unsupported or malformed/],
    ['a short digest', edit(ociManifest(), 'config.digest', 'sha256:abc'), /config\.digest/],
    ['an md5 digest', edit(ociManifest(), 'config.digest', `md5:${'a'.repeat(32)}`), /config\.digest/],
    ['a negative size', edit(ociManifest(), 'layers.1.size', -1), /layers\[1\]\.size: must be a non-negative integer/],
    ['a fractional size', edit(ociManifest(), 'layers.1.size', 1.5), /size: must be a non-negative integer/],
    ['a string size', edit(ociManifest(), 'layers.1.size', '10'), /size/],
    ['a size past 2^53', edit(ociManifest(), 'layers.1.size', 2 ** 53), /size/],
    ['no size', edit(ociManifest(), 'config.size', undefined), /config\.size: missing/],
    ['a descriptor without mediaType', edit(ociManifest(), 'config.mediaType', undefined), /config\.mediaType: missing/],
    ['a malformed descriptor mediaType', edit(ociManifest(), 'config.mediaType', 'not a type'), /not a media type/],
    ['urls not strings', edit(ociManifest(), 'layers.1.urls', [1]), /urls: must be an array of strings/],
    ['annotation not a string', edit(ociManifest(), 'annotations', { a: 1 }), /annotations\["a"\]: must be a string/],
    ['annotations an array', edit(ociManifest(), 'layers.1.annotations', ['x']), /annotations: must be a JSON object/],
    ['a bad subject', edit(ociManifest(), 'subject', { digest: D1 }), /subject\.mediaType: missing/],
    ['embedded data not base64', edit(ociManifest(), 'config.data', '!!'), /data: not base64/],
    ['embedded data not matching', edit(ociManifest(), 'config.data', 'e30='), /embedded content does not match/],
  ])('refuses %s', (_name, doc, why) => {
    expect(codeAndMessage(() => parseImageManifest(enc(doc)))).toMatch(why);
  });

  it.each<[string, unknown]>([
    ['an array', []],
    ['null', null],
    ['a string', 'manifest'],
  ])('refuses a top-level %s', (_name, doc) => {
    expect(codeAndMessage(() => parseImageManifest(enc(doc)))).toMatch(/must be a JSON object/);
  });

  it('refuses schema1, by schemaVersion or by mediaType, with a hint', () => {
    const schema1 = { schemaVersion: 1, name: 'library/busybox', tag: 'latest', architecture: 'amd64', fsLayers: [], history: [] };
    for (const doc of [schema1, { ...schema1, mediaType: DOCKER_SCHEMA1_SIGNED_MANIFEST }, edit(dockerManifest(), 'mediaType', DOCKER_SCHEMA1_SIGNED_MANIFEST)]) {
      let err: unknown;
      try {
        parseImageManifest(enc(doc));
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(TsbuildError);
      expect((err as TsbuildError).code).toBe('MANIFEST_INVALID');
      expect((err as TsbuildError).message).toMatch(/schema 1 is not supported/);
      expect((err as TsbuildError).hint).toMatch(/skopeo copy/);
    }
    expect(codeAndMessage(() => parseImageManifest(enc(ociManifest()), { mediaType: DOCKER_SCHEMA1_SIGNED_MANIFEST }))).toMatch(/schema 1/);
  });

  it('refuses oversized and malformed documents', () => {
    const big = { ...ociManifest(), annotations: { pad: 'x'.repeat(MAX_MANIFEST_BYTES) } };
    expect(codeAndMessage(() => parseImageManifest(enc(big)))).toMatch(/over the 4194304-byte limit/);
    expect(codeAndMessage(() => parseImageManifest(enc(ociManifest()), { maxBytes: 10, what: 'manifest x:y' }))).toMatch(
      /^manifest x:y is \d+ bytes/,
    );
    expect(codeAndMessage(() => parseImageManifest(Buffer.from('{"schemaVersion":2,')))).toMatch(/not valid JSON/);
  });

  it('names the document in errors', () => {
    const msg = codeAndMessage(() =>
      parseImageManifest(enc(edit(ociManifest(), 'layers.1.size', -1)), { what: 'manifest docker.io/library/busybox:latest' }),
    );
    expect(msg).toBe('manifest docker.io/library/busybox:latest: layers[1].size: must be a non-negative integer');
  });
});

describe('parseImageIndex', () => {
  it('accepts an OCI index and a Docker manifest list', () => {
    expect(parseImageIndex(enc(ociIndex()))).toEqual(ociIndex());
    const list = { ...ociIndex(), mediaType: DOCKER_MANIFEST_LIST };
    expect(parseImageIndex(enc(list)).mediaType).toBe(DOCKER_MANIFEST_LIST);
    expect(parseImageIndex(enc({ schemaVersion: 2, manifests: [] }))).toEqual({ schemaVersion: 2, manifests: [] });
  });

  it.each<[string, Json, RegExp]>([
    ['a manifest mediaType', edit(ociIndex(), 'mediaType', OCI_IMAGE_MANIFEST), /is an image manifest/],
    ['a manifest without mediaType', edit(ociManifest(), 'mediaType', undefined), /image manifest, not an image index/],
    ['manifests missing', edit(ociIndex(), 'manifests', undefined), /manifests: missing/],
    ['manifests an object', edit(ociIndex(), 'manifests', {}), /manifests: must be an array/],
    ['schemaVersion 1', edit(ociIndex(), 'schemaVersion', 1), /schema 1/],
    ['a platform without os', edit(ociIndex(), 'manifests.0.platform.os', undefined), /manifests\[0\]\.platform\.os: missing/],
    ['a platform with a numeric variant', edit(ociIndex(), 'manifests.1.platform.variant', 8), /variant: must be a string/],
    ['os.features not strings', edit(ociIndex(), ['manifests', '1', 'platform', 'os.features'], [1]), /os\.features/],
    ['a bad digest', edit(ociIndex(), 'manifests.2.digest', 'sha256:zz'), /manifests\[2\]\.digest/],
  ])('refuses %s', (_name, doc, why) => {
    expect(codeAndMessage(() => parseImageIndex(enc(doc)))).toMatch(why);
  });
});

describe('parseImageConfig', () => {
  it('accepts a Docker-written config with nulls, Docker-only fields and unknown fields', () => {
    expect(parseImageConfig(enc(dockerConfig()))).toEqual(dockerConfig());
  });

  it('accepts a minimal OCI config', () => {
    const c = { architecture: 'arm64', variant: 'v8', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } };
    expect(parseImageConfig(enc(c))).toEqual(c);
    expect(parseImageConfig(enc({ ...c, config: null, history: null }))).toBeDefined();
  });

  it.each<[string, Json, RegExp]>([
    ['architecture missing', edit(dockerConfig(), 'architecture', undefined), /architecture: missing/],
    ['os empty', edit(dockerConfig(), 'os', ''), /os: must be a non-empty string/],
    ['rootfs missing', edit(dockerConfig(), 'rootfs', undefined), /rootfs: missing/],
    ['rootfs.type wrong', edit(dockerConfig(), 'rootfs.type', 'layer'), /rootfs\.type: must be "layers"/],
    ['diff_ids missing', edit(dockerConfig(), 'rootfs.diff_ids', undefined), /diff_ids: must be an array/],
    ['a bad diff_id', edit(dockerConfig(), 'rootfs.diff_ids', ['sha256:xyz']), /diff_ids\[0\]: not a digest/],
    ['created not RFC 3339', edit(dockerConfig(), 'created', 'yesterday'), /created: not an RFC 3339/],
    ['Env not strings', edit(dockerConfig(), 'config.Env', [1]), /config\.Env: must be an array of strings/],
    ['Cmd a string', edit(dockerConfig(), 'config.Cmd', 'sh'), /config\.Cmd/],
    ['Labels with a number', edit(dockerConfig(), 'config.Labels', { a: 1 }), /Labels\["a"\]/],
    ['ExposedPorts a list', edit(dockerConfig(), 'config.ExposedPorts', ['80/tcp']), /ExposedPorts: must be a JSON object/],
    ['a Volumes entry not {}', edit(dockerConfig(), 'config.Volumes', { '/data': true }), /Volumes\["\/data"\]: must be \{\}/],
    ['User a number', edit(dockerConfig(), 'config.User', 0), /User: must be a string/],
    ['Healthcheck.Interval negative', edit(dockerConfig(), 'config.Healthcheck.Interval', -1), /Healthcheck\.Interval/],
    ['ArgsEscaped a string', edit(dockerConfig(), 'config.ArgsEscaped', 'true'), /ArgsEscaped/],
    ['history an object', edit(dockerConfig(), 'history', {}), /history: must be an array/],
    ['empty_layer a string', edit(dockerConfig(), 'history.1.empty_layer', 'true'), /history\[1\]\.empty_layer/],
    ['created_by a number', edit(dockerConfig(), 'history.0.created_by', 1), /history\[0\]\.created_by/],
  ])('refuses %s', (_name, doc, why) => {
    expect(codeAndMessage(() => parseImageConfig(enc(doc)))).toMatch(why);
  });
});

describe('manifestKind and parseManifestOrIndex', () => {
  const schema1 = { schemaVersion: 1, name: 'x', tag: 'y', fsLayers: [], history: [], signatures: [] };

  it.each<[string, unknown, string | undefined, string]>([
    ['OCI manifest', ociManifest(), undefined, 'manifest'],
    ['Docker manifest', dockerManifest(), undefined, 'manifest'],
    ['OCI index', ociIndex(), undefined, 'index'],
    ['Docker list', { ...ociIndex(), mediaType: DOCKER_MANIFEST_LIST }, undefined, 'index'],
    ['manifest by shape', edit(ociManifest(), 'mediaType', undefined), undefined, 'manifest'],
    ['index by shape', edit(ociIndex(), 'mediaType', undefined), undefined, 'index'],
    ['manifest by header', { schemaVersion: 2 }, `${OCI_IMAGE_MANIFEST}; charset=utf-8`, 'manifest'],
    ['schema1 by shape', schema1, undefined, 'schema1'],
    ['schema1 by header', { schemaVersion: 2 }, DOCKER_SCHEMA1_SIGNED_MANIFEST, 'schema1'],
    ['index with application/json header', ociIndex(), 'application/json', 'index'],
  ])('%s', (_name, doc, header, kind) => {
    expect(manifestKind(enc(doc), header)).toBe(kind);
  });

  it('refuses a header and body that disagree, and documents of no known kind', () => {
    expect(codeAndMessage(() => manifestKind(enc(ociIndex()), OCI_IMAGE_MANIFEST))).toMatch(
      /served as application\/vnd.oci.image.manifest.v1\+json but the document is an image index/,
    );
    expect(codeAndMessage(() => manifestKind(enc({ schemaVersion: 2 })))).toMatch(/neither/);
    expect(codeAndMessage(() => manifestKind(enc({ ...ociManifest(), mediaType: 'application/vnd.x+json' })))).toMatch(
      /unsupported manifest media type/,
    );
  });

  it('parses either kind and reports its media type', () => {
    const m = parseManifestOrIndex(enc(dockerManifest()), DOCKER_MANIFEST);
    expect(m.kind).toBe('manifest');
    expect(m.mediaType).toBe(DOCKER_MANIFEST);
    const i = parseManifestOrIndex(enc(edit(ociIndex(), 'mediaType', undefined)), DOCKER_MANIFEST_LIST);
    expect(i.kind).toBe('index');
    expect(i.mediaType).toBe(DOCKER_MANIFEST_LIST);
    if (i.kind === 'index') expect(i.index.manifests).toHaveLength(3);
    const bare = parseManifestOrIndex(enc(edit(ociManifest(), 'mediaType', undefined)));
    expect(bare.mediaType).toBe(OCI_IMAGE_MANIFEST);
  });

  it('refuses schema1 and invalid documents', () => {
    expect(codeAndMessage(() => parseManifestOrIndex(enc(schema1)))).toMatch(/schema 1/);
    expect(codeAndMessage(() => parseManifestOrIndex(enc(edit(ociIndex(), 'manifests.0.size', -1))))).toMatch(
      /manifests\[0\]\.size/,
    );
  });
});
