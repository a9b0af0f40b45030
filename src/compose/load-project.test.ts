import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { composeBuildPlan, loadComposeProject, normalizeProjectName } from './index.js';

const dirs: string[] = [];
function project(files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tsbuild-compose-unit-'));
  dirs.push(dir);
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  }
  return dir;
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof TsbuildError) return `${err.code}: ${err.message}`;
    throw err;
  }
  return undefined;
}

type Svc = Record<string, any>;
const svc = (p: ReturnType<typeof loadComposeProject>, name: string): Svc => (p.model.services as Record<string, Svc>)[name]!;

describe('loadComposeProject', () => {
  it('finds compose.yaml and its override, merges mappings, appends sequences, unique ports and volumes', () => {
    const dir = project({
      'compose.yaml': `
services:
  web:
    build: ./web
    environment:
      - MODE=prod
      - KEEP=1
    dns: [1.1.1.1]
    ports: ["8080:80", "443:443"]
    volumes: ["data:/data", "./conf:/etc/conf:ro"]
    command: ["serve", "--prod"]
`,
      'compose.override.yaml': `
services:
  web:
    environment:
      MODE: dev
    dns: [8.8.8.8]
    ports: ["9090:80", "443:443"]
    volumes: ["./devdata:/data"]
    command: ["serve", "--dev"]
`,
      'docker-compose.yml': 'services: {ignored: {image: x}}\n',
      'web/Dockerfile': 'FROM busybox\n',
    });
    const p = loadComposeProject({ cwd: path.join(dir, 'web'), env: {} });
    expect(p.files).toEqual([path.join(dir, 'compose.yaml'), path.join(dir, 'compose.override.yaml')]);
    const web = svc(p, 'web');
    expect(web.environment).toEqual({ KEEP: '1', MODE: 'dev' });
    expect(web.dns).toEqual(['1.1.1.1', '8.8.8.8']);
    expect(web.command).toEqual(['serve', '--dev']);
    expect(web.volumes).toEqual([
      { type: 'bind', source: path.join(dir, 'devdata'), target: '/data', bind: { create_host_path: true } },
      { type: 'bind', source: path.join(dir, 'conf'), target: '/etc/conf', read_only: true, bind: { create_host_path: true } },
    ]);
    expect(web.ports.map((x: Svc) => `${x.published}:${x.target}`)).toEqual(['8080:80', '443:443', '9090:80']);
    expect(web.build).toEqual({ context: path.join(dir, 'web'), dockerfile: 'Dockerfile' });
    expect(p.name).toBe(normalizeProjectName(path.basename(dir)));
    expect(normalizeProjectName('_My Shop.v2')).toBe('myshopv2');
    expect(Object.keys(p.model.services as object)).toEqual(['web']);
  });

  it('honours !reset and !override, anchors, aliases and merge keys, and drops x- fields', () => {
    const dir = project({
      'base.yaml': `
x-build: &build
  context: .
  args:
    BASE: "1"
x-env: &env
  LOG: info
services:
  a:
    build:
      <<: *build
      target: a
    environment:
      <<: *env
      OWN: a
    ports: ["1000:1000"]
    dns: [1.1.1.1, 1.0.0.1]
  b:
    build: *build
    image: reg.example/b:\${TAG:-dev}
  gone:
    image: old
`,
      'over.yaml': `
services:
  gone: !reset
  b: !override
    image: only-image
  a:
    ports: !reset []
    dns: !override ["\${DNS:-9.9.9.9}"]
    build:
      args: !override
        ONLY: "2"
`,
      Dockerfile: 'FROM busybox\n',
    });
    const p = loadComposeProject({ cwd: dir, env: { TAG: '7' }, files: ['base.yaml', 'over.yaml'], projectName: 'my_app-v2' });
    expect(p.name).toBe('my_app-v2');
    expect(codeOf(() => loadComposeProject({ cwd: dir, env: {}, files: ['base.yaml'], projectName: 'My App' }))).toMatch(/^COMPOSE_INVALID: invalid project name "My App"/);
    const a = svc(p, 'a');
    expect(a.ports).toBeUndefined();
    expect(a.dns).toEqual(['9.9.9.9']);
    expect(a.build.args).toEqual({ ONLY: '2' });
    expect(a.build.target).toBe('a');
    expect(a.environment).toEqual({ LOG: 'info', OWN: 'a' });
    expect(svc(p, 'b')).toEqual({ image: 'only-image', networks: { default: null } });
    expect(Object.keys(p.model.services as object)).toEqual(['a', 'b']);
    const base = loadComposeProject({ cwd: dir, env: { TAG: '7' }, files: ['base.yaml'] });
    expect(svc(base, 'b').image).toBe('reg.example/b:7');
    expect(svc(base, 'b').build.args).toEqual({ BASE: '1' });
    expect(JSON.stringify(p.model)).not.toContain('x-');
  });

  it('reads .env (and --env-file), lets the environment win, and takes COMPOSE_FILE and COMPOSE_PROJECT_NAME from it', () => {
    const dir = project({
      '.env': 'COMPOSE_FILE=one.yaml:two.yaml\nCOMPOSE_PROJECT_NAME=fromdotenv\nVERSION=1.0\nREGISTRY=local\n',
      'other.env': 'VERSION=9.9\n',
      'one.yaml': 'services:\n  app:\n    image: ${REGISTRY}/app:${VERSION}\n',
      'two.yaml': 'services:\n  app:\n    environment: ["GREETING=${GREETING:-hello}"]\n',
      'three.yaml': 'services:\n  app:\n    image: app:${VERSION:-none}\n',
    });
    const p = loadComposeProject({ cwd: dir, env: { REGISTRY: 'env.example' } });
    expect(p.name).toBe('fromdotenv');
    expect(svc(p, 'app').image).toBe('env.example/app:1.0');
    expect(svc(p, 'app').environment).toEqual({ GREETING: 'hello' });
    const q = loadComposeProject({ cwd: dir, env: { COMPOSE_PROJECT_NAME: 'fromenv' }, files: ['three.yaml'], envFiles: ['other.env'] });
    expect(q.name).toBe('fromenv');
    expect(svc(q, 'app').image).toBe('app:9.9');
  });

  it('resolves extends from the same file and from another file, paths relative to that file', () => {
    const dir = project({
      'compose.yaml': `
services:
  base:
    image: base
    environment: {A: "1"}
  child:
    extends: base
    environment: {B: "2"}
  remote:
    extends:
      file: common/services.yaml
      service: builder
    build:
      target: release
`,
      'common/services.yaml': 'services:\n  builder:\n    build:\n      context: ./src\n      args: [X=1]\n',
      'common/src/Dockerfile': 'FROM busybox\n',
    });
    const p = loadComposeProject({ cwd: dir, env: {} });
    expect(svc(p, 'child')).toMatchObject({ image: 'base', environment: { A: '1', B: '2' } });
    expect(svc(p, 'remote').build).toEqual({ context: path.join(dir, 'common/src'), args: { X: '1' }, target: 'release', dockerfile: 'Dockerfile' });
  });

  it('includes another project, with its paths relative to its own directory', () => {
    const dir = project({
      'compose.yaml': 'include:\n  - lib/compose.yaml\nservices:\n  app:\n    image: app\n',
      'lib/compose.yaml': 'services:\n  worker:\n    build: .\n',
      'lib/Dockerfile': 'FROM busybox\n',
    });
    const p = loadComposeProject({ cwd: dir, env: {} });
    expect(svc(p, 'worker').build.context).toBe(path.join(dir, 'lib'));
  });

  it('keeps services of inactive profiles out, unless named or their profile is enabled', () => {
    const dir = project({ 'compose.yaml': 'services:\n  app: {image: a}\n  debug: {image: d, profiles: [dev]}\n  docs: {image: m, profiles: [docs]}\n' });
    const names = (o: Partial<Parameters<typeof loadComposeProject>[0]>) => Object.keys(loadComposeProject({ cwd: dir, env: {}, ...o }).model.services as object);
    expect(names({})).toEqual(['app']);
    expect(names({ profiles: ['dev'] })).toEqual(['app', 'debug']);
    expect(names({ env: { COMPOSE_PROFILES: 'dev,docs' } })).toEqual(['app', 'debug', 'docs']);
    expect(names({ services: ['docs'] })).toEqual(['app', 'docs']);
  });

  it('gives clear errors for bad input', () => {
    const bad = (files: Record<string, string>, env: Record<string, string> = {}) => codeOf(() => loadComposeProject({ cwd: project(files), env }));
    expect(bad({ 'compose.yaml': 'services:\n  a:\n    image: [x\n' })).toMatch(/^COMPOSE_SYNTAX: .*compose\.yaml:4:1: invalid YAML/);
    expect(bad({ 'compose.yaml': 'services: {a: {image: x}}\nservice: {}\n' })).toMatch(/^COMPOSE_INVALID: .*unknown top-level key "service"/);
    expect(bad({ 'compose.yaml': 'services: {a: {environment: {A: "1"}}}\n' })).toMatch(/^COMPOSE_INVALID: service "a" has neither an image nor a build/);
    expect(bad({ 'compose.yaml': 'services: {a: {image: "${REG:?set REG to your registry}/a"}}\n' })).toMatch(/^COMPOSE_VARIABLE: .*set REG to your registry/);
    expect(bad({ 'compose.yaml': 'services: {a: {image: x, biuld: .}}\n' })).toMatch(/unknown key "biuld"/);
    expect(bad({ 'compose.yaml': 'services: {a: {extends: b}, b: {extends: a}}\n' })).toMatch(/extends cycle/);
    expect(bad({})).toMatch(/^COMPOSE_NOT_FOUND/);
  });
});

describe('composeBuildPlan', () => {
  it('turns build sections into build requests with compose v2 image names, ordered by service: contexts', () => {
    const dir = project({
      'compose.yaml': `
name: shop
secrets:
  token: {file: ./token.txt}
  apikey: {environment: API_KEY}
services:
  web:
    build:
      context: web
      dockerfile: web.Dockerfile
      args: {VERSION: "2", FROM_ENV: null}
      labels: [team=web]
      tags: ["reg.example/web:2"]
      additional_contexts:
        base: service:base
      secrets: [token, {source: apikey, target: key}]
      extra_hosts: ["db=10.0.0.2"]
      privileged: true
      no_cache: true
  base:
    build: base
    image: shop/base:1
  db:
    image: postgres
`,
      'token.txt': 'secret\n',
      'web/web.Dockerfile': 'FROM base\n',
      'base/Dockerfile': 'FROM busybox\n',
    });
    const p = loadComposeProject({ cwd: dir, env: { FROM_ENV: 'e' } });
    const plan = composeBuildPlan(p);
    expect(plan.builds.map((b) => b.service)).toEqual(['base', 'web']);
    const web = plan.builds[1]!;
    expect(web).toMatchObject({
      image: 'shop-web',
      context: path.join(dir, 'web'),
      dockerfile: path.join(fs.realpathSync(dir), 'web/web.Dockerfile'),
      args: { VERSION: '2', FROM_ENV: 'e' },
      labels: { team: 'web' },
      tags: ['reg.example/web:2'],
      needs: ['base'],
      noCache: true,
      extraHosts: ['db:10.0.0.2'],
      secrets: [
        { id: 'token', file: path.join(dir, 'token.txt') },
        { id: 'key', env: 'API_KEY' },
      ],
    });
    expect(plan.builds[0]!.image).toBe('shop/base:1');
    expect(plan.warnings.join('\n')).toMatch(/service "web": build.privileged is not applied/);
    expect(composeBuildPlan(p, { only: ['web'] }).builds.map((b) => b.service)).toEqual(['base', 'web']);
  });

  it('builds an image that several services name once, and refuses two different builds into one image', () => {
    const dir = project({
      'compose.yaml': 'x-app: &app\n  build: .\n  image: shop/app\nservices:\n  web: *app\n  jobs:\n    <<: *app\n    command: [work]\n  other: {build: ., image: shop/other}\n',
      Dockerfile: 'FROM busybox\n',
    });
    const plan = composeBuildPlan(loadComposeProject({ cwd: dir, env: {} }));
    expect(plan.builds.map((b) => b.service)).toEqual(['jobs', 'other']);
    expect([...plan.sameAs]).toEqual([['web', 'jobs']]);
    fs.writeFileSync(path.join(dir, 'compose.override.yaml'), 'services:\n  web:\n    build:\n      target: web\n');
    expect(codeOf(() => composeBuildPlan(loadComposeProject({ cwd: dir, env: {} })))).toMatch(/^COMPOSE_INVALID: services "jobs" and "web" build different things into the same image shop\/app/);
  });

  it('adds depends_on services with withDependencies only', () => {
    const dir = project({
      'compose.yaml': 'services:\n  api: {build: ., depends_on: [migrate, db]}\n  migrate: {build: .}\n  db: {image: postgres}\n  other: {build: .}\n',
      Dockerfile: 'FROM busybox\n',
    });
    const p = loadComposeProject({ cwd: dir, env: {} });
    expect(composeBuildPlan(p, { only: ['api'] }).builds.map((b) => b.service)).toEqual(['api']);
    expect(composeBuildPlan(p, { only: ['api'], withDependencies: true }).builds.map((b) => b.service)).toEqual(['api', 'migrate']);
    expect(composeBuildPlan(p).builds.map((b) => b.service)).toEqual(['api', 'migrate', 'other']);
  });

  it('rejects a cycle of service: contexts and a Dockerfile outside the project', () => {
    const dir = project({
      'compose.yaml': `
services:
  a: {build: {context: ., additional_contexts: {b: "service:b"}}}
  b: {build: {context: ., additional_contexts: [a=service:a]}}
`,
      Dockerfile: 'FROM busybox\n',
    });
    expect(codeOf(() => composeBuildPlan(loadComposeProject({ cwd: dir, env: {} })))).toMatch(/^COMPOSE_CYCLE: .*a -> b -> a|b -> a -> b/);
    const outside = project({ 'Dockerfile.evil': 'FROM busybox\n' });
    const dir2 = project({ 'compose.yaml': `services:\n  a: {build: {context: ., dockerfile: ../${path.basename(outside)}/Dockerfile.evil}}\n` });
    expect(codeOf(() => composeBuildPlan(loadComposeProject({ cwd: dir2, env: {} })))).toMatch(/^CONTEXT_ESCAPE: .*outside the build context/);
  });
});
