import { endianness } from 'node:os';
import { TsbuildError } from '../errors.js';
import { isManifestMediaType } from './media-types.js';
import type { Descriptor, ImageIndex, Platform } from './types.js';

/**
 * Platforms: parsing `--platform` / `FROM --platform` specifiers, normalising, matching, and
 * choosing a manifest from an index. The rules are containerd's (github.com/containerd/platforms:
 * platforms.go Parse/Normalize/NewMatcher, database.go normalizeArch, compare.go Only), which
 * BuildKit, Docker and nerdctl all use, so `linux/arm64` picks the same manifest everywhere.
 */

/** OSes containerd knows (database.go isKnownOS, from Go's syslist.go). */
const KNOWN_OS = new Set([
  'aix', 'android', 'darwin', 'dragonfly', 'freebsd', 'hurd', 'illumos', 'ios', 'js', 'linux',
  'nacl', 'netbsd', 'openbsd', 'plan9', 'solaris', 'windows', 'zos',
]);
/** Architectures containerd knows (database.go isKnownArch). */
const KNOWN_ARCH = new Set([
  '386', 'amd64', 'amd64p32', 'arm', 'armbe', 'arm64', 'arm64be', 'ppc64', 'ppc64le', 'loong64',
  'mips', 'mipsle', 'mips64', 'mips64le', 'mips64p32', 'mips64p32le', 'ppc', 'riscv', 'riscv64',
  's390', 's390x', 'sparc', 'sparc64', 'wasm',
]);

const SPECIFIER_COMPONENT = /^[A-Za-z0-9_.-]+$/;
/** `<os>[(<os.version>[+<os.feature>]*)]` (platforms.go osRe). */
const OS_COMPONENT = /^([A-Za-z0-9_-]+)(?:\(([A-Za-z0-9_.%-]*)((?:\+[A-Za-z0-9_.%-]+)*)\))?$/;

/**
 * The platform of the machine we run on, in OCI terms, normalised (so arm64 has no variant:
 * containerd's Normalize drops the default `v8`, as BuildKit's default platform does).
 * The one place in oci/ that reads the process.
 */
export function hostPlatform(): Platform {
  const os = GOOS[process.platform] ?? process.platform;
  switch (process.arch) {
    case 'arm': {
      // Node records the ARM version it was built for; containerd reads /proc/cpuinfo instead.
      const vars = process.config.variables as Readonly<Record<string, unknown>>;
      const v = vars['arm_version'];
      const variant = typeof v === 'string' || typeof v === 'number' ? `v${v}` : 'v7';
      return normalizePlatform({ os, architecture: 'arm', variant });
    }
    case 'ppc64':
      return { os, architecture: endianness() === 'LE' ? 'ppc64le' : 'ppc64' };
    default:
      return normalizePlatform({ os, architecture: GOARCH[process.arch] ?? process.arch });
  }
}

/**
 * The default platform of images we build: Linux on the host's CPU (images run Linux even when
 * the build is driven from another OS, as BuildKit's default on Docker Desktop).
 */
export function defaultTargetPlatform(): Platform {
  return { ...hostPlatform(), os: 'linux' };
}

/** process.platform -> GOOS */
const GOOS: Readonly<Record<string, string>> = {
  win32: 'windows',
  sunos: 'solaris',
};
/** process.arch -> GOARCH */
const GOARCH: Readonly<Record<string, string>> = {
  x64: 'amd64',
  ia32: '386',
  arm64: 'arm64',
  mipsel: 'mipsle',
  mips64el: 'mips64le',
};

/**
 * Parse a platform specifier: `linux/arm64`, `linux/arm/v7`, `linux/arm64/v8`, `windows(10.0.17763)/amd64`,
 * or just an OS (`linux`: the host's architecture) or just an architecture (`arm64`: the host's OS).
 * As containerd's Parse: names are normalised (`aarch64` -> arm64, `x86_64` -> amd64, `armhf` ->
 * arm/v7, `armel` -> arm/v6, `macos` -> darwin); `linux/arm` gets no variant, `linux/arm64/v8`
 * keeps its explicit v8. Throws PLATFORM_INVALID.
 */
export function parsePlatform(specifier: string): Platform {
  const fail = (why: string): TsbuildError =>
    new TsbuildError('PLATFORM_INVALID', `invalid platform ${JSON.stringify(specifier)}: ${why}`, {
      hint: 'a platform looks like os/arch[/variant], for example linux/amd64 or linux/arm64/v8',
    });
  if (specifier.includes('*')) throw fail('wildcards are not supported');
  const parts = specifier.split('/');
  if (parts.length > 3) throw fail('too many components');
  const [osPart = '', archPart, variantPart] = parts;

  const osMatch = OS_COMPONENT.exec(osPart);
  if (osMatch === null) throw fail(`"${osPart}" is not a valid OS component`);
  for (const part of parts.slice(1)) {
    if (!SPECIFIER_COMPONENT.test(part)) throw fail(`"${part}" is not a valid component`);
  }
  const os = normalizeOs(osMatch[1] ?? '');
  const osVersion = decodeOsOption(osMatch[2] ?? '', fail);
  const osFeatures =
    osMatch[3] === undefined || osMatch[3] === '' ? [] : osMatch[3].slice(1).split('+').map((f) => decodeOsOption(f, fail));
  const extra = {
    ...(osVersion !== '' ? { 'os.version': osVersion } : {}),
    ...(osFeatures.length > 0 ? { 'os.features': osFeatures } : {}),
  };

  if (archPart === undefined) {
    if (KNOWN_OS.has(os)) {
      const host = hostPlatform();
      // containerd: the host arch, with its variant only for arm other than v7.
      const variant = host.architecture === 'arm' && host.variant !== 'v7' ? host.variant : undefined;
      return { architecture: host.architecture, os, ...(variant !== undefined ? { variant } : {}), ...extra };
    }
    const [architecture, variant] = normalizeArch(osPart, '');
    if (!KNOWN_ARCH.has(architecture)) throw fail('unknown operating system or architecture');
    return withVariant({ architecture, os: hostPlatform().os }, architecture === 'arm' && variant === 'v7' ? '' : variant);
  }
  if (variantPart === undefined) {
    const [architecture, variant] = normalizeArch(archPart, '');
    return withVariant({ architecture, os, ...extra }, architecture === 'arm' && variant === 'v7' ? '' : variant);
  }
  const [architecture, variant] = normalizeArch(archPart, variantPart);
  return withVariant({ architecture, os, ...extra }, architecture === 'arm64' && variant === '' ? 'v8' : variant);
}

/**
 * `os/arch[/variant]` (containerd Format); `unknown` without an OS. `os.version` and features are
 * not part of it.
 */
export function formatPlatform(p: Platform): string {
  if (p.os === '') return 'unknown';
  return [p.os, p.architecture, p.variant ?? ''].filter((s) => s !== '').join('/');
}

/**
 * The canonical form used for comparison (containerd Normalize): lowercase names, aliases
 * resolved, default variants dropped (arm64 v8, amd64 v1) or made explicit (arm -> v7),
 * os.features sorted and de-duplicated. Other fields are kept.
 */
export function normalizePlatform(p: Platform): Platform {
  const { variant: _v, 'os.features': features, ...rest } = p;
  const [architecture, variant] = normalizeArch(p.architecture, p.variant ?? '');
  const sortedFeatures = features === undefined || features.length === 0 ? undefined : [...new Set(features)].sort();
  return {
    ...rest,
    os: normalizeOs(p.os),
    architecture,
    ...(variant !== '' ? { variant } : {}),
    ...(sortedFeatures !== undefined ? { 'os.features': sortedFeatures } : {}),
  };
}

/**
 * Whether an image for `have` satisfies a request for `want`, exactly (containerd NewMatcher):
 * same OS, architecture and variant after normalisation, so `linux/arm64` matches `linux/arm64/v8`
 * and `linux/arm` matches `linux/arm/v7`; `have`'s os.features must all be in `want`'s.
 * Windows os.version matching is not implemented (tsbuild builds Linux images).
 */
export function platformMatches(want: Platform, have: Platform): boolean {
  const w = normalizePlatform(want);
  const h = normalizePlatform(have);
  if (w.os !== h.os || w.architecture !== h.architecture || (w.variant ?? '') !== (h.variant ?? '')) return false;
  const wanted = new Set(w['os.features'] ?? []);
  return (h['os.features'] ?? []).every((f) => wanted.has(f));
}

export interface ChoosePlatformOptions {
  /**
   * Only an exact match (containerd OnlyStrict). By default an older compatible platform is
   * accepted when the exact one is missing (containerd Only): amd64 -> 386, arm/v7 -> v6 -> v5,
   * arm64/v8.x -> lower v8 minors -> arm/v8 ... v5, amd64/v3 -> v2 -> v1 -> 386.
   */
  readonly strict?: boolean;
}

/**
 * The manifest of an index to use for `want`: the best match in containerd's preference order,
 * the first such entry in index order on a tie. Entries without a platform, and entries that are not
 * image manifests (nested indexes, anything else), are skipped; attestation manifests carry
 * `unknown/unknown` and never match.
 */
export function choosePlatform(index: ImageIndex, want: Platform, opts: ChoosePlatformOptions = {}): Descriptor | undefined {
  const candidates = index.manifests.filter(
    (d): d is Descriptor & { platform: Platform } => d.platform !== undefined && isManifestMediaType(d.mediaType),
  );
  const preferences = opts.strict === true ? [normalizePlatform(want)] : platformVector(normalizePlatform(want));
  for (const p of preferences) {
    const found = candidates.find((d) => platformMatches(p, d.platform));
    if (found !== undefined) return found;
  }
  return undefined;
}

/**
 * The platforms `platform` can run, best first (containerd compare.go platformVector).
 * Exported for tests and for explaining a "no matching manifest" error.
 */
export function platformVector(platform: Platform): Platform[] {
  const base = { os: platform.os, ...pick(platform) };
  const vector: Platform[] = [platform];
  const versionOf = (variant: string | undefined): number => {
    const s = (variant ?? '').replace(/^v/, '');
    return /^[0-9]+$/.test(s) ? Number(s) : Number.NaN;
  };
  switch (platform.architecture) {
    case 'amd64': {
      const v = versionOf(platform.variant);
      if (v > 1) {
        for (let i = v - 1; i >= 1; i--) vector.push({ ...base, architecture: 'amd64', variant: `v${i}` });
      }
      vector.push({ ...base, architecture: '386' });
      break;
    }
    case 'arm': {
      const v = versionOf(platform.variant);
      if (v > 5) {
        for (let i = v - 1; i >= 5; i--) vector.push({ ...base, architecture: 'arm', variant: `v${i}` });
      }
      break;
    }
    case 'arm64': {
      let variant = platform.variant ?? '';
      if (variant === '') variant = 'v8';
      const dot = variant.indexOf('.');
      const majorText = dot === -1 ? variant : variant.slice(0, dot);
      let major = versionOf(majorText);
      if (major >= 8) {
        let minor = 0;
        if (variant.length === 4 && dot !== -1) {
          const m = variant.slice(dot + 1);
          if (/^[0-9]+$/.test(m)) minor = Number(m);
        }
        if (major === 9) {
          for (let i = minor - 1; i >= 0; i--) {
            vector.push({ ...base, architecture: 'arm64', variant: i === 0 ? 'v9' : `v9.${i}` });
          }
          // v9.0 diverged from v8.5: v9.x runs v8.{x+5}.
          minor += 5;
          major = 8;
          vector.push({ ...base, architecture: 'arm64', variant: `v8.${minor}` });
        }
        for (let i = minor - 1; i >= 0; i--) {
          vector.push({ ...base, architecture: 'arm64', variant: i === 0 ? `v${major}` : `v${major}.${i}` });
        }
      }
      if (variant.startsWith('v8.') || variant.startsWith('v9.')) variant = 'v8';
      vector.push(...platformVector({ ...base, architecture: 'arm', variant }));
      break;
    }
    default:
      break;
  }
  return vector;
}

// ---------------------------------------------------------------------------------------------

function pick(p: Platform): Pick<Platform, 'os.version' | 'os.features'> {
  return {
    ...(p['os.version'] !== undefined ? { 'os.version': p['os.version'] } : {}),
    ...(p['os.features'] !== undefined ? { 'os.features': p['os.features'] } : {}),
  };
}

function withVariant(p: Platform, variant: string): Platform {
  return variant === '' ? p : { ...p, variant };
}

/** containerd normalizeOS; an empty OS means the host's. */
function normalizeOs(os: string): string {
  if (os === '') return hostPlatform().os;
  const lower = os.toLowerCase();
  return lower === 'macos' ? 'darwin' : lower;
}

/** containerd database.go normalizeArch. */
function normalizeArch(archIn: string, variantIn: string): [string, string] {
  let arch = archIn.toLowerCase();
  let variant = variantIn.toLowerCase();
  switch (arch) {
    case 'i386':
      arch = '386';
      variant = '';
      break;
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      arch = 'amd64';
      if (variant === 'v1') variant = '';
      break;
    case 'aarch64':
    case 'arm64':
      arch = 'arm64';
      if (variant === '8' || variant === 'v8') variant = '';
      break;
    case 'armhf':
      arch = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      arch = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant === '' || variant === '7') variant = 'v7';
      else if (variant === '5' || variant === '6' || variant === '8') variant = `v${variant}`;
      break;
    default:
      break;
  }
  return [arch, variant];
}

function decodeOsOption(v: string, fail: (why: string) => TsbuildError): string {
  if (!v.includes('%')) return v;
  try {
    return decodeURIComponent(v);
  } catch {
    throw fail(`bad percent-encoding in "${v}"`);
  }
}
