import { defineCommand } from '../command.js';
import { readLocalImage } from '../../image/local-image.js';
import { parseReference, familiarName } from '../../oci/reference.js';

/** "3 minutes ago", as docker images shows CREATED. */
export function humanAge(created: string | undefined, now: Date): string {
  if (!created) return 'N/A';
  const secs = Math.max(0, (now.getTime() - Date.parse(created)) / 1000);
  const units: Array<[number, string]> = [
    [365 * 86400, 'year'],
    [30 * 86400, 'month'],
    [7 * 86400, 'week'],
    [86400, 'day'],
    [3600, 'hour'],
    [60, 'minute'],
  ];
  for (const [s, name] of units) {
    const n = Math.floor(secs / s);
    if (n >= 1) return `${n === 1 ? (name === 'hour' ? 'About an' : 'a') : n} ${name}${n === 1 ? '' : 's'} ago`;
  }
  return 'Less than a minute ago';
}

/** 1.2MB as docker shows sizes (decimal units). */
export function humanSize(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let v = bytes;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v >= 100 || i === 0 ? Math.round(v) : v.toPrecision(3)}${units[i]}`;
}

export const imagesCommand = defineCommand({
  command: 'images',
  describe: 'List the images of the local store',
  builder: (y) =>
    y
      .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'Only image IDs' })
      .option('no-trunc', { type: 'boolean', default: false, describe: 'Full image IDs' }),
  run: async (args, ctx) => {
    const store = await ctx.store();
    const tags = await store.listTags({ signal: ctx.io.signal });
    const rows: string[][] = [];
    const now = new Date();
    for (const t of tags) {
      const image = await readLocalImage(store, t.descriptor, { signal: ctx.io.signal }).catch(() => undefined);
      if (!image) continue;
      const id = args['no-trunc'] ? image.id : image.id.slice(7, 19);
      if (args.quiet) {
        rows.push([id]);
        continue;
      }
      let repo = t.name;
      let tag = '<none>';
      try {
        const ref = parseReference(t.name);
        repo = familiarName({ registry: ref.registry, repository: ref.repository });
        tag = ref.tag ?? '<none>';
      } catch {
        // a name another tool wrote; show it as it is
      }
      const size = image.manifest.layers.reduce((n, l) => n + l.size, 0);
      rows.push([repo, tag, id, humanAge(image.config.created, now), humanSize(size)]);
    }
    if (args.quiet) {
      for (const r of rows) ctx.io.stdout.write(`${r[0]}\n`);
      return 0;
    }
    const header = ['REPOSITORY', 'TAG', 'IMAGE ID', 'CREATED', 'SIZE'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
    const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3))).join('').trimEnd();
    ctx.io.stdout.write(`${line(header)}\n`);
    for (const r of rows) ctx.io.stdout.write(`${line(r)}\n`);
    return 0;
  },
});
