import { readFileSync } from 'node:fs';
import { TsbuildError } from '../errors.js';
import { isDigest, OCI_IMAGE_INDEX, type Descriptor } from '../oci/index.js';
import { REF_NAME_ANNOTATION } from './types.js';

/**
 * index.json of the layout: parsing with validation, and serialisation. Unknown fields of
 * the index and of its entries are preserved, so a file another tool wrote survives our edits.
 */
export interface LayoutIndex {
  readonly schemaVersion: 2;
  readonly mediaType?: string;
  readonly manifests: readonly Descriptor[];
  readonly annotations?: Readonly<Record<string, string>>;
  readonly [extra: string]: unknown;
}

/** index.json grows with the number of tags; anything beyond this is not one we wrote. */
const MAX_INDEX_BYTES = 64 * 1024 * 1024;

export function emptyLayoutIndex(): LayoutIndex {
  return { schemaVersion: 2, mediaType: OCI_IMAGE_INDEX, manifests: [] };
}

export function serializeLayoutIndex(index: LayoutIndex): string {
  return `${JSON.stringify(index, null, 2)}\n`;
}

/** Read and validate index.json. Never resets a broken file: STORE_CORRUPT instead. */
export async function readLayoutIndex(path: string, signal?: AbortSignal): Promise<LayoutIndex> {
  signal?.throwIfAborted();
  // Synchronous (atomic-file.ts): every command reads it, and it is small.
  const text = readFileSync(path, 'utf8');
  if (text.length > MAX_INDEX_BYTES) throw corrupt(path, `is larger than ${MAX_INDEX_BYTES} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw corrupt(path, 'is not valid JSON', e);
  }
  return validateLayoutIndex(v, path);
}

function validateLayoutIndex(v: unknown, path: string): LayoutIndex {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw corrupt(path, 'is not a JSON object');
  const o = v as Record<string, unknown>;
  if (o.schemaVersion !== 2) throw corrupt(path, 'does not have schemaVersion 2');
  if (!Array.isArray(o.manifests)) throw corrupt(path, 'has no manifests array');
  o.manifests.forEach((m: unknown, i) => {
    const problem = descriptorProblem(m);
    if (problem) throw corrupt(path, `has an invalid entry manifests[${i}]: ${problem}`);
  });
  return o as unknown as LayoutIndex;
}

function descriptorProblem(m: unknown): string | undefined {
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return 'not an object';
  const d = m as Record<string, unknown>;
  if (typeof d.mediaType !== 'string') return 'mediaType is not a string';
  if (typeof d.digest !== 'string' || !isDigest(d.digest)) return 'digest is not a valid digest';
  if (typeof d.size !== 'number' || !Number.isSafeInteger(d.size) || d.size < 0) return 'size is not a non-negative integer';
  if (d.annotations !== undefined) {
    if (typeof d.annotations !== 'object' || d.annotations === null) return 'annotations is not an object';
    for (const val of Object.values(d.annotations)) if (typeof val !== 'string') return 'an annotation is not a string';
  }
  return undefined;
}

function corrupt(path: string, what: string, cause?: unknown): TsbuildError {
  return new TsbuildError('STORE_CORRUPT', `${path} ${what}`, {
    hint: `the store's index of tags is damaged; fix or restore ${path} by hand (tsbuild never resets it, to keep your tags)`,
    cause,
  });
}

export function refNameOf(d: Descriptor): string | undefined {
  return d.annotations?.[REF_NAME_ANNOTATION];
}

/**
 * The grammar of `org.opencontainers.image.ref.name` (annotations.md, pre-defined keys), the
 * same regexp containers/image checks in its oci: transport. Every full reference tsbuild
 * produces (`registry/repo/path:tag`, `...@sha256:...`) matches it.
 */
const REF_NAME_RE = /^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:\/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$/;

export function assertRefName(name: string): void {
  if (name.length === 0 || name.length > 4096 || !REF_NAME_RE.test(name)) {
    throw new TsbuildError('REFERENCE_INVALID', `invalid tag name ${JSON.stringify(name)} for the store`, {
      hint: 'store tags are full references such as docker.io/library/busybox:latest',
    });
  }
}
