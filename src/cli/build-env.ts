import type { BuildEnv, BuildReporter } from '../engine/index.js';
import type { RegistryClient } from '../registry/index.js';
import type { CommandContext } from './command.js';
import { buildEnvFor, createdTime } from '../api/index.js';

/**
 * The engine's environment for a command that builds (`build`, `compose build`): the store,
 * the signal, the host platform, the created time, the logger and a registry client made on
 * first use. One env may serve several builds at once: they then share the store and its
 * step cache.
 */
export async function commandBuildEnv(ctx: CommandContext, opts: { readonly report: BuildReporter; readonly registry: () => Promise<RegistryClient>; readonly signal?: AbortSignal }): Promise<BuildEnv> {
  const io = ctx.io;
  return buildEnvFor({
    store: await ctx.store(),
    signal: opts.signal ?? io.signal,
    report: opts.report,
    created: createdTime(io.env),
    logger: ctx.logger,
    registry: opts.registry,
    toolPath: io.env.PATH,
    binfmtDir: io.env.TSBUILD_BINFMT_MISC,
  });
}
