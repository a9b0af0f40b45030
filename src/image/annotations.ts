/**
 * `--annotation [TYPE[,TYPE...][[PLATFORM]]:]KEY=VALUE`, buildx's grammar
 * (docs.docker.com/reference/cli/docker/buildx/build/#annotation): without a type the
 * annotation goes on the image manifest; `manifest-descriptor` puts it on the manifest's
 * descriptor in the index of an OCI output (index.json). `index` and `index-descriptor` need an
 * image index, which a single-platform build does not make: they are refused, as BuildKit
 * refuses them for a single-platform export. A `[PLATFORM]` selector keeps the annotation only
 * when it names the platform built.
 */
import { TsbuildError } from '../errors.js';
import { parsePlatform, platformMatches, type Platform } from '../oci/index.js';

export interface ImageAnnotations {
  readonly manifest: Readonly<Record<string, string>>;
  readonly manifestDescriptor: Readonly<Record<string, string>>;
}

const TYPES = new Set(['manifest', 'manifest-descriptor', 'index', 'index-descriptor']);
const KEY_RE = /^(?:([a-z-]+(?:,[a-z-]+)*)(?:\[([A-Za-z0-9_/.-]+)\])?:)?(\S+)$/;

/** Parses the `--annotation` flags for a build of `platform`. Errors are USAGE, naming the flag. */
export function parseAnnotations(list: readonly string[], platform: Platform): ImageAnnotations {
  const manifest: Record<string, string> = {};
  const manifestDescriptor: Record<string, string> = {};
  for (const item of list) {
    const eq = item.indexOf('=');
    if (eq < 0) throw new TsbuildError('USAGE', `invalid --annotation ${JSON.stringify(item)}: expected KEY=VALUE`);
    const m = KEY_RE.exec(item.slice(0, eq));
    if (m === null) throw new TsbuildError('USAGE', `invalid --annotation ${JSON.stringify(item)}: expected [TYPE:]KEY=VALUE`);
    const types = (m[1] ?? 'manifest').split(',');
    for (const t of types) {
      if (!TYPES.has(t)) throw new TsbuildError('USAGE', `invalid --annotation ${JSON.stringify(item)}: unknown annotation type ${JSON.stringify(t)}`, { hint: 'types are manifest, manifest-descriptor, index and index-descriptor' });
      if (t === 'index' || t === 'index-descriptor') {
        throw new TsbuildError('USAGE', `--annotation ${JSON.stringify(item)}: ${t} annotations need an image index, which a single-platform build does not make`, { hint: 'use manifest: or manifest-descriptor:' });
      }
    }
    if (m[2] !== undefined) {
      let selected: Platform;
      try {
        selected = parsePlatform(m[2]);
      } catch {
        throw new TsbuildError('USAGE', `invalid --annotation ${JSON.stringify(item)}: ${JSON.stringify(m[2])} is not a platform`);
      }
      if (!platformMatches(selected, platform)) continue;
    }
    const key = m[3]!;
    const value = item.slice(eq + 1);
    for (const t of types) (t === 'manifest' ? manifest : manifestDescriptor)[key] = value;
  }
  return { manifest, manifestDescriptor };
}
