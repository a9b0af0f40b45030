import path from 'node:path/posix';
import { TsbuildError, type SourceLocation } from '../errors.js';
import { IgnoreMatcher, patternsFromList } from '../context/index.js';
import { planCopy, type CopyPlanOptions, type PlannedEntry } from './copy-plan.js';
import { cleanSourceArg, forEachWalked, resolveSources, walkSourceDir, type SourceRoot } from './copy-sources.js';
import { hasWildcard } from './glob.js';

/**
 * `COPY --parents`: the sources keep their path below a pivot, as BuildKit's dispatchCopy
 * builds it (dockerfile2llb/convert_copy.go): a source `a/./b/c` has the pivot `a` and the
 * pattern `b/c`; without `/./` the pivot is the root of the source (the context, a stage).
 * What is copied is the pivot directory's content filtered by the pattern as an include
 * pattern (fsutil IncludePatterns: `*`, `?`, `[..]`, `**`; a matched directory comes whole),
 * with the directories leading to each match, into the destination directory. A source
 * without wildcards must exist (BuildKit's RequiredPaths); a wildcard may match nothing.
 * https://docs.docker.com/reference/dockerfile/#copy---parents
 */
export async function planParents(
  root: SourceRoot,
  sources: readonly string[],
  opts: CopyPlanOptions & { readonly location: SourceLocation; readonly instruction: string },
): Promise<PlannedEntry[]> {
  const where = `${opts.instruction} --parents ${sources.join(' ')}`;
  const out: PlannedEntry[] = [];
  for (const source of sources) {
    const cut = source.indexOf('/./');
    const pivotArg = cut < 0 ? '' : source.slice(0, cut);
    const pattern = path.normalize(`/${cut < 0 ? source : source.slice(cut + 3)}`).replace(/^\/+/, '').replace(/\/+$/, '');
    const pivot = cleanSourceArg(pivotArg, where);
    if (!hasWildcard(pivot) && !hasWildcard(pattern)) {
      // RequiredPaths: the named path must exist (and not be excluded), as without --parents.
      await resolveSources(root, [pivot === '' ? pattern || '.' : `${pivot}/${pattern}`], { instruction: opts.instruction, location: opts.location });
    }
    const include = pattern === '' || pattern === '.' ? undefined : new IgnoreMatcher(patternsFromList([pattern], '--parents'));
    for (const m of (await resolveSources(root, [pivot === '' ? '.' : pivot], { instruction: opts.instruction, location: opts.location }))[0]?.matches ?? []) {
      if (!m.stat.isDirectory()) {
        throw new TsbuildError('DOCKERFILE_INSTRUCTION', `${where}: ${JSON.stringify(m.rel)} before "/./" is not a directory`, {
          location: opts.location,
          hint: 'the part of a --parents source before "/./" names the directory the kept paths start from',
        });
      }
      // What the pattern keeps, with every directory on the way to it.
      const kept = new Set<string>();
      if (include) {
        await forEachWalked(walkSourceDir(root, m), (e) => {
          if (!include.matches(e.inner)) return;
          kept.add(e.inner);
          for (let d = path.dirname(e.inner); d !== '.'; d = path.dirname(d)) kept.add(d);
        });
      }
      const exclude = opts.exclude;
      const filter =
        include === undefined
          ? exclude
          : {
              matches: (inner: string) => !kept.has(inner) || (exclude?.matches(inner) ?? false),
              mustDescend: (inner: string) => kept.has(inner) && (exclude?.mustDescend?.(inner) ?? true),
            };
      out.push(...(await planCopy(root, [{ arg: source, wildcard: false, matches: [m] }], { ...opts, exclude: filter })));
    }
  }
  return out;
}
