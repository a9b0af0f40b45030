import { IgnoreMatcher, readDockerignore, walkContextSync } from '../context/index.js';
import type { SourceRoot } from './copy-sources.js';

/**
 * `--build-context NAME=VALUE` (buildx), as the engine sees it: an image (`docker-image://REF`,
 * found or pulled as FROM finds it) or a directory on disk (a local directory, or a git
 * repository or tarball the caller fetched). `value` is what the user gave, for messages.
 * A name replaces an image of the same name in FROM, COPY --from and RUN --mount from=.
 */
export type NamedContext =
  | { readonly kind: 'image'; readonly ref: string; readonly value: string }
  | { readonly kind: 'dir'; readonly dir: string; readonly value: string };

/**
 * A directory context as COPY --from and RUN --mount from= read it: like the main context,
 * confined to its directory (no escape through symlinks) and filtered by its own
 * .dockerignore, as BuildKit's named local contexts are (dockerui/namedcontext.go).
 */
export async function namedContextRoot(name: string, dir: string, signal: AbortSignal): Promise<SourceRoot> {
  const ignore = await readDockerignore(dir, undefined);
  const matcher = new IgnoreMatcher(ignore.patterns);
  return {
    dir,
    kind: 'context',
    label: `build context ${JSON.stringify(name)}`,
    filter: matcher,
    filterFile: '.dockerignore',
    walk: () => walkContextSync(dir, matcher, { signal }),
  };
}
