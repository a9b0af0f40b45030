import fs from 'node:fs';
import path from 'node:path';
import { TsbuildError } from '../errors.js';
import { isTree, type Tree } from './merge.js';
import type { ComposeProject } from './load-project.js';

/** A build secret of a service: from a file, or from an environment variable of the tsbuild process. */
export type ComposeSecret = { readonly id: string; readonly file: string } | { readonly id: string; readonly env: string };

/**
 * One service's build, as plain data: what `docker compose build` would send for it. The CLI
 * turns it into an engine request; nothing here knows the engine.
 */
export interface ComposeBuild {
  readonly service: string;
  /** Absolute directory of the build context. */
  readonly context: string;
  /** Absolute path of the Dockerfile; absent when `dockerfileInline` is set. */
  readonly dockerfile?: string;
  readonly dockerfileInline?: string;
  /** Build args; null means "from the environment if set" (a bare `- NAME`). */
  readonly args: Readonly<Record<string, string | null>>;
  readonly target?: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The image name (`image:` or `<project>-<service>`), then `build.tags`. */
  readonly image: string;
  readonly tags: readonly string[];
  readonly noCache: boolean;
  readonly pull: boolean;
  readonly cacheFrom: readonly string[];
  readonly cacheTo: readonly string[];
  readonly secrets: readonly ComposeSecret[];
  /** `ssh:` entries as `--ssh` takes them (`default`, `ID=PATH`). */
  readonly ssh: readonly string[];
  /** Named contexts: absolute paths, `docker-image://REF`, `service:NAME`, URLs, as written. */
  readonly additionalContexts: Readonly<Record<string, string>>;
  readonly network?: string;
  /** `NAME:IP` entries. */
  readonly extraHosts: readonly string[];
  readonly shmSize?: string | number;
  readonly platforms: readonly string[];
  /** Services whose images this build uses (`service:NAME` contexts): built first. */
  readonly needs: readonly string[];
}

export interface ComposeBuildPlan {
  /** In an order where every service comes after the ones it needs. */
  readonly builds: readonly ComposeBuild[];
  /**
   * Services whose build is the same as another's, into the same image (compose builds such an
   * image once): service -> the service in `builds` that makes it.
   */
  readonly sameAs: ReadonlyMap<string, string>;
  readonly warnings: readonly string[];
}

/** Build keys that mean nothing without a daemon's container runtime, or that we do not honour. */
const NOT_APPLIED: Record<string, string> = {
  privileged: 'RUN steps never run privileged in a daemon-free builder',
  isolation: 'Windows isolation modes do not apply; RUN steps use the tsbuild sandbox',
  entitlements: 'entitlements (network.host, security.insecure) are not granted',
  ulimits: 'RUN steps keep the limits of the tsbuild process',
  provenance: 'provenance attestations are not produced',
  sbom: 'SBOM attestations are not produced',
};

/**
 * The builds of a project's services that have a `build:` section: `only` picks services
 * (with `withDependencies`, what they need too: `service:` contexts and depends_on). Errors:
 * an unknown service, a `service:` context naming a service that is not built, a cycle of them,
 * a Dockerfile that is not a readable file inside the context or the project directory.
 */
export function composeBuildPlan(project: ComposeProject, opts: { only?: readonly string[]; withDependencies?: boolean } = {}): ComposeBuildPlan {
  const services = project.model.services as Tree;
  const warnings: string[] = [...project.warnings];
  const all = new Map<string, ComposeBuild>();
  for (const [name, svc] of Object.entries(services)) {
    const s = svc as Tree;
    if (!isTree(s.build)) continue;
    all.set(name, serviceBuild(project, name, s, warnings));
  }

  let wanted = new Set(opts.only?.length ? opts.only : all.keys());
  for (const n of wanted) {
    if (!(n in services)) throw new TsbuildError('COMPOSE_INVALID', `no such service: ${n}`, { hint: `the services are ${Object.keys(services).join(', ')}` });
  }
  if (opts.withDependencies) {
    const queue = [...wanted];
    while (queue.length > 0) {
      const n = queue.pop()!;
      const s = services[n] as Tree;
      const deps = [...(all.get(n)?.needs ?? []), ...(Array.isArray(s.depends_on) ? s.depends_on.map(String) : isTree(s.depends_on) ? Object.keys(s.depends_on) : [])];
      for (const d of deps) if (!wanted.has(d) && d in services) (wanted.add(d), queue.push(d));
    }
  }
  // A service named without a build section has nothing to build (compose says nothing either).
  wanted = new Set([...wanted].filter((n) => all.has(n)));
  // `service:` contexts need their service built in the same run.
  for (const n of [...wanted]) for (const d of all.get(n)!.needs) wanted.add(d);

  const order: ComposeBuild[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (n: string, trail: string[]): void => {
    if (state.get(n) === 'done') return;
    if (state.get(n) === 'visiting') {
      throw new TsbuildError('COMPOSE_CYCLE', `services use each other's images as build contexts in a cycle: ${[...trail.slice(trail.indexOf(n)), n].join(' -> ')}`, {
        hint: 'break the cycle: a service: context must name a service that does not need this one',
      });
    }
    state.set(n, 'visiting');
    for (const d of all.get(n)!.needs) visit(d, [...trail, n]);
    state.set(n, 'done');
    order.push(all.get(n)!);
  };
  for (const n of [...all.keys()].sort()) if (wanted.has(n)) visit(n, []);
  // Services that name the same image: one build when their build sections agree, else an error
  // (the image would be whichever finished last).
  const byImage = new Map<string, ComposeBuild>();
  const sameAs = new Map<string, string>();
  const builds: ComposeBuild[] = [];
  for (const b of order) {
    const first = byImage.get(b.image);
    if (!first) {
      byImage.set(b.image, b);
      builds.push(b);
      continue;
    }
    const { service: _a, ...mine } = b;
    const { service: _b, ...theirs } = first;
    if (JSON.stringify(mine) !== JSON.stringify(theirs)) {
      throw new TsbuildError('COMPOSE_INVALID', `services ${JSON.stringify(first.service)} and ${JSON.stringify(b.service)} build different things into the same image ${b.image}`, {
        hint: 'give one of them another image: name, or the same build section',
      });
    }
    sameAs.set(b.service, first.service);
  }
  return { builds, sameAs, warnings };
}

function strings(v: unknown, where: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new TsbuildError('COMPOSE_INVALID', `${where} must be a list`);
  return v.map((x) => String(x));
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (isTree(v)) for (const [k, x] of Object.entries(v)) if (x !== null && x !== undefined) out[k] = String(x);
  return out;
}

function serviceBuild(project: ComposeProject, name: string, s: Tree, warnings: string[]): ComposeBuild {
  const b = s.build as Tree;
  const where = `service ${JSON.stringify(name)}`;
  for (const [key, why] of Object.entries(NOT_APPLIED)) {
    if (b[key] !== undefined && b[key] !== false) warnings.push(`${where}: build.${key} is not applied: ${why}`);
  }
  const context = String(b.context ?? project.workingDir);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(context) || context.startsWith('git@')) {
    throw new TsbuildError('UNSUPPORTED', `${where}: remote build contexts (${context}) are not supported`, { hint: 'check the sources out and point build.context at the directory' });
  }
  const st = fs.statSync(context, { throwIfNoEntry: false });
  if (!st?.isDirectory()) throw new TsbuildError('CONTEXT_NOT_FOUND', `${where}: build context ${context} is not a directory`, { hint: 'build.context is relative to the project directory' });

  let dockerfile: string | undefined;
  let dockerfileInline: string | undefined;
  if (typeof b.dockerfile_inline === 'string') {
    if (b.dockerfile !== undefined && b.dockerfile !== 'Dockerfile') throw new TsbuildError('COMPOSE_INVALID', `${where}: build has both dockerfile and dockerfile_inline`, { hint: 'keep one of them' });
    dockerfileInline = b.dockerfile_inline;
  } else {
    dockerfile = reachableDockerfile(project, context, String(b.dockerfile ?? 'Dockerfile'), where);
  }

  const args: Record<string, string | null> = {};
  if (isTree(b.args)) for (const [k, v] of Object.entries(b.args)) args[k] = v === null || v === undefined ? null : String(v);

  const image = typeof s.image === 'string' && s.image !== '' ? s.image : `${project.name}-${name}`;
  const topSecrets = isTree(project.model.secrets) ? project.model.secrets : {};
  const secrets: ComposeSecret[] = strings(b.secrets === undefined ? undefined : (b.secrets as unknown[]).map((x) => (isTree(x) ? JSON.stringify(x) : x)), `${where}: build.secrets`).map((entry) => {
    const ref = entry.startsWith('{') ? (JSON.parse(entry) as Tree) : { source: entry };
    const source = String(ref.source ?? '');
    const id = String(ref.target ?? source);
    const def = topSecrets[source];
    if (!isTree(def)) {
      throw new TsbuildError('COMPOSE_INVALID', `${where}: build secret ${JSON.stringify(source)} is not defined in the top-level secrets`, { hint: `add secrets: { ${source}: { file: PATH } } or environment: VAR` });
    }
    if (typeof def.file === 'string') return { id, file: def.file };
    if (typeof def.environment === 'string') return { id, env: def.environment };
    throw new TsbuildError('COMPOSE_INVALID', `${where}: secret ${JSON.stringify(source)} needs file: or environment: to be used by a build`);
  });

  const ssh = Array.isArray(b.ssh) ? b.ssh.map(String) : isTree(b.ssh) ? Object.entries(b.ssh).map(([k, v]) => (v === null || v === '' ? k : `${k}=${String(v)}`)) : [];
  const additionalContexts = stringMap(b.additional_contexts);
  const needs: string[] = [];
  for (const [ctxName, ref] of Object.entries(additionalContexts)) {
    if (!ref.startsWith('service:')) continue;
    const dep = ref.slice('service:'.length);
    const depSvc = (project.model.services as Tree)[dep];
    if (!isTree(depSvc) || !isTree(depSvc.build)) {
      throw new TsbuildError('COMPOSE_INVALID', `${where}: additional context ${ctxName}=${ref} names a service that is not built here`, { hint: `define service ${dep} with a build section` });
    }
    needs.push(dep);
  }
  const extraHosts = isTree(b.extra_hosts) ? Object.entries(b.extra_hosts).map(([h, ip]) => `${h}:${String(ip)}`) : [];
  return {
    service: name,
    context,
    ...(dockerfile !== undefined ? { dockerfile } : {}),
    ...(dockerfileInline !== undefined ? { dockerfileInline } : {}),
    args,
    ...(typeof b.target === 'string' ? { target: b.target } : {}),
    labels: stringMap(b.labels),
    image,
    tags: strings(b.tags, `${where}: build.tags`),
    noCache: b.no_cache === true,
    pull: b.pull === true,
    cacheFrom: strings(b.cache_from, `${where}: build.cache_from`),
    cacheTo: strings(b.cache_to, `${where}: build.cache_to`),
    secrets,
    ssh,
    additionalContexts,
    ...(typeof b.network === 'string' ? { network: b.network } : {}),
    extraHosts,
    ...(typeof b.shm_size === 'string' || typeof b.shm_size === 'number' ? { shmSize: b.shm_size } : {}),
    platforms: strings(b.platforms, `${where}: build.platforms`),
    needs,
  };
}

/**
 * The Dockerfile, relative to the context: it must be a readable regular file inside the
 * context or the project directory (after symlinks), so a compose file cannot make a build
 * read a file elsewhere on the host by a `../../` path.
 */
function reachableDockerfile(project: ComposeProject, context: string, name: string, where: string): string {
  const p = path.resolve(context, name);
  let real: string;
  try {
    real = fs.realpathSync(p);
    if (!fs.statSync(real).isFile()) throw new Error('not a file');
  } catch {
    throw new TsbuildError('DOCKERFILE_NOT_FOUND', `${where}: cannot read the Dockerfile ${p}`, { hint: 'build.dockerfile is relative to build.context' });
  }
  const inside = (dir: string): boolean => {
    let root: string;
    try {
      root = fs.realpathSync(dir);
    } catch {
      return false;
    }
    const rel = path.relative(root, real);
    return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
  };
  if (!inside(context) && !inside(project.workingDir)) {
    throw new TsbuildError('CONTEXT_ESCAPE', `${where}: the Dockerfile ${name} is outside the build context and the project directory`, {
      hint: `move it under ${project.workingDir} or into the build context`,
    });
  }
  return real;
}
