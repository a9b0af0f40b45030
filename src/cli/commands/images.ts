import { TsbuildError } from '../../errors.js';
// store-layers.ts, not the registry's front door: listing images must not load undici.
import { readRepoDigests } from '../../registry/store-layers.js';
import { defineCommand, repeatable } from '../command.js';
import { createdAt, createdSince, humanSize, writeListing, type Listing } from '../format-output.js';
import { imagePlatform, listStoreImages, platformList, resolveImageArg, shortId, splitTag, storeImageId, type StoreImage } from '../../image/index.js';
import { formatPlatform } from '../../oci/index.js';

/** One row of `images`: an image under one of its names (or `<none>` when dangling). */
interface ImageRow {
  readonly image: StoreImage;
  readonly repository: string;
  readonly tag: string;
  readonly digest: string;
}

interface ImageFilter {
  readonly references: readonly string[];
  readonly dangling: boolean | undefined;
  readonly before: number | undefined;
  readonly since: number | undefined;
  readonly labels: ReadonlyArray<{ key: string; value: string | undefined }>;
}

/** docker's reference filter: path.Match-style globs (`*` and `?` stop at `/`). */
function globMatch(pattern: string, text: string): boolean {
  const re = pattern.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]');
  return new RegExp(`^${re}$`).test(text);
}

function matches(row: ImageRow, f: ImageFilter): boolean {
  const dangling = row.image.tags.length === 0;
  if (f.dangling !== undefined && dangling !== f.dangling) return false;
  if (f.references.length > 0) {
    if (dangling) return false;
    const full = `${row.repository}:${row.tag}`;
    if (!f.references.some((p) => globMatch(p, row.repository) || globMatch(p, full))) return false;
  }
  const created = Date.parse(row.image.image.config.created ?? '');
  if (f.before !== undefined && !(created < f.before)) return false;
  if (f.since !== undefined && !(created > f.since)) return false;
  const labels = row.image.image.config.config?.Labels ?? {};
  for (const l of f.labels) {
    if (!(l.key in labels)) return false;
    if (l.value !== undefined && labels[l.key] !== l.value) return false;
  }
  return true;
}

export const imagesCommand = defineCommand({
  builder: (y) =>
    y
      .option('all', { alias: 'a', type: 'boolean', default: false, describe: 'Show all images (the store keeps no intermediate images, so the same as without -a)' })
      .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Only image IDs' })
      .option('digests', { type: 'boolean', default: false, describe: 'Show registry digests' })
      .option('no-trunc', { type: 'boolean', default: false, describe: 'Full image IDs' })
      .option('filter', { alias: 'f', type: 'string', describe: 'reference=PATTERN, dangling=true|false, before=IMAGE, since=IMAGE, label=KEY[=VALUE] (repeatable)' })
      .option('format', { type: 'string', describe: "table (default), json, or a Go template such as '{{.Repository}}:{{.Tag}}'" }),
  run: async (args, ctx) => {
    const signal = ctx.io.signal;
    const store = await ctx.store();
    const all = await listStoreImages(store, { signal });

    const f = { references: [] as string[], dangling: undefined as boolean | undefined, before: undefined as number | undefined, since: undefined as number | undefined, labels: [] as Array<{ key: string; value: string | undefined }> };
    for (const spec of repeatable(args.filter)) {
      const eq = spec.indexOf('=');
      const key = eq < 0 ? spec : spec.slice(0, eq);
      const value = eq < 0 ? '' : spec.slice(eq + 1);
      switch (key) {
        case 'reference':
          f.references.push(value);
          break;
        case 'dangling':
          if (value !== 'true' && value !== 'false') throw new TsbuildError('USAGE', `invalid filter 'dangling=${value}': want true or false`);
          f.dangling = value === 'true';
          break;
        case 'before':
        case 'since': {
          const ref = await resolveImageArg(store, value, { signal, asStored: true });
          f[key] = Date.parse(ref.image.config.created ?? '');
          break;
        }
        case 'label': {
          const e = value.indexOf('=');
          f.labels.push(e < 0 ? { key: value, value: undefined } : { key: value.slice(0, e), value: value.slice(e + 1) });
          break;
        }
        default:
          throw new TsbuildError('USAGE', `invalid filter '${key}'`, { hint: 'filters: reference, dangling, before, since, label' });
      }
    }

    const rows: ImageRow[] = [];
    for (const image of all) {
      const repoDigests = await readRepoDigests(store, image.index?.descriptor.digest ?? image.image.manifestDescriptor.digest, { signal }).catch(() => [] as string[]);
      const digestFor = (repo: string): string => {
        const hit = repoDigests.find((rd) => splitTag(`${rd.slice(0, rd.indexOf('@'))}:x`).repository === repo);
        return hit ? hit.slice(hit.indexOf('@') + 1) : '<none>';
      };
      if (image.tags.length === 0) rows.push({ image, repository: '<none>', tag: '<none>', digest: '<none>' });
      for (const t of image.tags) {
        const { repository, tag } = splitTag(t);
        rows.push({ image, repository, tag, digest: digestFor(repository) });
      }
    }
    const shown = rows.filter((r) => matches(r, f));
    const id = (r: ImageRow): string => (args['no-trunc'] ? storeImageId(r.image) : shortId(storeImageId(r.image)));
    // A multi-platform image is one row; its platforms get a column when the listing has one.
    const platforms = (r: ImageRow): string => (r.image.index !== undefined ? platformList(r.image.index) : formatPlatform(imagePlatform(r.image.image.config)));
    const multi = shown.some((r) => r.image.index !== undefined);

    if (args.quiet) {
      // One line per row, duplicates included, as docker images -q prints them.
      for (const r of shown) ctx.io.stdout.write(`${id(r)}\n`);
      return 0;
    }
    const now = new Date();
    const listing: Listing<ImageRow> = {
      columns: [...(args.digests ? ['Repository', 'Tag', 'Digest', 'ID', 'CreatedSince', 'Size'] : ['Repository', 'Tag', 'ID', 'CreatedSince', 'Size']), ...(multi ? ['Platforms'] : [])],
      headers: { Platforms: 'PLATFORMS', Repository: 'REPOSITORY', Tag: 'TAG', Digest: 'DIGEST', ID: 'IMAGE ID', CreatedSince: 'CREATED', CreatedAt: 'CREATED AT', Size: 'SIZE', Containers: 'CONTAINERS', SharedSize: 'SHARED SIZE', UniqueSize: 'UNIQUE SIZE', VirtualSize: 'VIRTUAL SIZE' },
      fields: (r) => ({
        Containers: 'N/A',
        CreatedAt: createdAt(r.image.image.config.created),
        CreatedSince: createdSince(r.image.image.config.created, now),
        Digest: r.digest,
        ID: id(r),
        Platforms: platforms(r),
        Repository: r.repository,
        SharedSize: 'N/A',
        Size: humanSize(r.image.size),
        Tag: r.tag,
        UniqueSize: 'N/A',
        VirtualSize: humanSize(r.image.size),
      }),
    };
    writeListing(ctx.io.stdout, shown, listing, args.format);
    return 0;
  },
});
