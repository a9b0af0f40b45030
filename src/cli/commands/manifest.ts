import { defineCommand, repeatable, type CommandContext } from '../command.js';
import { TsbuildError, isTsbuildError } from '../../errors.js';
import { imagePlatform, normalizeName, resolveImageArg, type StoreImage } from '../../image/index.js';
import {
  MAX_MANIFEST_BYTES,
  formatPlatform,
  formatReference,
  normalizePlatform,
  parseReference,
  withDefaultTag,
  type Descriptor,
  type Platform,
  type Reference,
} from '../../oci/index.js';
import type { PushProgress, RegistryClient, RemoteEntry } from '../../registry/index.js';
import { writeStoreIndex, type Store, type StoredImage } from '../../store/index.js';
import { registryClientFor, registryOptions, short } from './pull.js';

/**
 * `tsbuild manifest create|push|inspect`: join images built on different machines (one native
 * runner per platform) into one multi-platform image, as `podman manifest create` /
 * `docker manifest create` and buildx's `imagetools create` do.
 */

/** One image of the index being made, and where it came from (for messages). */
interface Entry {
  readonly platform: Platform;
  readonly image: StoredImage;
  readonly annotations?: Readonly<Record<string, string>> | undefined;
  readonly source: string;
}

/** `linux/arm64/v8` and `linux/arm64` are one platform (containerd's normalisation), os.version apart. */
function platformKey(p: Platform): string {
  const n = normalizePlatform(p);
  return `${formatPlatform(n)}${n['os.version'] !== undefined ? `(${n['os.version']})` : ''}`;
}

/** The images a store image stands for, each with its platform (from the index, else its config). */
function entriesOf(found: StoreImage, source: string): Entry[] {
  if (found.index !== undefined) return found.index.images.map((i) => ({ platform: i.platform, image: i.image, annotations: i.descriptor.annotations, source }));
  return [{ platform: imagePlatform(found.image.config), image: found.image, source }];
}

const DOCKER_TRANSPORT = 'docker://';

/**
 * The images of one SRC: a store image (name or ID) when the store has it, else a registry
 * reference (all its platforms pulled, untagged). `docker://REF` always means the registry.
 */
async function sourceEntries(store: Store, src: string, registry: () => Promise<RegistryClient>, ctx: CommandContext, quiet: boolean): Promise<Entry[]> {
  const signal = ctx.io.signal;
  const remote = src.startsWith(DOCKER_TRANSPORT);
  const text = remote ? src.slice(DOCKER_TRANSPORT.length) : src;
  if (!remote) {
    try {
      return entriesOf(await resolveImageArg(store, text, { signal }), src);
    } catch (e) {
      if (!isTsbuildError(e) || e.code !== 'IMAGE_NOT_FOUND') throw e;
    }
  }
  const ref = sourceReference(src, text);
  const { pullAllPlatforms } = await import('../../registry/index.js');
  if (!quiet) ctx.io.stderr.write(`Pulling ${formatReference(ref)} (all platforms)\n`);
  try {
    const pulled = await pullAllPlatforms(await registry(), store, ref, { signal, tag: false });
    return pulled.images.map((i) => ({ platform: i.platform, image: i.image, source: src }));
  } catch (e) {
    throw missingSource(e, src, ref);
  }
}

/**
 * The entries of the new index in order: `base` (the existing target with --amend) then each
 * source's. The same manifest twice counts once; two images for one platform are refused, or
 * with `replace` (--amend) the later one wins.
 */
function mergeEntries<E extends { readonly platform: Platform; readonly source: string }>(base: readonly E[], added: readonly E[], replace: boolean, digestOf: (e: E) => string): E[] {
  const out: E[] = [...base];
  for (const e of added) {
    const key = platformKey(e.platform);
    const i = out.findIndex((o) => platformKey(o.platform) === key);
    if (i === -1) {
      out.push(e);
      continue;
    }
    const prev = out[i]!;
    if (digestOf(prev) === digestOf(e)) continue;
    if (!replace || added.indexOf(prev) !== -1) {
      throw new TsbuildError('USAGE', `two images for ${key}: ${prev.source} and ${e.source}`, {
        hint: 'give one image per platform (an index holds one image per platform), or --amend to let the later one replace the earlier',
      });
    }
    out[i] = e;
  }
  return out;
}

/** A SRC as a registry reference, or undefined when the local store has it (docker:// never is local). */
async function remoteSource(store: Store, src: string, signal: AbortSignal): Promise<Reference | undefined> {
  const remote = src.startsWith(DOCKER_TRANSPORT);
  const text = remote ? src.slice(DOCKER_TRANSPORT.length) : src;
  if (!remote) {
    try {
      await resolveImageArg(store, text, { signal });
      return undefined;
    } catch (e) {
      if (!isTsbuildError(e) || e.code !== 'IMAGE_NOT_FOUND') throw e;
    }
  }
  return sourceReference(src, text);
}

function sourceReference(src: string, text: string): Reference {
  try {
    return withDefaultTag(parseReference(text));
  } catch (e) {
    throw new TsbuildError('REFERENCE_INVALID', `source ${JSON.stringify(src)} is neither an image of the local store nor a valid reference${isTsbuildError(e) ? ` (${e.message})` : ''}`, {
      hint: 'name a local image (tsbuild images) or a registry image such as localhost:5000/app:v1-amd64',
    });
  }
}

function missingSource(e: unknown, src: string, ref: Reference): unknown {
  if (isTsbuildError(e) && (e.code === 'REGISTRY_MANIFEST_UNKNOWN' || e.code === 'REGISTRY_NAME_UNKNOWN')) {
    return new TsbuildError('IMAGE_NOT_FOUND', `source ${src}: ${src.startsWith(DOCKER_TRANSPORT) ? '' : 'not in the local store, and '}registry ${ref.registry} has no ${formatReference(ref)}`, {
      hint: 'check the name and tag; push the per-platform images first',
      cause: e,
    });
  }
  return e;
}

/**
 * `create --push` with registry sources only, as buildx imagetools create: the index is made in
 * the registry, blobs mounted, images unchanged; the store is not touched. Returns the digests
 * pushed, or undefined when a blob cannot be mounted (then the images go through the store).
 */
async function createInRegistry(client: RegistryClient, sources: ReadonlyArray<{ src: string; ref: Reference }>, targets: readonly Reference[], ctx: CommandContext, quiet: boolean): Promise<string[] | undefined> {
  const { putRemoteIndex, readRemoteEntries } = await import('../../registry/index.js');
  const signal = ctx.io.signal;
  const added: Array<{ entry: RemoteEntry; platform: Platform; source: string }> = [];
  for (const { src, ref } of sources) {
    const entries = await readRemoteEntries(client, ref, src, { signal }).catch((e: unknown) => {
      throw missingSource(e, src, ref);
    });
    for (const entry of entries) added.push({ entry, platform: entry.descriptor.platform, source: src });
  }
  const entries = mergeEntries([], added, false, (e) => e.entry.descriptor.digest).map((e) => e.entry);
  const digests: string[] = [];
  for (const target of targets) {
    const put = await putRemoteIndex(client, entries, target, {
      signal,
      ...(quiet ? {} : { onBlob: (d: string, status: 'exists' | 'mounted') => ctx.io.stderr.write(`${short(d)}: ${status === 'exists' ? 'Already exists' : 'Mounted from another repository'}\n`) }),
    });
    if (put === undefined) return undefined;
    if (!quiet) ctx.io.stderr.write(`${formatReference(target)}: digest: ${put.digest} (${entries.map((e) => formatPlatform(e.descriptor.platform)).join(', ')})\n`);
    digests.push(put.digest);
  }
  return digests;
}

function pushProgress(ctx: CommandContext, quiet: boolean): ((p: PushProgress) => void) | undefined {
  if (quiet) return undefined;
  const err = ctx.io.stderr;
  return (p) => {
    if (p.type === 'layer') {
      const label = { preparing: 'Compressing', exists: 'Layer already exists', mounted: 'Mounted from another repository', uploading: 'Pushing', uploaded: 'Pushed' }[p.status];
      err.write(`${short(p.digest)}: ${label}\n`);
    } else if (p.type === 'manifest') err.write(`${p.reference}: digest: ${p.digest}\n`);
  };
}

/** Pushes the store image or index tagged `name` to `dest`; returns the registry's digest. */
async function pushTarget(store: Store, client: RegistryClient, name: string, dest: Reference, ctx: CommandContext, quiet: boolean): Promise<string> {
  const found = await resolveImageArg(store, name, { signal: ctx.io.signal });
  const { pushImage, pushIndex } = await import('../../registry/index.js');
  const onProgress = pushProgress(ctx, quiet);
  const opts = { signal: ctx.io.signal, ...(onProgress ? { onProgress } : {}) };
  const pushed = found.index !== undefined ? await pushIndex(client, store, { ...found.index, name }, dest, opts) : await pushImage(client, store, found.image, dest, opts);
  return pushed.digest;
}

export const manifestCommand = defineCommand({
  builder: (y) =>
    registryOptions(y)
      .positional('action', { choices: ['create', 'push', 'inspect'] as const, demandOption: true, describe: 'create TARGET SRC...: make a multi-platform image; push TARGET [DEST]: push it; inspect REF: print an index' })
      .positional('args', { type: 'string', array: true, default: [] as string[], describe: 'create: TARGET then SRC images (local names or IDs, or registry references; docker://REF forces the registry); push: TARGET [DEST]; inspect: REF' })
      .option('tag', { alias: 't', type: 'string', default: [] as string[], coerce: repeatable, describe: 'create: name of the new image (repeatable; then every positional is a SRC, as buildx imagetools create -t)' })
      .option('amend', { type: 'boolean', default: false, describe: 'create: add to the existing TARGET instead of replacing it; an image for a platform it already has replaces that one' })
      .option('push', { type: 'boolean', default: false, describe: 'create: push the new image to its name(s) too' })
      .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No progress output' }),
  run: async (args, ctx) => {
    const words = args.args.map(String);
    const signal = ctx.io.signal;
    const store = await ctx.store();
    let client: RegistryClient | undefined;
    const registry = async (): Promise<RegistryClient> => (client ??= await registryClientFor(args, ctx));
    try {
      switch (args.action) {
        case 'create': {
          const targets = args.tag.length > 0 ? args.tag : words.slice(0, 1);
          const sources = args.tag.length > 0 ? words : words.slice(1);
          if (targets.length === 0 || sources.length === 0) {
            throw new TsbuildError('USAGE', 'manifest create needs a target and at least one source image', { hint: 'tsbuild manifest create TARGET SRC... (or -t TARGET SRC...)' });
          }
          const names = targets.map((t) => normalizeName(t));
          const refs = names.map((n) => parseReference(n));
          if (args.push && !args.amend) {
            // Registry sources only: made in the registry, no layer downloaded (buildx imagetools create).
            const remote: Array<{ src: string; ref: Reference }> = [];
            for (const src of sources) {
              const ref = await remoteSource(store, src, signal);
              if (ref === undefined) break;
              remote.push({ src, ref });
            }
            if (remote.length === sources.length) {
              const digests = await createInRegistry(await registry(), remote, refs, ctx, args.quiet);
              if (digests !== undefined) {
                for (const d of digests) ctx.io.stdout.write(`${d}\n`);
                return 0;
              }
              if (!args.quiet) ctx.io.stderr.write('The registry would not mount the blobs: the images go through the local store\n');
            }
          }
          const existing = args.amend
            ? await resolveImageArg(store, names[0]!, { signal }).catch((e: unknown) => {
                if (isTsbuildError(e) && e.code === 'IMAGE_NOT_FOUND') return undefined;
                throw e;
              })
            : undefined;
          const base: Entry[] = existing !== undefined ? entriesOf(existing, names[0]!) : [];
          // Every source is resolved (and pulled) before anything is tagged: a missing one changes nothing.
          const added: Entry[] = [];
          for (const src of sources) added.push(...(await sourceEntries(store, src, registry, ctx, args.quiet)));
          const entries = mergeEntries(base, added, args.amend, (e) => e.image.manifestDescriptor.digest);
          const written = await writeStoreIndex(
            store,
            entries.map((e) => ({ manifestDescriptor: e.image.manifestDescriptor, platform: e.platform, annotations: e.annotations })),
            { annotations: existing?.index?.index.annotations, signal },
          );
          for (const n of names) await store.setTag(n, written.descriptor, { signal });
          if (!args.quiet) ctx.io.stderr.write(`Created ${names.join(', ')} (${entries.map((e) => formatPlatform(e.platform)).join(', ')})\n`);
          if (!args.push) {
            ctx.io.stdout.write(`${written.descriptor.digest}\n`);
            return 0;
          }
          const c = await registry();
          for (const [i, n] of names.entries()) ctx.io.stdout.write(`${await pushTarget(store, c, n, refs[i]!, ctx, args.quiet)}\n`);
          return 0;
        }
        case 'push': {
          if (words.length < 1 || words.length > 2) throw new TsbuildError('USAGE', 'manifest push takes TARGET and an optional destination', { hint: 'tsbuild manifest push TARGET [REGISTRY/REPOSITORY:TAG]' });
          const name = normalizeName(words[0]!);
          const dest = parseReference(words[1] ?? name);
          ctx.io.stdout.write(`${await pushTarget(store, await registry(), name, dest, ctx, args.quiet)}\n`);
          return 0;
        }
        case 'inspect': {
          if (words.length !== 1) throw new TsbuildError('USAGE', 'manifest inspect takes one reference', { hint: 'tsbuild manifest inspect NAME (a local multi-platform image, else the registry\'s)' });
          const word = words[0]!;
          const remote = word.startsWith(DOCKER_TRANSPORT);
          const text = remote ? word.slice(DOCKER_TRANSPORT.length) : word;
          let desc: Descriptor | undefined;
          if (!remote) {
            try {
              desc = await store.getTag(normalizeName(text), { signal });
            } catch {
              desc = undefined;
            }
          }
          let bytes: Buffer;
          if (desc !== undefined) bytes = await store.blobs.readBlobBytes(desc.digest, { maxBytes: MAX_MANIFEST_BYTES, signal });
          else bytes = (await (await registry()).getManifest(withDefaultTag(parseReference(text)), { signal })).bytes;
          ctx.io.stdout.write(`${JSON.stringify(JSON.parse(bytes.toString('utf8')), null, 4)}\n`);
          return 0;
        }
      }
    } finally {
      await client?.close();
    }
  },
});
