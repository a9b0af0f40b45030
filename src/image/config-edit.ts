import { TsbuildError } from '../errors.js';
import type { ContainerConfig, Healthcheck, HistoryEntry, ImageConfig } from '../oci/index.js';

/**
 * Edits of an image config, one per config instruction, on values that are already
 * expanded. Pure: each returns a new config. Field semantics follow the Dockerfile
 * reference and BuildKit's dispatchers (frontend/dockerfile/dockerfile2llb/convert.go).
 */

function containerConfig(config: ImageConfig): ContainerConfig {
  return config.config ?? {};
}

function withContainer(config: ImageConfig, patch: Partial<ContainerConfig>): ImageConfig {
  return { ...config, config: { ...containerConfig(config), ...patch } };
}

/** Env as ordered pairs. */
function envPairs(config: ImageConfig): Array<[string, string]> {
  return (containerConfig(config).Env ?? []).map((e) => {
    const eq = e.indexOf('=');
    return eq < 0 ? [e, ''] : [e.slice(0, eq), e.slice(eq + 1)];
  });
}

/** ENV: replaces an existing name in place, else appends (as Docker keeps the order). */
export function setEnv(config: ImageConfig, pairs: ReadonlyArray<readonly [string, string]>): ImageConfig {
  const env = envPairs(config);
  for (const [k, v] of pairs) {
    const i = env.findIndex(([name]) => name === k);
    if (i >= 0) env[i] = [k, v];
    else env.push([k, v]);
  }
  return withContainer(config, { Env: env.map(([k, v]) => `${k}=${v}`) });
}

export function setLabels(config: ImageConfig, pairs: ReadonlyArray<readonly [string, string]>): ImageConfig {
  const labels: Record<string, string> = { ...(containerConfig(config).Labels ?? {}) };
  for (const [k, v] of pairs) labels[k] = v;
  return withContainer(config, { Labels: labels });
}

/**
 * EXPOSE: "80", "80/tcp", "53/UDP", "8000-8002" as go-connections/nat ParsePortSpecs reads
 * them: ranges expanded, protocol lower-cased, tcp by default.
 */
export function exposedPortKeys(spec: string): string[] {
  const slash = spec.indexOf('/');
  const portPart = slash < 0 ? spec : spec.slice(0, slash);
  const proto = (slash < 0 ? 'tcp' : spec.slice(slash + 1)).toLowerCase();
  // ip:hostPort:containerPort forms appear in `docker run -p`; EXPOSE takes the last part.
  const container = portPart.split(':').at(-1) ?? '';
  const m = /^(\d+)(?:-(\d+))?$/.exec(container);
  if (!m || !/^(tcp|udp|sctp)$/.test(proto)) {
    throw new TsbuildError('DOCKERFILE_INSTRUCTION', `invalid port ${JSON.stringify(spec)}`, { hint: 'EXPOSE takes PORT[/tcp|udp|sctp] or a range PORT-PORT' });
  }
  const start = Number(m[1]);
  const end = m[2] === undefined ? start : Number(m[2]);
  if (start > 65535 || end > 65535 || end < start) {
    throw new TsbuildError('DOCKERFILE_INSTRUCTION', `invalid port range ${JSON.stringify(spec)}`);
  }
  const out: string[] = [];
  for (let p = start; p <= end; p++) out.push(`${p}/${proto}`);
  return out;
}

export function addExposedPorts(config: ImageConfig, specs: readonly string[]): ImageConfig {
  const ports: Record<string, Record<string, never>> = { ...(containerConfig(config).ExposedPorts ?? {}) };
  for (const s of specs) for (const k of exposedPortKeys(s)) ports[k] = {};
  return withContainer(config, { ExposedPorts: ports });
}

export function addVolumes(config: ImageConfig, paths: readonly string[]): ImageConfig {
  const volumes: Record<string, Record<string, never>> = { ...(containerConfig(config).Volumes ?? {}) };
  for (const p of paths) {
    if (p.trim() === '') throw new TsbuildError('DOCKERFILE_INSTRUCTION', 'VOLUME specified can not be an empty string');
    volumes[p] = {};
  }
  return withContainer(config, { Volumes: volumes });
}

export function setUser(config: ImageConfig, user: string): ImageConfig {
  return withContainer(config, { User: user });
}

export function setWorkdir(config: ImageConfig, dir: string): ImageConfig {
  return withContainer(config, { WorkingDir: dir });
}

export function setCmd(config: ImageConfig, cmd: readonly string[]): ImageConfig {
  return withContainer(config, { Cmd: [...cmd] });
}

/** ENTRYPOINT resets an inherited CMD unless CMD was set earlier in this stage (reference). */
export function setEntrypoint(config: ImageConfig, entrypoint: readonly string[], cmdSetInStage: boolean): ImageConfig {
  return withContainer(config, { Entrypoint: [...entrypoint], ...(cmdSetInStage ? {} : { Cmd: null }) });
}

export function setShell(config: ImageConfig, shell: readonly string[]): ImageConfig {
  return withContainer(config, { Shell: [...shell] });
}

export function setStopSignal(config: ImageConfig, signal: string): ImageConfig {
  if (!/^(SIG[A-Z0-9+-]+|\d+)$/.test(signal)) {
    throw new TsbuildError('DOCKERFILE_INSTRUCTION', `invalid signal: ${signal}`, { hint: 'use a signal name like SIGTERM or a number' });
  }
  return withContainer(config, { StopSignal: signal });
}

export function setHealthcheck(config: ImageConfig, hc: Healthcheck): ImageConfig {
  return withContainer(config, { Healthcheck: hc });
}

export function addOnBuild(config: ImageConfig, expression: string): ImageConfig {
  return withContainer(config, { OnBuild: [...(containerConfig(config).OnBuild ?? []), expression] });
}

/** The comment BuildKit writes on the history entries of Dockerfile steps. */
const HISTORY_COMMENT = 'buildkit.dockerfile.v0';

export function addHistory(config: ImageConfig, entry: { createdBy: string; emptyLayer: boolean; created?: string | undefined }): ImageConfig {
  const h: HistoryEntry = {
    ...(entry.created ? { created: entry.created } : {}),
    created_by: entry.createdBy,
    comment: HISTORY_COMMENT,
    ...(entry.emptyLayer ? { empty_layer: true } : {}),
  };
  return { ...config, history: [...(config.history ?? []), h] };
}
