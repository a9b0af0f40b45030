import type { Digest } from './digest.js';

/**
 * The OCI image documents as they are on the wire.
 *
 * Field names and optionality follow image-spec v1.1:
 *   descriptor.md  https://github.com/opencontainers/image-spec/blob/main/descriptor.md
 *   manifest.md    https://github.com/opencontainers/image-spec/blob/main/manifest.md
 *   image-index.md https://github.com/opencontainers/image-spec/blob/main/image-index.md
 *   config.md      https://github.com/opencontainers/image-spec/blob/main/config.md
 * plus the Docker-only config fields BuildKit and Docker write (Healthcheck, OnBuild, Shell):
 *   https://github.com/moby/docker-image-spec/blob/main/specs-go/v1/image.go
 *
 * Everything is readonly: documents are values; a changed config is a new object (and a new digest).
 * Parsed documents keep fields these types do not name (they are on the object at run time), so a
 * base image's unknown fields survive a `{ ...config, Env }` patch.
 */

/** Platform of a manifest in an index (image-index.md#image-index-property-descriptions). */
export interface Platform {
  /** GOARCH values: amd64, arm64, arm, 386, ppc64le, s390x, riscv64, ... */
  readonly architecture: string;
  /** GOOS values: linux, windows, ... */
  readonly os: string;
  /** CPU variant: v7 for arm, v8 for arm64, v2/v3 for amd64. */
  readonly variant?: string;
  readonly 'os.version'?: string;
  readonly 'os.features'?: readonly string[];
  /** Reserved by the spec; carried through, never acted on. */
  readonly features?: readonly string[];
}

/** A content descriptor (descriptor.md#properties). */
export interface Descriptor {
  readonly mediaType: string;
  readonly digest: Digest;
  /** Size in bytes of the blob; an int64 on the wire, a safe integer here. */
  readonly size: number;
  readonly urls?: readonly string[];
  readonly annotations?: Readonly<Record<string, string>>;
  /** Base64 of the content itself, embedded (descriptor.md#embedded-content). */
  readonly data?: string;
  /** Only on descriptors of manifests inside an index. */
  readonly platform?: Platform;
  readonly artifactType?: string;
}

/** An image manifest (OCI manifest.md, or Docker schema2 which has the same shape). */
export interface ImageManifest {
  readonly schemaVersion: 2;
  /** SHOULD be set for OCI, MUST for Docker schema2; we always write it. */
  readonly mediaType?: string;
  readonly artifactType?: string;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
  readonly subject?: Descriptor;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** An image index (OCI image-index.md) or Docker manifest list. */
export interface ImageIndex {
  readonly schemaVersion: 2;
  readonly mediaType?: string;
  readonly artifactType?: string;
  readonly manifests: readonly Descriptor[];
  readonly subject?: Descriptor;
  readonly annotations?: Readonly<Record<string, string>>;
}

/**
 * Docker's HEALTHCHECK settings (reserved, not defined, by the OCI config: config.md notes the
 * field is kept "to maintain compatibility"). Durations are Go time.Duration: nanoseconds.
 */
export interface Healthcheck {
  /** `[]` inherit, `["NONE"]` disable, `["CMD", args...]`, `["CMD-SHELL", command]`. */
  readonly Test?: readonly string[] | null;
  readonly Interval?: number;
  readonly Timeout?: number;
  readonly StartPeriod?: number;
  readonly StartInterval?: number;
  readonly Retries?: number;
}

/**
 * The execution parameters, the `config` object inside an image config (config.md#properties).
 *
 * Docker and BuildKit write `null` for unset lists and maps (Go nil slices without omitempty), so
 * the wire type admits null; treat null and absent alike.
 */
export interface ContainerConfig {
  readonly User?: string;
  /** Keys are `port/proto` ("8080/tcp"); values are always `{}`. */
  readonly ExposedPorts?: Readonly<Record<string, Readonly<Record<string, never>>>> | null;
  /** `NAME=value` entries. */
  readonly Env?: readonly string[] | null;
  readonly Entrypoint?: readonly string[] | null;
  readonly Cmd?: readonly string[] | null;
  /** Keys are paths; values are always `{}`. */
  readonly Volumes?: Readonly<Record<string, Readonly<Record<string, never>>>> | null;
  readonly WorkingDir?: string;
  readonly Labels?: Readonly<Record<string, string>> | null;
  readonly StopSignal?: string;
  /** Deprecated by OCI; Windows only. */
  readonly ArgsEscaped?: boolean;
  // Docker extensions:
  readonly Healthcheck?: Healthcheck | null;
  readonly OnBuild?: readonly string[] | null;
  readonly Shell?: readonly string[] | null;
}

export interface RootFs {
  readonly type: 'layers';
  /** Digests of the uncompressed layer tars, bottom-most first. */
  readonly diff_ids: readonly Digest[];
}

export interface HistoryEntry {
  /** RFC 3339 date-time. */
  readonly created?: string;
  readonly created_by?: string;
  readonly author?: string;
  readonly comment?: string;
  /** True when the step made no layer (ENV, CMD, ...); such entries have no diff_id. */
  readonly empty_layer?: boolean;
}

/** The image config document (config.md), media type OCI_IMAGE_CONFIG or DOCKER_IMAGE_CONFIG. */
export interface ImageConfig {
  /** RFC 3339 date-time. */
  readonly created?: string;
  readonly author?: string;
  readonly architecture: string;
  readonly os: string;
  readonly 'os.version'?: string;
  readonly 'os.features'?: readonly string[];
  readonly variant?: string;
  readonly config?: ContainerConfig | null;
  readonly rootfs: RootFs;
  readonly history?: readonly HistoryEntry[] | null;
}
