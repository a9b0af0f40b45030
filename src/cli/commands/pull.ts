import os from 'node:os';
import type { Argv } from 'yargs';
import { defineCommand, repeatable, type CommandContext } from '../command.js';
import { TsbuildError } from '../../errors.js';
import { defaultTargetPlatform, formatPlatform, parsePlatform, parseReference } from '../../oci/index.js';
import type { PullProgress, RegistryClient } from '../../registry/index.js';
import type { PullUnpackProgress } from '../../snapshot/index.js';

/**
 * TSBUILD_SNAPSHOTTER as a build here would read it: `copy` means builds never use overlay
 * snapshots, so a pull makes none (a wrong value is the build's usage error, not the pull's).
 */
function snapshotterOf(env: NodeJS.ProcessEnv): 'auto' | 'overlay' | 'copy' {
  const v = env.TSBUILD_SNAPSHOTTER;
  return v === 'overlay' || v === 'copy' ? v : 'auto';
}

/** Flags shared by the commands that talk to registries (pull, push, login). */
export function registryOptions<T>(y: Argv<T>) {
  return y
    .option('insecure-registry', {
      type: 'string',
      default: [] as string[],
      coerce: repeatable,
      describe: 'Registry host[:port] to reach without TLS verification, or over plain HTTP (repeatable; loopback registries always are)',
    })
    .option('tls-ca-file', { type: 'string', default: [] as string[], coerce: repeatable, describe: 'Extra CA certificate (PEM) to trust (repeatable; SSL_CERT_FILE too)' });
}

/** The registry client of a command, from its flags and the environment (credentials, CAs). */
export async function registryClientFor(args: { readonly 'insecure-registry': readonly string[]; readonly 'tls-ca-file': readonly string[] }, ctx: CommandContext): Promise<RegistryClient> {
  // Loaded on first use: undici and the client cost ~0.2 s of start-up for every command.
  const { registryClientFromEnvironment } = await import('../../registry/index.js');
  return registryClientFromEnvironment({
    env: ctx.io.env,
    home: ctx.io.env.HOME || os.homedir(),
    insecureRegistries: args['insecure-registry'],
    caFiles: args['tls-ca-file'],
    logger: ctx.logger(),
    signal: ctx.io.signal,
  });
}

export function short(digest: string): string {
  return digest.slice(digest.indexOf(':') + 1, digest.indexOf(':') + 13);
}

export const pullCommand = defineCommand({
  builder: (y) =>
    registryOptions(y)
      .positional('image', { type: 'string', demandOption: true, describe: 'Image reference, e.g. localhost:5000/app:v1' })
      .option('platform', { type: 'string', describe: 'Platform to pull from a multi-platform image (default: linux on this CPU)' })
      .option('all-platforms', { alias: 'all', type: 'boolean', default: false, describe: 'Pull every image of a multi-platform image and keep its index under the tag (skopeo copy --all)' })
      .option('max-concurrent-downloads', { type: 'number', default: 4, describe: 'Layers downloaded at once' })
      .option('no-unpack', {
        type: 'boolean',
        default: false,
        describe:
          'Only store the layers, compressed as the registry sent them, without unpacking them into the snapshots RUN steps start from; each is decompressed and checked against its diff ID when first used (for a store that only pushes or exports)',
      })
      .option('quiet', { alias: 'q', type: 'boolean', default: false, describe: 'No progress output' }),
  run: async (args, ctx) => {
    const ref = parseReference(args.image);
    if (args['all-platforms'] && args.platform !== undefined) throw new TsbuildError('USAGE', '--platform and --all-platforms exclude each other', { hint: 'pull one platform with --platform, or every one with --all-platforms' });
    const platform = args.platform !== undefined ? parsePlatform(args.platform) : defaultTargetPlatform();
    const concurrency = args['max-concurrent-downloads'];
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new TsbuildError('USAGE', '--max-concurrent-downloads must be a positive integer');
    const store = await ctx.store();
    const client = await registryClientFor(args, ctx);
    const err = ctx.io.stderr;
    const unpacker = !args['no-unpack'] ? await (await import('../../snapshot/index.js')).pullUnpacker(store, { toolPath: ctx.io.env.PATH, snapshotter: snapshotterOf(ctx.io.env), signal: ctx.io.signal, ...(args.quiet ? {} : { onProgress: (p) => progress(p) }) }) : undefined;
    // Docker's lines: "Download complete" then "Extracting" and "Pull complete" when the layer is
    // unpacked too; "Pull complete" for a layer only stored.
    const shown = new Map<string, 'downloaded' | 'extracting' | 'complete'>();
    const progress = (p: PullProgress | PullUnpackProgress): void => {
      if (p.type === 'resolved') err.write(`Pulling ${p.reference}${p.platform !== undefined ? ` (${p.platform})` : ''}\n`);
      else if (p.type === 'layer' && p.status === 'exists') err.write(`${short(p.digest)}: Already exists\n`);
      else if (p.type === 'layer' && p.status === 'downloading') err.write(`${short(p.digest)}: Downloading (${p.size} bytes)\n`);
      else if (p.type === 'layer' && p.status === 'done') {
        shown.set(p.digest, unpacker ? 'downloaded' : 'complete');
        err.write(`${short(p.digest)}: ${unpacker ? 'Download complete' : 'Pull complete'}\n`);
      } else if (p.type === 'unpack' && p.status === 'extracting' && shown.get(p.digest) !== 'extracting') {
        shown.set(p.digest, 'extracting');
        err.write(`${short(p.digest)}: Extracting\n`);
      } else if (p.type === 'unpack' && p.status !== 'extracting' && (shown.get(p.digest) === 'downloaded' || shown.get(p.digest) === 'extracting')) {
        // A layer that was already there and already unpacked says "Already exists" only.
        shown.set(p.digest, 'complete');
        err.write(`${short(p.digest)}: Pull complete\n`);
      }
    };
    const pullOpts = { signal: ctx.io.signal, concurrency, ...(args.quiet ? {} : { onProgress: progress }), ...(unpacker ? { onImageLayers: unpacker.onImageLayers } : { keepCompressed: true }) };
    /** Waits for the unpacks of a pull that ended; their failures are warnings (the image is stored). */
    const unpacked = async (pull: 'done' | 'failed'): Promise<void> => {
      for (const w of (await unpacker?.finish(pull)) ?? []) err.write(`warning: ${w}\n`);
      // Ctrl-C while unpacking: the pull is stored, the command still cancelled.
      ctx.io.signal.throwIfAborted();
    };
    try {
      if (args['all-platforms']) {
        const { pullAllPlatforms } = await import('../../registry/index.js');
        const pulled = await pullAllPlatforms(client, store, ref, pullOpts).catch(async (e: unknown) => {
          await unpacked('failed');
          throw e;
        });
        await unpacked('done');
        if (!args.quiet) {
          for (const s of pulled.skipped) err.write(`${short(s.digest)}: Skipped (${s.platform?.os === 'unknown' ? 'attestation' : s.mediaType})\n`);
          err.write(`Digest: ${pulled.repoDigest.slice(pulled.repoDigest.indexOf('@') + 1)}\n`);
          const fresh = pulled.layers.some((l) => l.status === 'downloaded');
          err.write(`Status: ${fresh ? 'Downloaded newer image' : 'Image is up to date'} for ${pulled.name} (${pulled.images.map((i) => formatPlatform(i.platform)).join(', ')})\n`);
        }
        // The index's digest in the store names what was pulled (as `images` shows it); one image: its ID.
        ctx.io.stdout.write(`${pulled.index !== undefined ? pulled.index.descriptor.digest : pulled.images[0]!.image.configDescriptor.digest}\n`);
        return 0;
      }
      const { pullImage } = await import('../../registry/index.js');
      const pulled = await pullImage(client, store, ref, { ...pullOpts, platform }).catch(async (e: unknown) => {
        await unpacked('failed');
        throw e;
      });
      await unpacked('done');
      if (!args.quiet) {
        err.write(`Digest: ${pulled.repoDigest.slice(pulled.repoDigest.indexOf('@') + 1)}\n`);
        const fresh = pulled.layers.some((l) => l.status === 'downloaded');
        err.write(`Status: ${fresh ? 'Downloaded newer image' : 'Image is up to date'} for ${pulled.name}\n`);
      }
      ctx.io.stdout.write(`${pulled.image.configDescriptor.digest}\n`);
      return 0;
    } finally {
      await client.close();
    }
  },
});
