import { TsbuildError } from '../errors.js';
import { parseJsonCapped } from './canonical-json.js';
import { digestAlgorithm, digestBytes, isDigest } from './digest.js';
import {
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  isIndexMediaType,
  isManifestMediaType,
  isSchema1MediaType,
  normalizeMediaType,
  OCI_IMAGE_INDEX,
  OCI_IMAGE_MANIFEST,
} from './media-types.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform } from './types.js';

/**
 * Validation of manifests, indexes and configs read from registries, archives and the store.
 *
 * These check what we rely on, with a message that says where the document is wrong; they are not
 * a full JSON-schema check. A validated document is returned as parsed, unknown fields included.
 * Specs: https://github.com/opencontainers/image-spec (manifest.md, image-index.md, config.md,
 * descriptor.md) and Docker's manifest-v2-2.md.
 */

/**
 * Largest manifest or index we accept. Registries must accept manifests of at least 4 MB
 * (distribution spec, "pushing manifests") and containerd refuses larger ones, so nothing larger
 * can be pulled by the usual tools anyway.
 */
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;
/** Largest image config we accept: configs grow with history; real ones stay well under 1 MiB. */
export const MAX_CONFIG_BYTES = 8 * 1024 * 1024;

export type ManifestKind = 'index' | 'manifest' | 'schema1';

export interface ParseDocumentOptions {
  /** Names the document in errors, e.g. `manifest docker.io/library/busybox:latest`. */
  readonly what?: string;
  readonly maxBytes?: number;
  /**
   * The media type we were told the document has (the Content-Type of the response, or the
   * descriptor that pointed at it). A `mediaType` field in the document must agree with it.
   */
  readonly mediaType?: string;
}

export type ParsedManifestOrIndex =
  | { readonly kind: 'manifest'; readonly mediaType: string; readonly manifest: ImageManifest }
  | { readonly kind: 'index'; readonly mediaType: string; readonly index: ImageIndex };

const SCHEMA1_HINT =
  'Docker image manifest schema 1 was deprecated in 2017 and is not supported; copy the image to a ' +
  'schema 2 or OCI manifest first (for example `skopeo copy --format v2s2 docker://SRC docker://DEST`)';

/**
 * Whether manifest bytes hold an index, an image manifest or a schema1 manifest: by the document's
 * own `mediaType`, else by the Content-Type header, else by its shape (`manifests` vs `config` and
 * `layers` vs `fsLayers`). A header and a body that disagree are an error.
 */
export function manifestKind(bytes: Uint8Array, contentTypeHeader?: string): ManifestKind {
  const what = 'manifest';
  return kindOf(asObject(parseJsonCapped(bytes, MAX_MANIFEST_BYTES, what), what), contentTypeHeader, what);
}

/**
 * Parse whatever a manifest request returned: an index or an image manifest. Schema1 is refused.
 * `mediaType` of the result is the document's type (from its body, else the header, else by
 * shape: OCI when the document does not say).
 */
export function parseManifestOrIndex(
  bytes: Uint8Array,
  contentTypeHeader?: string,
  opts: Omit<ParseDocumentOptions, 'mediaType'> = {},
): ParsedManifestOrIndex {
  const what = opts.what ?? 'manifest';
  const value = asObject(parseJsonCapped(bytes, opts.maxBytes ?? MAX_MANIFEST_BYTES, what), what);
  const kind = kindOf(value, contentTypeHeader, what);
  const header = contentTypeHeader === undefined ? undefined : normalizeMediaType(contentTypeHeader);
  const declared = typeof value['mediaType'] === 'string' ? value['mediaType'] : undefined;
  switch (kind) {
    case 'schema1':
      throw schema1Error(what);
    case 'manifest': {
      const manifest = validateManifest(value, what, undefined);
      const mediaType = declared ?? (header !== undefined && isManifestMediaType(header) ? header : OCI_IMAGE_MANIFEST);
      return { kind, mediaType, manifest };
    }
    case 'index': {
      const index = validateIndex(value, what, undefined);
      const mediaType = declared ?? (header !== undefined && isIndexMediaType(header) ? header : OCI_IMAGE_INDEX);
      return { kind, mediaType, index };
    }
  }
}

/** Parse and check an image manifest (OCI or Docker schema2). */
export function parseImageManifest(bytes: Uint8Array, opts: ParseDocumentOptions = {}): ImageManifest {
  const what = opts.what ?? 'image manifest';
  const value = asObject(parseJsonCapped(bytes, opts.maxBytes ?? MAX_MANIFEST_BYTES, what), what);
  return validateManifest(value, what, opts.mediaType);
}

/** Parse and check an image index (OCI) or manifest list (Docker). */
export function parseImageIndex(bytes: Uint8Array, opts: ParseDocumentOptions = {}): ImageIndex {
  const what = opts.what ?? 'image index';
  const value = asObject(parseJsonCapped(bytes, opts.maxBytes ?? MAX_MANIFEST_BYTES, what), what);
  return validateIndex(value, what, opts.mediaType);
}

/** Parse and check an image config (config.md; Docker's config is the same document). */
export function parseImageConfig(bytes: Uint8Array, opts: Omit<ParseDocumentOptions, 'mediaType'> = {}): ImageConfig {
  const what = opts.what ?? 'image config';
  const value = asObject(parseJsonCapped(bytes, opts.maxBytes ?? MAX_CONFIG_BYTES, what), what);
  return validateConfig(value, what);
}

/** Check one descriptor (descriptor.md); `what` names it in errors, e.g. `manifest: layers[0]`. */
function validateDescriptor(value: unknown, what: string): Descriptor {
  const d = asObject(value, what);
  requireMediaType(d['mediaType'], `${what}.mediaType`);
  const digest = d['digest'];
  if (typeof digest !== 'string' || !isDigest(digest)) {
    throw invalid(
      `${what}.digest: ${typeof digest === 'string' ? `unsupported or malformed digest ${JSON.stringify(digest)}` : 'missing'}`,
    );
  }
  const size = d['size'];
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw invalid(`${what}.size: ${size === undefined ? 'missing' : 'must be a non-negative integer'}`);
  }
  optionalStringArray(d['urls'], `${what}.urls`, false);
  optionalStringMap(d['annotations'], `${what}.annotations`, false);
  if (d['artifactType'] !== undefined) requireMediaType(d['artifactType'], `${what}.artifactType`);
  if (d['platform'] !== undefined) validatePlatform(d['platform'], `${what}.platform`);
  const data = d['data'];
  if (data !== undefined) {
    // Embedded content MUST match the digest and size (descriptor.md#embedded-content).
    if (typeof data !== 'string' || !BASE64.test(data)) throw invalid(`${what}.data: not base64`);
    const bytes = Buffer.from(data, 'base64');
    if (bytes.byteLength !== size || digestBytes(bytes, digestAlgorithm(digest)) !== digest) {
      throw invalid(`${what}.data: embedded content does not match the descriptor's digest and size`);
    }
  }
  return d as unknown as Descriptor;
}

/** Check a platform object (image-index.md, `platform`). */
function validatePlatform(value: unknown, what: string): Platform {
  const p = asObject(value, what);
  requireString(p['architecture'], `${what}.architecture`);
  requireString(p['os'], `${what}.os`);
  optionalString(p['variant'], `${what}.variant`);
  optionalString(p['os.version'], `${what}.os.version`);
  optionalStringArray(p['os.features'], `${what}.os.features`, false);
  optionalStringArray(p['features'], `${what}.features`, false);
  return p as unknown as Platform;
}

// ---------------------------------------------------------------------------------------------

function kindOf(value: Record<string, unknown>, contentTypeHeader: string | undefined, what: string): ManifestKind {
  const declared = value['mediaType'];
  let bodyKind: ManifestKind | undefined;
  if (declared !== undefined) {
    if (typeof declared !== 'string') throw invalid(`${what}.mediaType: must be a string`);
    bodyKind = kindOfMediaType(declared);
    if (bodyKind === undefined) {
      throw invalid(`${what}: unsupported manifest media type ${JSON.stringify(declared)}`);
    }
  } else if (value['schemaVersion'] === 1 || 'fsLayers' in value || 'signatures' in value) {
    bodyKind = 'schema1';
  } else if ('manifests' in value) {
    bodyKind = 'index';
  } else if ('config' in value || 'layers' in value) {
    bodyKind = 'manifest';
  }
  // Registries add parameters and some send application/json or octet-stream: only a known
  // manifest type in the header counts.
  const headerKind = contentTypeHeader === undefined ? undefined : kindOfMediaType(normalizeMediaType(contentTypeHeader));
  if (bodyKind !== undefined && headerKind !== undefined && bodyKind !== headerKind) {
    throw invalid(`${what}: served as ${normalizeMediaType(contentTypeHeader ?? '')} but the document is ${describeKind(bodyKind)}`);
  }
  const kind = bodyKind ?? headerKind;
  if (kind === undefined) throw invalid(`${what}: neither an image manifest nor an image index`);
  return kind;
}

function kindOfMediaType(mediaType: string): ManifestKind | undefined {
  if (isIndexMediaType(mediaType)) return 'index';
  if (isManifestMediaType(mediaType)) return 'manifest';
  if (isSchema1MediaType(mediaType)) return 'schema1';
  return undefined;
}

function describeKind(kind: ManifestKind): string {
  switch (kind) {
    case 'index':
      return 'an image index';
    case 'manifest':
      return 'an image manifest';
    case 'schema1':
      return 'a schema 1 manifest';
  }
}

function validateManifest(m: Record<string, unknown>, what: string, expected: string | undefined): ImageManifest {
  if (m['schemaVersion'] === 1 || 'fsLayers' in m) throw schema1Error(what);
  const mediaType = checkDocumentMediaType(m, what, expected, 'manifest');
  requireSchemaVersion2(m, what);
  if (mediaType === undefined && 'manifests' in m) {
    throw invalid(`${what}: this is an image index, not an image manifest`);
  }
  validateDescriptor(m['config'], `${what}: config`);
  const layers = m['layers'];
  if (!Array.isArray(layers)) throw invalid(`${what}: layers: ${layers === undefined ? 'missing' : 'must be an array'}`);
  layers.forEach((layer: unknown, i) => validateDescriptor(layer, `${what}: layers[${i}]`));
  // An empty `layers` is valid: FROM scratch with only config changes, and OCI 1.1 artifacts.
  commonOptionalFields(m, what);
  return m as unknown as ImageManifest;
}

function validateIndex(x: Record<string, unknown>, what: string, expected: string | undefined): ImageIndex {
  if (x['schemaVersion'] === 1 || 'fsLayers' in x) throw schema1Error(what);
  const mediaType = checkDocumentMediaType(x, what, expected, 'index');
  requireSchemaVersion2(x, what);
  const manifests = x['manifests'];
  if (!Array.isArray(manifests)) {
    if (mediaType === undefined && ('config' in x || 'layers' in x)) {
      throw invalid(`${what}: this is an image manifest, not an image index`);
    }
    throw invalid(`${what}: manifests: ${manifests === undefined ? 'missing' : 'must be an array'}`);
  }
  manifests.forEach((d: unknown, i) => validateDescriptor(d, `${what}: manifests[${i}]`));
  commonOptionalFields(x, what);
  return x as unknown as ImageIndex;
}

/**
 * The document's own `mediaType` must be of the expected kind and agree with what we were told.
 * Absent is allowed for OCI (manifest.md: "SHOULD be used"); returns the value when present.
 */
function checkDocumentMediaType(
  doc: Record<string, unknown>,
  what: string,
  expected: string | undefined,
  kind: 'manifest' | 'index',
): string | undefined {
  const declared = doc['mediaType'];
  const expectedType = expected === undefined ? undefined : normalizeMediaType(expected);
  const fits = kind === 'manifest' ? isManifestMediaType : isIndexMediaType;
  const other = kind === 'manifest' ? 'an image index' : 'an image manifest';
  const wanted = kind === 'manifest' ? `${OCI_IMAGE_MANIFEST} or ${DOCKER_MANIFEST}` : `${OCI_IMAGE_INDEX} or ${DOCKER_MANIFEST_LIST}`;
  if (expectedType !== undefined && !fits(expectedType)) {
    if (isSchema1MediaType(expectedType)) throw schema1Error(what);
    throw invalid(`${what}: media type ${expectedType} is not ${wanted}`);
  }
  if (declared === undefined) return undefined;
  if (typeof declared !== 'string') throw invalid(`${what}.mediaType: must be a string`);
  if (isSchema1MediaType(declared)) throw schema1Error(what);
  if (!fits(declared)) {
    const isOther = kind === 'manifest' ? isIndexMediaType(declared) : isManifestMediaType(declared);
    throw invalid(
      isOther
        ? `${what}: this is ${other} (${declared})`
        : `${what}.mediaType: ${JSON.stringify(declared)} is not ${wanted}`,
    );
  }
  if (expectedType !== undefined && declared !== expectedType) {
    throw invalid(`${what}: mediaType ${declared} does not match the expected ${expectedType}`);
  }
  return declared;
}

function requireSchemaVersion2(doc: Record<string, unknown>, what: string): void {
  const v = doc['schemaVersion'];
  if (v !== 2) {
    throw invalid(`${what}.schemaVersion: ${v === undefined ? 'missing' : `must be 2, got ${JSON.stringify(v)}`}`);
  }
}

function commonOptionalFields(doc: Record<string, unknown>, what: string): void {
  if (doc['artifactType'] !== undefined) requireMediaType(doc['artifactType'], `${what}.artifactType`);
  if (doc['subject'] !== undefined) validateDescriptor(doc['subject'], `${what}: subject`);
  optionalStringMap(doc['annotations'], `${what}.annotations`, false);
}

function validateConfig(c: Record<string, unknown>, what: string): ImageConfig {
  requireString(c['architecture'], `${what}.architecture`);
  requireString(c['os'], `${what}.os`);
  optionalString(c['variant'], `${what}.variant`);
  optionalString(c['os.version'], `${what}.os.version`);
  optionalStringArray(c['os.features'], `${what}.os.features`, false);
  optionalString(c['author'], `${what}.author`);
  optionalTimestamp(c['created'], `${what}.created`);

  const rootfs = c['rootfs'];
  if (rootfs === undefined) throw invalid(`${what}.rootfs: missing`);
  const r = asObject(rootfs, `${what}.rootfs`);
  if (r['type'] !== 'layers') throw invalid(`${what}.rootfs.type: must be "layers"`);
  const diffIds = r['diff_ids'];
  if (!Array.isArray(diffIds)) throw invalid(`${what}.rootfs.diff_ids: must be an array`);
  diffIds.forEach((d: unknown, i) => {
    if (typeof d !== 'string' || !isDigest(d)) throw invalid(`${what}.rootfs.diff_ids[${i}]: not a digest`);
  });

  const config = c['config'];
  if (config !== undefined && config !== null) validateContainerConfig(asObject(config, `${what}.config`), `${what}.config`);

  const history = c['history'];
  if (history !== undefined && history !== null) {
    if (!Array.isArray(history)) throw invalid(`${what}.history: must be an array`);
    history.forEach((h: unknown, i) => {
      const at = `${what}.history[${i}]`;
      const e = asObject(h, at);
      optionalTimestamp(e['created'], `${at}.created`);
      optionalString(e['created_by'], `${at}.created_by`);
      optionalString(e['author'], `${at}.author`);
      optionalString(e['comment'], `${at}.comment`);
      if (e['empty_layer'] !== undefined && typeof e['empty_layer'] !== 'boolean') {
        throw invalid(`${at}.empty_layer: must be a boolean`);
      }
    });
  }
  return c as unknown as ImageConfig;
}

function validateContainerConfig(cc: Record<string, unknown>, what: string): void {
  optionalString(cc['User'], `${what}.User`);
  optionalString(cc['WorkingDir'], `${what}.WorkingDir`);
  optionalString(cc['StopSignal'], `${what}.StopSignal`);
  for (const key of ['Env', 'Entrypoint', 'Cmd', 'OnBuild', 'Shell']) {
    optionalStringArray(cc[key], `${what}.${key}`, true);
  }
  optionalStringMap(cc['Labels'], `${what}.Labels`, true);
  for (const key of ['ExposedPorts', 'Volumes']) {
    const set = cc[key];
    if (set === undefined || set === null) continue;
    const o = asObject(set, `${what}.${key}`);
    for (const [k, v] of Object.entries(o)) {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) {
        throw invalid(`${what}.${key}[${JSON.stringify(k)}]: must be {}`);
      }
    }
  }
  if (cc['ArgsEscaped'] !== undefined && typeof cc['ArgsEscaped'] !== 'boolean') {
    throw invalid(`${what}.ArgsEscaped: must be a boolean`);
  }
  const hc = cc['Healthcheck'];
  if (hc !== undefined && hc !== null) {
    const h = asObject(hc, `${what}.Healthcheck`);
    optionalStringArray(h['Test'], `${what}.Healthcheck.Test`, true);
    for (const key of ['Interval', 'Timeout', 'StartPeriod', 'StartInterval', 'Retries']) {
      const n = h[key];
      if (n !== undefined && (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0)) {
        throw invalid(`${what}.Healthcheck.${key}: must be a non-negative integer`);
      }
    }
  }
}

// --- small checks ------------------------------------------------------------------------------

/** RFC 6838 section 4.2, as image-spec's schema/defs-descriptor.json checks it. */
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;
/** RFC 3339 date-time (config.md: created is "formatted as defined by RFC 3339, section 5.6"). */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function invalid(message: string): TsbuildError {
  return new TsbuildError('MANIFEST_INVALID', message);
}

function schema1Error(what: string): TsbuildError {
  return new TsbuildError('MANIFEST_INVALID', `${what}: Docker image manifest schema 1 is not supported`, {
    hint: SCHEMA1_HINT,
  });
}

function asObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(`${what}: ${value === undefined ? 'missing' : 'must be a JSON object'}`);
  }
  return value as Record<string, unknown>;
}

function requireString(value: unknown, what: string): void {
  if (typeof value !== 'string' || value === '') {
    throw invalid(`${what}: ${value === undefined ? 'missing' : 'must be a non-empty string'}`);
  }
}

function requireMediaType(value: unknown, what: string): void {
  if (typeof value !== 'string' || !MEDIA_TYPE.test(value)) {
    throw invalid(`${what}: ${value === undefined ? 'missing' : `not a media type: ${JSON.stringify(value)}`}`);
  }
}

function optionalString(value: unknown, what: string): void {
  if (value !== undefined && typeof value !== 'string') throw invalid(`${what}: must be a string`);
}

function optionalTimestamp(value: unknown, what: string): void {
  if (value === undefined) return;
  if (typeof value !== 'string' || !RFC3339.test(value)) throw invalid(`${what}: not an RFC 3339 date-time`);
}

function optionalStringArray(value: unknown, what: string, nullable: boolean): void {
  if (value === undefined || (nullable && value === null)) return;
  if (!Array.isArray(value) || !value.every((s) => typeof s === 'string')) {
    throw invalid(`${what}: must be an array of strings`);
  }
}

function optionalStringMap(value: unknown, what: string, nullable: boolean): void {
  if (value === undefined || (nullable && value === null)) return;
  const o = asObject(value, what);
  for (const [k, v] of Object.entries(o)) {
    if (typeof v !== 'string') throw invalid(`${what}[${JSON.stringify(k)}]: must be a string`);
  }
}
