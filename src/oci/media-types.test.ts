import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import {
  DOCKER_FOREIGN_LAYER_TAR_GZIP,
  DOCKER_IMAGE_CONFIG,
  DOCKER_LAYER_TAR,
  DOCKER_LAYER_TAR_GZIP,
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_SCHEMA1_MANIFEST,
  DOCKER_SCHEMA1_SIGNED_MANIFEST,
  isConfigMediaType,
  isIndexMediaType,
  isManifestMediaType,
  isNondistributableLayer,
  isSchema1MediaType,
  layerCompression,
  layerMediaType,
  MANIFEST_ACCEPT,
  normalizeMediaType,
  OCI_EMPTY_JSON,
  OCI_IMAGE_CONFIG,
  OCI_IMAGE_INDEX,
  OCI_IMAGE_MANIFEST,
  OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP,
  OCI_LAYER_TAR,
  OCI_LAYER_TAR_GZIP,
  OCI_LAYER_TAR_ZSTD,
  type LayerCompression,
  type MediaTypeFormat,
} from './media-types.js';

describe('media type predicates', () => {
  it('tells indexes, manifests, schema1 and configs apart', () => {
    expect([OCI_IMAGE_INDEX, DOCKER_MANIFEST_LIST].every(isIndexMediaType)).toBe(true);
    expect([OCI_IMAGE_MANIFEST, DOCKER_MANIFEST].some(isIndexMediaType)).toBe(false);
    expect([OCI_IMAGE_MANIFEST, DOCKER_MANIFEST].every(isManifestMediaType)).toBe(true);
    expect([OCI_IMAGE_INDEX, DOCKER_SCHEMA1_SIGNED_MANIFEST, OCI_IMAGE_CONFIG].some(isManifestMediaType)).toBe(false);
    expect([DOCKER_SCHEMA1_MANIFEST, DOCKER_SCHEMA1_SIGNED_MANIFEST].every(isSchema1MediaType)).toBe(true);
    expect([OCI_IMAGE_CONFIG, DOCKER_IMAGE_CONFIG].every(isConfigMediaType)).toBe(true);
    expect(isConfigMediaType(OCI_EMPTY_JSON)).toBe(false);
  });

  it('accepts header values with parameters and case once normalised', () => {
    expect(normalizeMediaType('Application/VND.OCI.Image.Index.v1+JSON; charset=utf-8')).toBe(OCI_IMAGE_INDEX);
    expect(normalizeMediaType(' application/json ')).toBe('application/json');
  });

  it('Accept list prefers indexes and leaves out schema1', () => {
    expect(MANIFEST_ACCEPT[0]).toBe(OCI_IMAGE_INDEX);
    expect(MANIFEST_ACCEPT.some(isSchema1MediaType)).toBe(false);
    expect(MANIFEST_ACCEPT).toHaveLength(4);
  });
});

describe('layer media types', () => {
  it.each<[string, LayerCompression | undefined]>([
    [OCI_LAYER_TAR, 'uncompressed'],
    [OCI_LAYER_TAR_GZIP, 'gzip'],
    [OCI_LAYER_TAR_ZSTD, 'zstd'],
    [OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP, 'gzip'],
    [DOCKER_LAYER_TAR_GZIP, 'gzip'],
    [DOCKER_LAYER_TAR, 'uncompressed'],
    [DOCKER_FOREIGN_LAYER_TAR_GZIP, 'gzip'],
    ['application/vnd.oci.image.layer.v1.tar+gzip+encrypted', undefined],
    [OCI_IMAGE_CONFIG, undefined],
  ])('layerCompression(%s) = %s', (mt, c) => {
    expect(layerCompression(mt)).toBe(c);
  });

  it.each<[MediaTypeFormat, LayerCompression, string]>([
    ['oci', 'gzip', OCI_LAYER_TAR_GZIP],
    ['oci', 'zstd', OCI_LAYER_TAR_ZSTD],
    ['oci', 'uncompressed', OCI_LAYER_TAR],
    ['docker', 'gzip', DOCKER_LAYER_TAR_GZIP],
    ['docker', 'uncompressed', DOCKER_LAYER_TAR],
  ])('layerMediaType(%s, %s) round-trips', (format, compression, mt) => {
    expect(layerMediaType(format, compression)).toBe(mt);
    expect(layerCompression(mt)).toBe(compression);
  });

  it('refuses zstd with Docker media types', () => {
    expect(() => layerMediaType('docker', 'zstd')).toThrow(TsbuildError);
    try {
      layerMediaType('docker', 'zstd');
    } catch (e) {
      expect((e as TsbuildError).code).toBe('UNSUPPORTED');
    }
  });

  it('marks foreign and non-distributable layers', () => {
    expect(isNondistributableLayer(DOCKER_FOREIGN_LAYER_TAR_GZIP)).toBe(true);
    expect(isNondistributableLayer(OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP)).toBe(true);
    expect(isNondistributableLayer(OCI_LAYER_TAR_GZIP)).toBe(false);
  });
});
