import { TsbuildError } from '../errors.js';
import { isDigest, type Digest } from './digest.js';

/**
 * Image references, parsed and normalised exactly as Docker does it, following
 * github.com/distribution/reference (regexp.go for the grammar, reference.go for Parse,
 * normalize.go for ParseNormalizedNamed and the docker.io / library/ rules):
 *
 *   busybox                  -> docker.io/library/busybox          (tag added by withDefaultTag)
 *   user/app:v2              -> docker.io/user/app:v2
 *   index.docker.io/busybox  -> docker.io/library/busybox
 *   localhost/x, host:5000/a/b:tag, [::1]:5000/x@sha256:...
 *
 * A reference may carry both a tag and a digest (`name:tag@sha256:...`); both are kept, and the
 * digest is what a pull must fetch (Docker's ParseDockerRef drops the tag for the same reason).
 */
export interface Reference {
  /** Registry host with optional port, normalised: `docker.io` for Docker Hub. */
  readonly registry: string;
  /** The repository path on that registry: `library/busybox`, `user/app`. */
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: Digest;
}

export const DOCKER_HUB_REGISTRY = 'docker.io';
/** Where Docker Hub's registry API actually lives (normalize.go, comment on defaultDomain). */
const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
const LEGACY_DOCKER_HUB = 'index.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';
const DEFAULT_TAG = 'latest';
/** reference.go RepositoryNameTotalLengthMax, checked against the path, not the domain. */
const MAX_REPOSITORY_LENGTH = 255;

// --- grammar: a transcription of regexp.go (Go RE2 leftmost-first = JS backtracking here) ---
const alphanumeric = '[a-z0-9]+';
const separator = '(?:[._]|__|[-]+)';
const domainNameComponent = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const optionalPort = '(?::[0-9]+)?';
const tagPat = '[\\w][\\w.-]{0,127}';
const digestPat = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}';
const ipv6address = '\\[(?:[a-fA-F0-9:]+)\\]';
const domainName = `${domainNameComponent}(?:\\.${domainNameComponent})*`;
const host = `(?:${domainName}|${ipv6address})`;
const domainAndPort = host + optionalPort;
const pathComponent = `${alphanumeric}(?:${separator}${alphanumeric})*`;
const remoteName = `${pathComponent}(?:/${pathComponent})*`;
const namePat = `(?:${domainAndPort}/)?${remoteName}`;

const REFERENCE_RE = new RegExp(`^(${namePat})(?::(${tagPat}))?(?:@(${digestPat}))?$`);
const ANCHORED_NAME_RE = new RegExp(`^(?:(${domainAndPort})/)?(${remoteName})$`);
const TAG_RE = new RegExp(`^${tagPat}$`);
const DIGEST_SHAPE_RE = new RegExp(`^${digestPat}$`);
const IDENTIFIER_RE = /^[a-f0-9]{64}$/;
const REMOTE_NAME_RE = new RegExp(`^${remoteName}$`);
const DOMAIN_RE = new RegExp(`^${domainAndPort}$`);

/**
 * Parse a reference as `docker pull`/`docker tag` would (ParseNormalizedNamed). No tag is added:
 * use `withDefaultTag` where a missing tag means `latest`.
 *
 * Throws REFERENCE_INVALID with `invalid reference "X": <why>`.
 */
export function parseReference(s: string): Reference {
  const fail = (why: string): TsbuildError =>
    new TsbuildError('REFERENCE_INVALID', `invalid reference ${JSON.stringify(s)}: ${why}`, {
      hint: 'a reference looks like [registry[:port]/]repository[:tag][@sha256:digest], repository in lowercase',
    });
  if (s === '') throw fail('empty reference');
  if (IDENTIFIER_RE.test(s)) throw fail('cannot specify 64-byte hexadecimal strings as a repository name');

  const { domain, remainder } = splitDockerDomain(s);
  // The repository part must be lowercase; say so rather than "invalid format".
  const remote = remainder.split(/[:@]/, 1)[0] ?? '';
  if (remote.toLowerCase() !== remote) throw fail(`repository name "${remote}" must be lowercase`);

  const full = `${domain}/${remainder}`;
  const m = REFERENCE_RE.exec(full);
  if (m === null) throw fail(diagnose(domain, remainder));
  const name = m[1] ?? '';
  const tag = m[2];
  const digestText = m[3];

  const nm = ANCHORED_NAME_RE.exec(name);
  const registry = nm?.[1] ?? '';
  const repository = nm?.[2] ?? name;
  if (repository.length > MAX_REPOSITORY_LENGTH) {
    throw fail(`repository name must not be more than ${MAX_REPOSITORY_LENGTH} characters`);
  }

  let digest: Digest | undefined;
  if (digestText !== undefined) digest = checkDigest(digestText, fail);

  return {
    registry,
    repository,
    ...(tag !== undefined ? { tag } : {}),
    ...(digest !== undefined ? { digest } : {}),
  };
}

/** Add the `latest` tag when the reference has neither a tag nor a digest (TagNameOnly). */
export function withDefaultTag(ref: Reference): Reference {
  if (ref.tag !== undefined || ref.digest !== undefined) return ref;
  return { ...ref, tag: DEFAULT_TAG };
}

/** The fully qualified form: `docker.io/library/busybox:latest`, `host:5000/a/b@sha256:...`. */
export function formatReference(ref: Reference): string {
  return `${ref.registry}/${ref.repository}${suffix(ref)}`;
}

/** `registry/repository` without tag or digest (the key for a repository's blobs and tags). */
export function repositoryName(ref: Reference): string {
  return `${ref.registry}/${ref.repository}`;
}

/**
 * Docker's short form, as `docker images` shows it (FamiliarString, i.e. with tag and digest):
 * `docker.io/library/busybox:latest` -> `busybox:latest`, `docker.io/user/app` -> `user/app`.
 * `library/` is dropped only for single-component names, as familiarizeName does.
 */
export function familiarName(ref: Reference): string {
  let name = formatReference({ registry: ref.registry, repository: ref.repository });
  if (ref.registry === DOCKER_HUB_REGISTRY) {
    name = ref.repository;
    if (name.startsWith(OFFICIAL_REPO_PREFIX)) {
      const rest = name.slice(OFFICIAL_REPO_PREFIX.length);
      if (!rest.includes('/')) name = rest;
    }
  }
  return name + suffix(ref);
}

/** Canonical registry name: `index.docker.io` (Docker Hub's legacy name) becomes `docker.io`. */
export function normalizeRegistry(registry: string): string {
  return registry === LEGACY_DOCKER_HUB ? DOCKER_HUB_REGISTRY : registry;
}

/**
 * The host (and port) that serves the registry API for a registry name: Docker Hub's images are
 * named `docker.io/...` but its API is at `registry-1.docker.io`.
 */
export function registryApiHost(registry: string): string {
  const r = normalizeRegistry(registry);
  return r === DOCKER_HUB_REGISTRY ? DOCKER_HUB_API_HOST : r;
}

/**
 * True for registries on this machine: `localhost`, 127.0.0.0/8 and `[::1]`, with or without a
 * port. Docker talks plain HTTP to these by default (DESIGN.md; moby's
 * registry/config.go isSecureIndex treats loopback as insecure).
 */
export function isLoopbackRegistry(registry: string): boolean {
  const hostname = stripPort(registry).toLowerCase();
  if (hostname === 'localhost') return true;
  if (hostname.startsWith('[') && hostname.endsWith(']')) return isIpv6Loopback(hostname.slice(1, -1));
  if (hostname.includes(':')) return isIpv6Loopback(hostname); // bare IPv6 without a port
  const octets = hostname.split('.');
  return (
    octets.length === 4 &&
    octets[0] === '127' &&
    octets.every((o) => /^(?:0|[1-9][0-9]{0,2})$/.test(o) && Number(o) <= 255)
  );
}

// ---------------------------------------------------------------------------------------------

function suffix(ref: Reference): string {
  return (ref.tag !== undefined ? `:${ref.tag}` : '') + (ref.digest !== undefined ? `@${ref.digest}` : '');
}

/**
 * normalize.go splitDockerDomain: the first path component is a registry when it is `localhost`,
 * contains `.` or `:`, or has uppercase letters (repository names cannot); otherwise the
 * reference is on Docker Hub, and single names get `library/`.
 */
function splitDockerDomain(name: string): { domain: string; remainder: string } {
  const slash = name.indexOf('/');
  if (slash === -1) return { domain: DOCKER_HUB_REGISTRY, remainder: OFFICIAL_REPO_PREFIX + name };
  const maybeDomain = name.slice(0, slash);
  const maybeRemainder = name.slice(slash + 1);
  let domain: string;
  let remainder: string;
  if (maybeDomain === 'localhost') {
    [domain, remainder] = [maybeDomain, maybeRemainder];
  } else if (maybeDomain === LEGACY_DOCKER_HUB) {
    [domain, remainder] = [DOCKER_HUB_REGISTRY, maybeRemainder];
  } else if (maybeDomain.includes('.') || maybeDomain.includes(':')) {
    [domain, remainder] = [maybeDomain, maybeRemainder];
  } else if (maybeDomain.toLowerCase() !== maybeDomain) {
    [domain, remainder] = [maybeDomain, maybeRemainder];
  } else {
    [domain, remainder] = [DOCKER_HUB_REGISTRY, name];
  }
  if (domain === DOCKER_HUB_REGISTRY && !remainder.includes('/')) {
    remainder = OFFICIAL_REPO_PREFIX + remainder;
  }
  return { domain, remainder };
}

/** Why `domain/remainder` does not match the grammar, as specifically as we can tell. */
function diagnose(domain: string, remainder: string): string {
  const at = remainder.indexOf('@');
  const beforeDigest = at === -1 ? remainder : remainder.slice(0, at);
  const digestText = at === -1 ? undefined : remainder.slice(at + 1);
  const colon = beforeDigest.lastIndexOf(':');
  const tag = colon === -1 ? undefined : beforeDigest.slice(colon + 1);
  const path = colon === -1 ? beforeDigest : beforeDigest.slice(0, colon);
  if (!DOMAIN_RE.test(domain)) return `invalid registry host "${domain}"`;
  if (path === '') return 'repository name must have at least one component';
  if (!REMOTE_NAME_RE.test(path)) {
    return `invalid repository name "${path}": components are lowercase letters and digits, separated by one ".", one or two "_", or "-"s, joined by "/"`;
  }
  if (tag !== undefined && !TAG_RE.test(tag)) {
    return `invalid tag "${tag}": up to 128 letters, digits, "_", "." and "-", not starting with "." or "-"`;
  }
  if (digestText !== undefined && !DIGEST_SHAPE_RE.test(digestText)) {
    return `invalid digest "${digestText}"`;
  }
  return 'invalid reference format';
}

/** go-digest Parse: a known algorithm with the right number of lowercase hex characters. */
function checkDigest(text: string, fail: (why: string) => TsbuildError): Digest {
  if (isDigest(text)) return text;
  const colon = text.indexOf(':');
  const algorithm = text.slice(0, colon);
  const hex = text.slice(colon + 1);
  const expected = algorithm === 'sha256' ? 64 : algorithm === 'sha512' ? 128 : undefined;
  if (expected === undefined) throw fail(`unsupported digest algorithm "${algorithm}"`);
  if (hex.length !== expected) throw fail(`invalid ${algorithm} digest length (${hex.length} hex characters, want ${expected})`);
  throw fail(`invalid digest "${text}": hex must be lowercase`);
}

function stripPort(hostport: string): string {
  if (hostport.startsWith('[')) {
    const close = hostport.indexOf(']');
    return close === -1 ? hostport : hostport.slice(0, close + 1);
  }
  const colon = hostport.indexOf(':');
  // More than one colon without brackets: a bare IPv6 address, no port.
  if (colon === -1 || hostport.indexOf(':', colon + 1) !== -1) return hostport;
  return hostport.slice(0, colon);
}

/** ::1 in any spelling (0:0:0:0:0:0:0:1, ::0:1, ...). */
function isIpv6Loopback(addr: string): boolean {
  if (!/^[0-9a-f:]+$/.test(addr)) return false;
  const halves = addr.split('::');
  if (halves.length > 2) return false;
  const head = halves[0] === '' || halves[0] === undefined ? [] : halves[0].split(':');
  const tail = halves.length === 2 ? (halves[1] === '' || halves[1] === undefined ? [] : halves[1].split(':')) : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 && missing < 1) return false;
  const groups = halves.length === 2 ? [...head, ...Array<string>(missing).fill('0'), ...tail] : head;
  if (groups.length !== 8 || groups.some((g) => g === '' || g.length > 4)) return false;
  return groups.every((g, i) => Number.parseInt(g, 16) === (i === 7 ? 1 : 0));
}
