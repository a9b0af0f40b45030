import { TsbuildError } from '../errors.js';
import { defaultTargetPlatform, formatPlatform, hostPlatform, normalizePlatform, platformMatches, platformVector, type Platform } from '../oci/index.js';
import type { BuildPlan } from '../plan/index.js';
import type { BuildRequest } from './request.js';
import { stagePlatform } from './stages.js';

/**
 * Before any step runs: every stage with RUN steps must be able to run its platform's programs
 * here, natively or through qemu-user in binfmt_misc. A stage without RUN (FROM, COPY, ENV,
 * ...) needs no emulator, so a foreign platform's image made of files only builds anywhere.
 * The error names the stage's first RUN, the platform, and what to install or register.
 */
export async function checkEmulation(plan: BuildPlan, target: Platform, opts: { readonly binfmtDir?: string | undefined }): Promise<void> {
  const checked = new Map<string, Promise<import('../sandbox/index.js').PlatformSupport>>();
  for (const ps of plan.stages) {
    const run = ps.stage.instructions.find((i) => i.kind === 'RUN');
    if (run === undefined) continue;
    const platform = stagePlatform(ps, target);
    // The host's own platform (or one its CPU runs) needs no emulator: nothing to read, and the
    // sandbox module does not load (a cached build runs no step).
    if (runsNatively(platform)) continue;
    const text = formatPlatform(platform);
    let p = checked.get(text);
    if (p === undefined) {
      // The sandbox module loads only for builds that have RUN steps.
      p = import('../sandbox/index.js').then(({ platformSupport }) => platformSupport(platform, { binfmtDir: opts.binfmtDir }));
      checked.set(text, p);
    }
    const support = await p;
    if (support.ok) continue;
    throw new TsbuildError('EMULATOR_MISSING', `RUN for ${text} cannot run on this ${formatPlatform(defaultTargetPlatform())} host: ${support.reason ?? 'no emulator'}`, {
      location: run.location,
      ...(support.hint !== undefined ? { hint: support.hint } : {}),
    });
  }
}

/** What sandbox/emulation.ts answers 'native' for, without loading the sandbox. */
function runsNatively(platform: Platform): boolean {
  const want = normalizePlatform(platform);
  return want.os === 'linux' && platformVector(normalizePlatform({ ...hostPlatform(), os: 'linux' })).some((p) => platformMatches(p, want));
}

/**
 * Outputs that cannot hold several platforms, refused before anything is built (as buildx:
 * "docker exporter does not currently support exporting manifest lists").
 */
export function checkPlatformOutputs(req: BuildRequest, targets: readonly Platform[]): void {
  const list = targets.map(formatPlatform).join(', ');
  for (const out of req.outputs) {
    if (out.type === 'docker') {
      throw new TsbuildError('USAGE', `--output type=docker holds one image, but this build is for ${targets.length} platforms (${list})`, {
        hint: 'build one platform for docker (--platform linux/amd64), or use type=oci / type=oci-layout / --push for all of them',
      });
    }
  }
  const seen = new Set<string>();
  for (const t of targets) {
    const text = formatPlatform(t);
    if (seen.has(text)) throw new TsbuildError('USAGE', `--platform names ${text} twice`);
    seen.add(text);
  }
}
