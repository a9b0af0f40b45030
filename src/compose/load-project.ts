import fs from 'node:fs';
import path from 'node:path';
import { TsbuildError } from '../errors.js';
import { interpolateTree, parseEnvFile } from './interpolate.js';
import { isTree, mergeValue, stripMarkers, type Tree } from './merge.js';
import { Override, parseComposeYaml, RESET } from './yaml-file.js';

/** How a compose project is found and read (the flags and environment of `docker compose`). */
export interface ComposeOptions {
  /** The directory the command runs in. */
  readonly cwd: string;
  /** The process environment; it wins over the project's .env file. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** `-f FILE` in order; else COMPOSE_FILE; else discovery from the project directory or cwd upwards. */
  readonly files?: readonly string[];
  /** `-p NAME`; else COMPOSE_PROJECT_NAME; else the top-level `name:`; else the project directory's name. */
  readonly projectName?: string;
  /** `--project-directory DIR`: where relative paths and .env are resolved (default: the first file's directory). */
  readonly projectDirectory?: string;
  /** `--env-file FILE` (repeatable): replaces the project's .env. */
  readonly envFiles?: readonly string[];
  /** `--profile NAME` (repeatable); else COMPOSE_PROFILES (comma-separated). */
  readonly profiles?: readonly string[];
  /** Services named on the command line: enabled whatever their profiles, as compose does. */
  readonly services?: readonly string[];
}

/** A compose project after discovery, merging, extends, include, interpolation and profiles. */
export interface ComposeProject {
  /** The normalised project name (lowercase letters, digits, `-` and `_`). */
  readonly name: string;
  readonly workingDir: string;
  /** The files read, in merge order (absolute). */
  readonly files: readonly string[];
  /** The resolved model, shaped as `docker compose config` prints it. */
  readonly model: Tree;
  /** Things that were read but will not be honoured, said once each. */
  readonly warnings: readonly string[];
  /** The variables interpolation used: the process environment over .env (for args given as a bare NAME). */
  readonly variables: ReadonlyMap<string, string>;
}

const TOP_LEVEL = new Set(['version', 'name', 'services', 'networks', 'volumes', 'secrets', 'configs', 'include', 'models']);

/** Service keys of the Compose Specification (services top-level element). */
const SERVICE_KEYS = new Set(
  (
    'annotations attach blkio_config build cap_add cap_drop cgroup cgroup_parent command configs container_name cpu_count cpu_percent ' +
    'cpu_period cpu_quota cpu_rt_period cpu_rt_runtime cpu_shares cpus cpuset credential_spec depends_on deploy develop device_cgroup_rules ' +
    'devices dns dns_opt dns_search domainname entrypoint env_file environment expose extends external_links extra_hosts gpus group_add ' +
    'healthcheck hostname image init ipc isolation labels label_file links logging mac_address mem_limit mem_reservation mem_swappiness ' +
    'memswap_limit models network_mode networks oom_kill_disable oom_score_adj pid pids_limit platform ports post_start pre_stop privileged ' +
    'profiles provider pull_policy read_only restart runtime scale secrets security_opt shm_size stdin_open stop_grace_period stop_signal ' +
    'storage_opt sysctls tmpfs tty ulimits use_api_socket user userns_mode uts volumes volumes_from working_dir'
  ).split(' '),
);

/** Keys of a service's `build:` section (Compose Build Specification). */
export const BUILD_KEYS = new Set(
  'context dockerfile dockerfile_inline args ssh cache_from cache_to additional_contexts extra_hosts isolation labels network no_cache pull shm_size target secrets tags ulimits platforms privileged entitlements provenance sbom'.split(
    ' ',
  ),
);

const DEFAULT_FILES = ['compose.yaml', 'compose.yml', 'docker-compose.yaml', 'docker-compose.yml'];

function invalid(message: string, hint?: string): TsbuildError {
  return new TsbuildError('COMPOSE_INVALID', message, hint ? { hint } : {});
}

/** Compose v2's project-name rule: lowercase, only [a-z0-9_-], starting with a letter or digit. */
export function normalizeProjectName(name: string): string {
  return name
    .toLowerCase()
    .replace(/[^a-z0-9_-]/g, '')
    .replace(/^[_-]+/, '');
}

function readText(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new TsbuildError('COMPOSE_NOT_FOUND', `cannot read the ${what} ${file}${code ? ` (${code})` : ''}`, {
      hint: code === 'ENOENT' ? 'check the path (relative paths start at the current directory)' : undefined,
    });
  }
}

/** compose.yaml and friends in `dir` or the nearest parent that has one, with its override file. */
export function discoverComposeFiles(dir: string): string[] {
  for (let d = path.resolve(dir); ; ) {
    for (const name of DEFAULT_FILES) {
      const f = path.join(d, name);
      if (fs.existsSync(f)) {
        const stem = name.slice(0, name.lastIndexOf('.'));
        const override = [`${stem}.override.yaml`, `${stem}.override.yml`].map((o) => path.join(d, o)).find((o) => fs.existsSync(o));
        return override ? [f, override] : [f];
      }
    }
    const parent = path.dirname(d);
    if (parent === d) break;
    d = parent;
  }
  throw new TsbuildError('COMPOSE_NOT_FOUND', `no compose file in ${dir} or above`, {
    hint: `create ${DEFAULT_FILES[0]} or name the file with -f`,
  });
}

/** Reads, merges and resolves a compose project (see ComposeOptions for where each part comes from). */
export function loadComposeProject(opts: ComposeOptions): ComposeProject {
  const warnings: string[] = [];
  const osEnv = new Map<string, string>();
  for (const [k, v] of Object.entries(opts.env)) if (v !== undefined) osEnv.set(k, v);

  const explicitFiles = (opts.files ?? []).map((f) => path.resolve(opts.cwd, f));
  const envDir = opts.projectDirectory ? path.resolve(opts.cwd, opts.projectDirectory) : explicitFiles[0] ? path.dirname(explicitFiles[0]) : opts.cwd;
  // The process environment wins over .env (compose's precedence).
  const dotenv = readDotEnv(opts, envDir, osEnv);
  const vars = new Map([...dotenv, ...osEnv]);

  let files = explicitFiles;
  if (files.length === 0 && vars.get('COMPOSE_FILE')) {
    const sep = vars.get('COMPOSE_PATH_SEPARATOR') || path.delimiter;
    files = vars
      .get('COMPOSE_FILE')!
      .split(sep)
      .filter(Boolean)
      .map((f) => path.resolve(opts.projectDirectory ? envDir : opts.cwd, f));
  }
  if (files.length === 0) files = discoverComposeFiles(opts.projectDirectory ? envDir : opts.cwd);
  const workingDir = opts.projectDirectory ? envDir : path.dirname(files[0]!);

  let merged: Tree = {};
  for (const file of files) {
    const tree = readComposeFile(file, vars, workingDir, new Set(), warnings);
    merged = mergeValue(merged, tree, '') as Tree;
  }
  merged = stripMarkers(merged) as Tree;

  const services = isTree(merged.services) ? merged.services : {};
  for (const name of Object.keys(services)) resolveExtends(services, name, new Set(), vars, warnings);
  for (const [name, svc] of Object.entries(services)) {
    const s = svc as Tree;
    delete s.extends;
    if (s.build === undefined && s.image === undefined) {
      throw invalid(`service ${JSON.stringify(name)} has neither an image nor a build section`, `give it "image: NAME" to use an image, or "build: DIR" to build one`);
    }
  }

  // Profiles: a service with `profiles:` is active only when one of them is (or it is named).
  const active = new Set(opts.profiles?.length ? opts.profiles : (vars.get('COMPOSE_PROFILES') ?? '').split(',').map((p) => p.trim()).filter(Boolean));
  const named = new Set(opts.services ?? []);
  for (const n of named) if (!(n in services)) throw invalid(`no such service: ${n}`, `the services are ${Object.keys(services).sort().join(', ') || '(none)'}`);
  for (const [name, svc] of Object.entries(services)) {
    const profiles = (svc as Tree).profiles;
    if (Array.isArray(profiles) && profiles.length > 0 && !active.has('*') && !named.has(name) && !profiles.some((p) => active.has(String(p)))) {
      delete services[name];
    }
  }

  // A name the user gives must already be valid (compose v2 refuses it otherwise); only the
  // directory's name is normalised.
  const given = opts.projectName || osEnv.get('COMPOSE_PROJECT_NAME') || dotenv.get('COMPOSE_PROJECT_NAME') || (typeof merged.name === 'string' ? merged.name : '');
  if (given && normalizeProjectName(given) !== given) {
    throw invalid(`invalid project name ${JSON.stringify(given)}: use lowercase letters, digits, "-" and "_", starting with a letter or digit`, `e.g. ${normalizeProjectName(given) || 'myapp'}`);
  }
  const name = given || normalizeProjectName(path.basename(workingDir));
  if (name === '') throw invalid(`the directory name ${JSON.stringify(path.basename(workingDir))} gives no project name`, 'name the project with -p NAME');

  return { name, workingDir, files, model: configModel(merged, services, name, workingDir, vars), warnings, variables: vars };
}

function readDotEnv(opts: ComposeOptions, envDir: string, osEnv: Map<string, string>): Map<string, string> {
  const out = new Map<string, string>();
  const files = opts.envFiles?.length ? opts.envFiles.map((f) => path.resolve(opts.cwd, f)) : [path.join(envDir, '.env')];
  for (const f of files) {
    if (!opts.envFiles?.length && !fs.existsSync(f)) continue;
    const st = fs.statSync(f, { throwIfNoEntry: false });
    if (st?.isDirectory()) continue;
    for (const [k, v] of parseEnvFile(readText(f, 'env file'), f, new Map([...out, ...osEnv]))) out.set(k, v);
  }
  return out;
}

/**
 * One file: parsed, top level checked, interpolated, `include`s read, services normalised
 * (list forms to mappings, `build: DIR` to `{context: DIR}`) and their relative paths made
 * absolute against `baseDir` (the project directory for -f files, the file's own directory
 * for included and extended files).
 */
function readComposeFile(file: string, vars: ReadonlyMap<string, string>, baseDir: string, including: Set<string>, warnings: string[]): Tree {
  const parsed = parseComposeYaml(readText(file, 'compose file'), file);
  if (parsed === null || parsed === undefined) return {};
  if (!isTree(parsed)) throw invalid(`${file}: a compose file must be a mapping at the top level`, 'start with "services:"');
  for (const key of Object.keys(parsed)) {
    if (!TOP_LEVEL.has(key) && !key.startsWith('x-')) {
      throw invalid(`${file}: unknown top-level key ${JSON.stringify(key)}`, `the top-level keys are ${[...TOP_LEVEL].join(', ')} and x-* extensions`);
    }
  }
  const tree = interpolateTree(parsed, vars, '') as Tree;
  for (const key of Object.keys(tree)) if (key.startsWith('x-')) delete tree[key];
  if (tree.services !== undefined && tree.services !== null && !isTree(tree.services)) throw invalid(`${file}: "services" must be a mapping of service names`);
  const services = (tree.services ?? {}) as Tree;
  for (const [name, svc] of Object.entries(services)) {
    if (!/^[a-zA-Z0-9._-]+$/.test(name)) throw invalid(`${file}: invalid service name ${JSON.stringify(name)}`, 'service names use letters, digits, ".", "_" and "-"');
    if (svc === null) services[name] = {};
    else if (svc === RESET) continue; // removes the service from earlier files
    else if (svc instanceof Override && isTree(svc.value)) services[name] = new Override(normaliseService(svc.value, name, file, baseDir));
    else if (!isTree(svc)) throw invalid(`${file}: service ${JSON.stringify(name)} must be a mapping`);
    else services[name] = normaliseService(svc, name, file, baseDir);
  }
  tree.services = services;
  if (isTree(tree.secrets)) {
    for (const s of Object.values(tree.secrets)) if (isTree(s) && typeof s.file === 'string') s.file = path.resolve(baseDir, s.file);
  }

  // include: other projects' services join this one; a name defined twice is an error, as in compose.
  const includes = tree.include;
  delete tree.include;
  if (includes !== undefined) {
    if (!Array.isArray(includes)) throw invalid(`${file}: "include" must be a list`);
    for (const inc of includes) {
      const spec = typeof inc === 'string' ? { path: inc } : isTree(inc) ? inc : undefined;
      const paths = spec ? (Array.isArray(spec.path) ? spec.path : [spec.path]) : [];
      if (!spec || paths.some((p) => typeof p !== 'string')) throw invalid(`${file}: an include entry needs a path`);
      const incFiles = (paths as string[]).map((p) => path.resolve(path.dirname(file), p));
      const incDir = typeof spec.project_directory === 'string' ? path.resolve(path.dirname(file), spec.project_directory) : path.dirname(incFiles[0]!);
      if (incFiles.some((f) => including.has(f))) throw invalid(`${file}: include cycle through ${incFiles.join(', ')}`);
      let incVars: ReadonlyMap<string, string> = vars;
      const envFiles = spec.env_file === undefined ? [path.join(incDir, '.env')] : (Array.isArray(spec.env_file) ? spec.env_file : [spec.env_file]).map((f) => path.resolve(path.dirname(file), String(f)));
      for (const ef of envFiles) {
        if (spec.env_file === undefined && !fs.existsSync(ef)) continue;
        // The including project's variables win over the included project's .env.
        incVars = new Map([...parseEnvFile(readText(ef, 'env file'), ef, vars), ...vars]);
      }
      let incTree: Tree = {};
      for (const f of incFiles) incTree = mergeValue(incTree, readComposeFile(f, incVars, incDir, new Set([...including, file, f]), warnings), '') as Tree;
      for (const [sname, svc] of Object.entries((incTree.services ?? {}) as Tree)) {
        if (sname in services) throw invalid(`${file}: service ${JSON.stringify(sname)} is defined both here and in the included ${incFiles.join(', ')}`);
        services[sname] = svc;
      }
      for (const section of ['secrets', 'networks', 'volumes', 'configs']) {
        if (isTree(incTree[section])) tree[section] = { ...(incTree[section] as Tree), ...(isTree(tree[section]) ? tree[section] : {}) };
      }
    }
  }
  return tree;
}

/** "KEY=VALUE" lists to mappings (a bare KEY maps to null), as compose merges them. */
function listToMapping(v: unknown, sep: '=' | ':' | 'host', where: string): unknown {
  if (!Array.isArray(v)) return v;
  const out: Tree = {};
  for (const item of v) {
    if (typeof item !== 'string') throw invalid(`${where}: expected "KEY=VALUE" strings, got ${JSON.stringify(item)}`);
    let at = item.indexOf(sep === 'host' ? '=' : sep);
    if (sep === 'host' && at < 0) at = item.indexOf(':');
    if (at < 0) out[item] = null;
    else out[item.slice(0, at)] = item.slice(at + 1);
  }
  return out;
}

const MAPPING_KEYS: Record<string, '=' | 'host'> = { environment: '=', labels: '=', annotations: '=', sysctls: '=', extra_hosts: 'host' };
const BUILD_MAPPING_KEYS: Record<string, '=' | 'host'> = { args: '=', labels: '=', extra_hosts: 'host', additional_contexts: '=' };

function normaliseService(svc: Tree, name: string, file: string, baseDir: string): Tree {
  const where = `${file}: service ${name}`;
  for (const key of Object.keys(svc)) {
    if (!SERVICE_KEYS.has(key) && !key.startsWith('x-')) throw invalid(`${where}: unknown key ${JSON.stringify(key)}`, 'see the Compose Specification for the keys of a service');
  }
  const out: Tree = {};
  for (const [key, value] of Object.entries(svc)) {
    if (key.startsWith('x-')) continue;
    const sep = MAPPING_KEYS[key];
    out[key] = sep ? listToMapping(value, sep, `${where}: ${key}`) : value;
  }
  if (out.env_file !== undefined) {
    const list = Array.isArray(out.env_file) ? out.env_file : [out.env_file];
    out.env_file = list.map((e) => (isTree(e) ? { ...e, path: path.resolve(baseDir, String(e.path)) } : path.resolve(baseDir, String(e))));
  }
  if (out.build !== undefined && !isTree(out.build) && typeof out.build !== 'string') throw invalid(`${where}: "build" must be a path or a mapping`);
  if (typeof out.build === 'string') out.build = { context: out.build };
  if (isTree(out.build)) {
    const b: Tree = { ...out.build };
    for (const key of Object.keys(b)) {
      if (!BUILD_KEYS.has(key) && !key.startsWith('x-')) throw invalid(`${where}: unknown build key ${JSON.stringify(key)}`, `the build keys are ${[...BUILD_KEYS].join(', ')}`);
      const sep = BUILD_MAPPING_KEYS[key];
      if (sep) b[key] = listToMapping(b[key], sep, `${where}: build.${key}`);
    }
    if (typeof b.context === 'string') b.context = resolveLocal(baseDir, b.context);
    if (isTree(b.additional_contexts)) {
      for (const [k, v] of Object.entries(b.additional_contexts)) if (typeof v === 'string') b.additional_contexts[k] = resolveLocal(baseDir, v);
    }
    out.build = b;
  }
  if (isTree(out.extends) || typeof out.extends === 'string') {
    const ext: Tree = typeof out.extends === 'string' ? { service: out.extends } : { ...out.extends };
    if (typeof ext.file === 'string') ext.file = path.resolve(path.dirname(file), ext.file);
    out.extends = ext;
  }
  return out;
}

/** A local path made absolute; URLs and `docker-image://`, `service:` references stay. */
function resolveLocal(baseDir: string, p: string): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(p) || p.startsWith('service:') || /^git@/.test(p)) return p;
  return path.resolve(baseDir, p);
}

/** `extends: {service, file}`: the base service (itself resolved first), then this one merged onto it. */
function resolveExtends(services: Tree, name: string, seen: Set<string>, vars: ReadonlyMap<string, string>, warnings: string[], fileServices?: Tree): Tree {
  const svc = (fileServices ?? services)[name] as Tree;
  const ext = svc.extends as Tree | undefined;
  if (!ext) return svc;
  const key = `${typeof ext.file === 'string' ? ext.file : ''}#${String(ext.service)}`;
  if (seen.has(key)) throw invalid(`service ${JSON.stringify(name)}: extends cycle through ${[...seen, key].join(' -> ')}`);
  if (typeof ext.service !== 'string') throw invalid(`service ${JSON.stringify(name)}: extends needs a service name`);
  let pool = fileServices ?? services;
  if (typeof ext.file === 'string') {
    pool = (readComposeFile(ext.file, vars, path.dirname(ext.file), new Set(), warnings).services ?? {}) as Tree;
  }
  if (!isTree(pool[ext.service])) {
    throw invalid(`service ${JSON.stringify(name)} extends ${JSON.stringify(ext.service)}, which is not defined${typeof ext.file === 'string' ? ` in ${ext.file}` : ''}`);
  }
  const base = resolveExtends(services, ext.service, new Set([...seen, key]), vars, warnings, pool);
  const { extends: _drop, ...own } = svc;
  const { extends: _baseDrop, ...baseRest } = base;
  const merged = stripMarkers(mergeValue(baseRest, own, 'services.*')) as Tree;
  (fileServices ?? services)[name] = merged;
  return merged;
}

/** The model in `docker compose config`'s shape: defaults filled in, short forms expanded, keys sorted. */
function configModel(merged: Tree, services: Tree, name: string, workingDir: string, vars: ReadonlyMap<string, string>): Tree {
  const outServices: Tree = {};
  let usesDefaultNetwork = false;
  for (const sname of Object.keys(services).sort()) {
    const s: Tree = { ...(services[sname] as Tree) };
    if (isTree(s.build)) {
      const b: Tree = { ...s.build };
      b.context ??= workingDir;
      if (b.dockerfile === undefined && b.dockerfile_inline === undefined) b.dockerfile = 'Dockerfile';
      // A bare `NAME:` arg takes its value from the environment (and .env) when set, as compose resolves it.
      if (isTree(b.args)) b.args = Object.fromEntries(Object.entries(b.args).map(([k, v]) => [k, v === null ? (vars.get(k) ?? null) : String(v)]));
      s.build = sortKeys(b);
    }
    // env_file entries are read into environment (its own entries win), as both compose versions print it.
    if (Array.isArray(s.env_file)) {
      const fromFiles: Tree = {};
      for (const e of s.env_file) {
        const file = isTree(e) ? String(e.path) : String(e);
        if (isTree(e) && e.required === false && !fs.existsSync(file)) continue;
        for (const [k, v] of parseEnvFile(readText(file, `env_file of service ${sname}`), file, vars)) fromFiles[k] = v;
      }
      s.environment = { ...fromFiles, ...(isTree(s.environment) ? s.environment : {}) };
      delete s.env_file;
    }
    // `- NAME` without a value takes it from the environment, as compose resolves it; unset stays null.
    if (isTree(s.environment)) s.environment = sortKeys(Object.fromEntries(Object.entries(s.environment).map(([k, v]) => [k, v === null ? (vars.get(k) ?? null) : String(v)])));
    if (Array.isArray(s.ports)) s.ports = s.ports.flatMap((p) => longPorts(p, sname));
    if (Array.isArray(s.expose)) s.expose = s.expose.map(String);
    if (Array.isArray(s.depends_on)) s.depends_on = Object.fromEntries(s.depends_on.map((d) => [String(d), { condition: 'service_started', required: true }]));
    if (Array.isArray(s.volumes)) s.volumes = s.volumes.map((v) => longVolume(v, workingDir));
    if (s.network_mode === undefined && s.networks === undefined) {
      s.networks = { default: null };
      usesDefaultNetwork = true;
    }
    outServices[sname] = sortKeys(s);
  }
  const model: Tree = { name, services: outServices };
  const networks: Tree = isTree(merged.networks) ? { ...merged.networks } : {};
  if (usesDefaultNetwork && networks.default === undefined) networks.default = { name: `${name}_default` };
  for (const [k, v] of Object.entries(networks)) {
    if (v === null || (isTree(v) && v.name === undefined && v.external !== true)) networks[k] = { ...(isTree(v) ? v : {}), name: `${name}_${k}` };
  }
  if (Object.keys(networks).length > 0) model.networks = sortKeys(networks);
  for (const section of ['volumes', 'secrets', 'configs']) {
    if (isTree(merged[section])) model[section] = sortKeys(merged[section]);
  }
  return model;
}

/** Ports in compose v2's long form: `"127.0.0.1:8080:80/udp"` -> {host_ip, mode, protocol, published, target}. */
function longPorts(p: unknown, service: string): Tree[] {
  if (isTree(p)) return [sortKeys({ mode: 'ingress', protocol: 'tcp', ...p, ...(p.published !== undefined ? { published: String(p.published) } : {}) })];
  const text = String(p);
  const m = /^(?:(?:(\[[^\]]+\]|[^:]*):)?([0-9]*(?:-[0-9]+)?):)?([0-9]+(?:-[0-9]+)?)(?:\/(tcp|udp|sctp))?$/.exec(text);
  if (!m) throw invalid(`service ${JSON.stringify(service)}: invalid port ${JSON.stringify(text)}`, 'write [IP:][HOST:]CONTAINER[/PROTOCOL], e.g. "8080:80"');
  const [, ip, published, target, protocol = 'tcp'] = m;
  const expand = (r: string): number[] => {
    const [a, b] = r.split('-').map(Number);
    return b === undefined ? [a!] : Array.from({ length: b - a! + 1 }, (_x, i) => a! + i);
  };
  const targets = expand(target!);
  const pubs = published ? expand(published) : [];
  return targets.map((t, i) =>
    sortKeys({
      mode: 'ingress',
      ...(ip ? { host_ip: ip.replace(/^\[|\]$/g, '') } : {}),
      target: t,
      ...(published ? { published: String(pubs.length === targets.length ? pubs[i] : published) } : {}),
      protocol,
    }),
  );
}

/**
 * Volumes in compose v2's long form: `./src:/app:ro` -> {type: bind, source: ABS, target, read_only, bind},
 * `data:/data` -> {type: volume, source, target, volume: {}}, `/data` -> an anonymous volume.
 */
function longVolume(v: unknown, workingDir: string): unknown {
  if (typeof v !== 'string') return v;
  const parts = v.split(':');
  if (parts.length === 1) return { target: parts[0], type: 'volume', volume: {} };
  const [source, target, mode = ''] = parts as [string, string, string?];
  const readOnly = mode.split(',').includes('ro');
  const isPath = source.startsWith('.') || source.startsWith('/') || source.startsWith('~');
  if (!isPath) return sortKeys({ type: 'volume', source, target, ...(readOnly ? { read_only: true } : {}), volume: {} });
  return sortKeys({ type: 'bind', source: path.resolve(workingDir, source), target, ...(readOnly ? { read_only: true } : {}), bind: { create_host_path: true } });
}

function sortKeys(t: Tree): Tree {
  const out: Tree = {};
  for (const k of Object.keys(t).sort()) out[k] = t[k];
  return out;
}
