import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs/promises';
import path from 'node:path';
import { parse } from 'yaml';
import { requireTool, storeWithBusybox, tempDir, tool, tsbuild, writeTree } from './support/cli.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';

// `tsbuild compose` on real compose projects as users write them: a base file and its
// override, anchors and merge keys, .env with defaults, extends from another file, a
// service: context; the builds run for real on busybox and the images are run afterwards.
let work: string;
let root: string;

beforeAll(async () => {
  work = await tempDir('compose');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
});
afterAll(async () => {
  await fs.rm(work, { recursive: true, force: true });
});

/** The shop project: what the README's example and the docker-compose comparison use. */
async function shopProject(dir: string): Promise<void> {
  await writeTree(dir, {
    'compose.yaml': `# A small shop: a shared base image, an API and a worker built on it.
x-defaults: &defaults
  restart: unless-stopped
  environment: &env
    LOG_LEVEL: \${LOG_LEVEL:-info}
    REGION: eu

services:
  base:
    build: ./base
    image: shop/base:\${VERSION:-0.0.1}

  api:
    <<: *defaults
    build:
      context: ./api
      args:
        VERSION: \${VERSION:-0.0.1}
        GREETING:
      additional_contexts:
        base: service:base
      labels:
        org.example.team: api
    ports:
      - "8080:80"
      - "127.0.0.1:5353:53/udp"
    environment:
      <<: *env
      DB: postgres://db/shop
    command: ["serve", "--port", "80"]

  worker:
    <<: *defaults
    build:
      context: ./worker
      dockerfile: worker.Dockerfile
      target: release
    extends:
      file: common.yaml
      service: tuned

  db:
    image: postgres:16
    environment:
      - POSTGRES_PASSWORD=$\${NOT_INTERPOLATED}
    volumes: ["dbdata:/var/lib/postgresql/data", "./initdb:/docker-entrypoint-initdb.d:ro", "/tmp"]
    expose: [5432]

  cache:
    image: redis:7
    depends_on: [db]
    env_file: [cache.env]
    environment:
      MAXMEMORY: 64mb

volumes:
  dbdata: {}
`,
    'cache.env': '# settings of the cache\nMAXMEMORY=1gb\nPOLICY=allkeys-lru\n',
    'common.yaml': `services:
  tuned:
    environment:
      FROM_COMMON: "yes"
    dns: [1.1.1.1]
`,
    'compose.override.yaml': `services:
  api:
    environment:
      LOG_LEVEL: debug
    ports:
      - "9229:9229"
    command: ["serve", "--inspect"]
    dns: [8.8.8.8]
  worker:
    build:
      args:
        - STAGE_NOTE=from override
    dns: [9.9.9.9]
`,
    '.env': '# versions of this checkout\nVERSION=1.4.2\nGREETING=hello from .env\n',
    'base/Dockerfile': 'FROM busybox\nRUN echo base-layer > /base.txt\n',
    'api/Dockerfile': 'FROM base\nARG VERSION\nARG GREETING\nRUN echo "$GREETING $VERSION" > /api.txt && cat /base.txt\n',
    'worker/worker.Dockerfile': 'FROM busybox AS build\nARG STAGE_NOTE\nRUN echo "$STAGE_NOTE" > /note\n\nFROM busybox AS release\nCOPY --from=build /note /note\n\nFROM release AS debug\nRUN echo never-built > /debug\n',
  });
}

describe('tsbuild compose build', () => {
  it('builds every service of a multi-file project, with the names compose gives them', async () => {
    const dir = path.join(work, 'shop');
    await shopProject(dir);
    const r = await tsbuild(['compose', 'build', '--progress', 'plain'], { root, cwd: dir, env: { LOG_LEVEL: '' } });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    // Every step line names its service; the base is built before the API that uses it.
    expect(r.stderr).toMatch(/^#\d+ \[base\] \[2\/2\] RUN echo base-layer/m);
    expect(r.stderr).toMatch(/^#\d+ \[api\] \[1\/4\] FROM docker\.io\/shop\/base:1\.4\.2/m);
    expect(r.stderr).toMatch(/^#\d+ \[worker\] /m);
    expect(r.stderr.indexOf('[base] Built')).toBeLessThan(r.stderr.indexOf('[api] [1/4]'));
    expect(r.stdout.trim().split('\n').sort()).toEqual(['api docker.io/library/shop-api:latest', 'base docker.io/shop/base:1.4.2', 'worker docker.io/library/shop-worker:latest']);

    // The images hold what each service's Dockerfile made, with args from .env and the override.
    const api = await tsbuild(['run', 'shop-api', 'cat', '/api.txt', '/base.txt'], { root });
    expect(api.stderr).toBe('');
    expect(api.stdout).toBe('hello from .env 1.4.2\nbase-layer\n');
    const worker = await tsbuild(['run', 'shop-worker', 'sh', '-c', 'cat /note; ls /debug 2>&1 || true'], { root });
    expect(worker.stdout).toMatch(/^from override\n.*No such file/);
    const inspected = JSON.parse((await tsbuild(['inspect', 'shop-api'], { root })).stdout) as Array<{ Config: { Labels: Record<string, string> } }>;
    expect(inspected[0]!.Config.Labels['org.example.team']).toBe('api');

    // A second build is fully cached; -q prints nothing on stdout.
    const again = await tsbuild(['compose', 'build', '--progress', 'plain', 'api'], { root, cwd: dir });
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/\[api\] \[4\/4\] RUN .*\n#\d+ CACHED/);
    // service: contexts bring their service along even when only the user names the other.
    expect(again.stderr).toMatch(/\[base\] Built/);
    const quiet = await tsbuild(['compose', 'build', '-q', 'worker'], { root, cwd: dir });
    expect(quiet.code).toBe(0);
    expect(quiet.stdout).toBe('');
  });

  it('takes additional_contexts as named contexts: a directory, docker-image:// and service:, over a stage of the same name', async () => {
    const dir = path.join(work, 'contexts');
    await writeTree(dir, {
      'compose.yaml': `services:
  tools:
    build:
      context: ./tools
    image: ctx/tools
  app:
    build:
      context: ./app
      additional_contexts:
        assets: ./shared/assets
        os: docker-image://busybox:latest
        deps: service:tools
`,
      'tools/Dockerfile': 'FROM busybox\nRUN echo tool-made > /tool.txt\n',
      'shared/assets/logo.txt': 'logo\n',
      'shared/assets/.dockerignore': 'draft*\n',
      'shared/assets/draft.txt': 'not for the image\n',
      // "deps" is also a stage here: the named context replaces it, as BuildKit does.
      'app/Dockerfile': 'FROM busybox AS deps\nRUN exit 5\nFROM os\nCOPY --from=assets . /assets/\nCOPY --from=deps /tool.txt /tool.txt\nRUN --mount=type=bind,from=assets,target=/a cat /a/logo.txt > /mounted.txt\n',
    });
    const r = await tsbuild(['compose', 'build', '--progress', 'plain'], { root, cwd: dir });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/\[app\] \[1\/4\] FROM docker\.io\/library\/busybox:latest \[context os\]/);
    const app = await tsbuild(['run', 'contexts-app', 'sh', '-c', 'cat /assets/logo.txt /tool.txt /mounted.txt; ls /assets'], { root });
    expect(app.stdout).toBe('logo\ntool-made\nlogo\nlogo.txt\n');

    // A path that does not exist: exit 2, naming the service and the value.
    await fs.writeFile(path.join(dir, 'compose.yaml'), 'services:\n  app:\n    build:\n      context: ./app\n      additional_contexts:\n        assets: ./nowhere\n');
    const bad = await tsbuild(['compose', 'build'], { root, cwd: dir });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/service "app": additional context "assets=.*nowhere": .* is not a directory/);
  });

  it('runs a step two services reach at the same moment once: the other waits and takes it as a hit', async () => {
    const dir = path.join(work, 'inflight');
    // The same base and RUN in both (a random file, then a pause, so both builds are in the
    // step together); different last steps, so the services are two builds, not one.
    const run = 'RUN echo RAN-SHARED-STEP && head -c 32 /dev/urandom | od -x > /random && sleep 2';
    await writeTree(dir, {
      'compose.yaml': 'services:\n  one: {build: ./one}\n  two: {build: ./two}\n',
      'one/Dockerfile': `FROM busybox\n${run}\nLABEL svc=one\n`,
      'two/Dockerfile': `FROM busybox\n${run}\nLABEL svc=two\n`,
    });
    const t0 = Date.now();
    const r = await tsbuild(['compose', 'build', '--progress', 'plain'], { root, cwd: dir });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    // Run once: the step's output under one service's step id, CACHED under the other's.
    const ids = [...r.stderr.matchAll(/^#(\d+) \[(?:one|two)\] \[2\/3\] RUN echo RAN-SHARED-STEP/gm)].map((m) => m[1]);
    expect(ids).toHaveLength(2);
    const ran = ids.filter((id) => r.stderr.includes(`\n#${id} RAN-SHARED-STEP\n`));
    const cached = ids.filter((id) => r.stderr.includes(`\n#${id} CACHED\n`));
    expect(ran).toHaveLength(1);
    expect(cached).toHaveLength(1);
    expect(cached[0]).not.toBe(ran[0]);
    // In parallel: both done in about one step's time, not two.
    expect(Date.now() - t0).toBeLessThan(15_000);
    const layers = async (name: string) => (JSON.parse((await tsbuild(['inspect', name], { root })).stdout) as Array<{ RootFS: { Layers: string[] } }>)[0]!.RootFS.Layers;
    const one = await layers('inflight-one');
    const two = await layers('inflight-two');
    expect(one).toHaveLength(2);
    expect(two).toEqual(one);
    const random = await tsbuild(['run', 'inflight-one', 'cat', '/random'], { root });
    expect((await tsbuild(['run', 'inflight-two', 'cat', '/random'], { root })).stdout).toBe(random.stdout);
  });

  it('stops on a failed service, names it, and exits 1', async () => {
    const dir = path.join(work, 'failing');
    await writeTree(dir, {
      'compose.yml': `services:
  good:
    build:
      context: .
      dockerfile_inline: |
        FROM busybox
        RUN sleep 2 && echo ok > /ok
  bad:
    build:
      context: .
      dockerfile_inline: |
        FROM busybox
        RUN echo about to fail && exit 3
`,
    });
    const r = await tsbuild(['compose', 'build', '--progress', 'plain'], { root, cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/error: .*service "bad": RUN echo about to fail && exit 3 exited with code 3/);
    expect(r.stderr).not.toMatch(/\[good\] Built/);
    const images = await tsbuild(['images'], { root });
    expect(images.stdout).not.toContain('failing-good');
  });

  it('gives RUN steps the build secrets of the top-level secrets (file and environment), never in the image', async () => {
    const dir = path.join(work, 'secrets');
    await writeTree(dir, {
      'compose.yaml': `secrets:
  token:
    file: ./secrets/token.txt
  apikey:
    environment: API_KEY
services:
  app:
    build:
      context: .
      secrets:
        - token
        - source: apikey
          target: key
`,
      'secrets/token.txt': 'file-secret',
      Dockerfile:
        // The RUN text must not hold the values (it is in the image's history): lengths only.
        'FROM busybox\nRUN --mount=type=secret,id=token --mount=type=secret,id=key echo "$(cat /run/secrets/token | wc -c) $(cat /run/secrets/key | wc -c)" > /checked\n',
    });
    const r = await tsbuild(['compose', 'build', '--progress', 'plain'], { root, cwd: dir, env: { API_KEY: 'env-secret' } });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    const out = path.join(work, 'secrets-image.tar');
    expect((await tsbuild(['save', '-o', out, 'secrets-app'], { root })).code).toBe(0);
    const archive = await fs.readFile(out);
    expect(archive.includes('file-secret')).toBe(false);
    expect(archive.includes('env-secret')).toBe(false);
    const run = await tsbuild(['run', 'secrets-app', 'cat', '/checked'], { root });
    expect(run.stdout).toBe(`${'file-secret'.length} ${'env-secret'.length}\n`);
    // Without the variable, the error names it.
    const missing = await tsbuild(['compose', 'build'], { root, cwd: dir, env: { API_KEY: undefined } });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/id=key: the environment variable API_KEY is not set/);
  });

  it('forwards build.ssh keys to RUN --mount=type=ssh', async () => {
    await requireTool('ssh-keygen');
    const dir = path.join(work, 'ssh');
    await writeTree(dir, {
      'compose.yaml': 'services:\n  app:\n    build:\n      context: .\n      ssh:\n        - deploy=./keys/id_ed25519\n',
      Dockerfile: 'FROM busybox\nRUN --mount=type=ssh,id=deploy test -S "$SSH_AUTH_SOCK" && echo agent > /agent\n',
    });
    await fs.mkdir(path.join(dir, 'keys'));
    await tool('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'compose-test', '-f', path.join(dir, 'keys', 'id_ed25519')]);
    const r = await tsbuild(['compose', 'build', '--progress', 'plain'], { root, cwd: dir });
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect((await tsbuild(['run', 'ssh-app', 'cat', '/agent'], { root })).stdout).toBe('agent\n');
  });

  it('gives RUN steps the /dev/shm size of build.shm_size (docker size or bytes); a bad size exits 2 naming it', async () => {
    const dir = path.join(work, 'shm');
    await writeTree(dir, {
      'compose.yaml': 'services:\n  small:\n    build:\n      context: .\n      shm_size: 2m\n  bytes:\n    build:\n      context: .\n      shm_size: 3145728\n',
      Dockerfile: 'FROM busybox\nRUN df -k /dev/shm | tail -n 1 > /shm\n',
    });
    const r = await tsbuild(['compose', 'build', '--progress', 'plain'], { root, cwd: dir });
    expect(r.stderr).not.toMatch(/shm_size is not applied/);
    expect(r.code).toBe(0);
    const size = async (image: string) => Number((await tsbuild(['run', image, 'cat', '/shm'], { root })).stdout.trim().split(/\s+/)[1]);
    expect(await size('shm-small')).toBe(2048);
    expect(await size('shm-bytes')).toBe(3072);
    await fs.writeFile(path.join(dir, 'compose.yaml'), 'services:\n  small:\n    build:\n      context: .\n      shm_size: lots\n');
    const bad = await tsbuild(['compose', 'build'], { root, cwd: dir });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/lots/);
    expect(bad.stderr).not.toMatch(/\n\s+at /);
  });

  it('reports bad projects with a code and the place, never a stack trace', async () => {
    const cases: Array<[Record<string, string>, RegExp, string[]?]> = [
      [{ 'compose.yaml': 'services:\n  web:\n    build: .\n     image: x\n' }, /compose\.yaml:3:12: invalid YAML/],
      [{ 'compose.yaml': 'services: {web: {image: x}}\nvolume: {}\n' }, /unknown top-level key "volume"/],
      [{ 'compose.yaml': 'services: {web: {ports: ["80"]}}\n' }, /service "web" has neither an image nor a build section/],
      [{ 'compose.yaml': 'services: {web: {image: "${REGISTRY:?set REGISTRY to your registry host}/web"}}\n' }, /required variable REGISTRY is missing a value: set REGISTRY to your registry host/],
      [
        { 'compose.yaml': 'services:\n  a: {build: {context: ., additional_contexts: {b: "service:b"}}}\n  b: {build: {context: ., additional_contexts: {a: "service:a"}}}\n', Dockerfile: 'FROM busybox\n' },
        /services use each other's images as build contexts in a cycle: (a -> b -> a|b -> a -> b)/,
        ['build'],
      ],
      [{ 'compose.yaml': 'services:\n  a: {build: {context: ., dockerfile: /etc/passwd}}\n' }, /the Dockerfile \/etc\/passwd is outside the build context and the project directory/, ['build']],
    ];
    let n = 0;
    for (const [files, message, cmd = ['config']] of cases) {
      const dir = path.join(work, `bad-${n++}`);
      await writeTree(dir, files);
      const r = await tsbuild(['compose', ...cmd], { root, cwd: dir });
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });
});

describe('tsbuild compose config', () => {
  it('prints the resolved model, service names and image names', async () => {
    const dir = path.join(work, 'shop-config');
    await shopProject(dir);
    const json = await tsbuild(['compose', 'config', '--format', 'json'], { root, cwd: dir, env: { LOG_LEVEL: 'warn' } });
    expect(json.code).toBe(0);
    const model = JSON.parse(json.stdout) as { name: string; services: Record<string, any> };
    expect(model.name).toBe('shop-config');
    expect(model.services.api.environment).toEqual({ DB: 'postgres://db/shop', LOG_LEVEL: 'debug', REGION: 'eu' });
    expect(model.services.worker.environment).toEqual({ FROM_COMMON: 'yes', LOG_LEVEL: 'warn', REGION: 'eu' });
    expect(model.services.api.build.args).toEqual({ VERSION: '1.4.2', GREETING: 'hello from .env' });
    const services = await tsbuild(['compose', 'config', '--services'], { root, cwd: dir });
    expect(services.stdout).toBe('api\nbase\ncache\ndb\nworker\n');
    const images = await tsbuild(['compose', '-p', 'othername', 'config', '--images'], { root, cwd: dir });
    expect(images.code, images.stderr).toBe(0);
    expect(images.stdout).toBe('othername-api\nshop/base:1.4.2\nredis:7\npostgres:16\nothername-worker\n');
  });

  it('resolves a multi-file project as docker-compose config does', async () => {
    const dockerCompose = await requireTool('docker-compose');
    const dir = path.join(work, 'shop-oracle');
    await shopProject(dir);
    // docker-compose 1.29 predates build.additional_contexts and rejects the file with it.
    const file = path.join(dir, 'compose.yaml');
    const text = await fs.readFile(file, 'utf8');
    expect(text).toContain('      additional_contexts:\n        base: service:base\n');
    await fs.writeFile(file, text.replace('      additional_contexts:\n        base: service:base\n', ''));
    const env = { LOG_LEVEL: 'warn', VERSION: '2.0.0' };
    const files = ['-f', 'compose.yaml', '-f', 'compose.override.yaml'];
    const theirs = parse((await tool(dockerCompose, [...files, 'config'], { cwd: dir, env })).stdout) as { services: Record<string, any> };
    const r = await tsbuild(['compose', ...files, 'config'], { root, cwd: dir, env });
    expect(r.code, r.stderr).toBe(0);
    const ours = parse(r.stdout) as { services: Record<string, any> };
    expect(Object.keys(ours.services).sort()).toEqual(Object.keys(theirs.services).sort());
    for (const [name, svc] of Object.entries(ours.services)) {
      // Known shape differences of compose v1 (docker-compose 1.29) against v2, which we follow:
      // v2 attaches every service to the default network (`networks: {default: null}`), v1 prints nothing;
      delete svc.networks;
      // v2 prints the default `dockerfile: Dockerfile`, v1 only a dockerfile that was set;
      if (svc.build?.dockerfile === 'Dockerfile' && theirs.services[name].build?.dockerfile === undefined) delete svc.build.dockerfile;
      // ports: v2 writes every port long-form {mode, host_ip, target, published: "N", protocol};
      // v1 writes {published: N, target} and keeps a port with a host IP as its short string.
      // v1 also reorders merged ports (the spec appends); the order of published ports means nothing to a build.
      for (const s of [svc, theirs.services[name]]) if (s.ports) s.ports = s.ports.map(portText).sort();
      // volumes: v2 writes the long form {type, source, target, read_only, bind|volume}; v1 the
      // short string with an absolute source and an explicit mode, sorted;
      for (const s of [svc, theirs.services[name]]) if (s.volumes) s.volumes = s.volumes.map(volumeText).sort();
      // depends_on: both write the long form; v2 adds `required: true` (a v2-only attribute).
      if (svc.depends_on) for (const d of Object.values(svc.depends_on) as Array<Record<string, unknown>>) if (d.required === true) delete d.required;
      expect(svc, name).toEqual(theirs.services[name]);
    }
    // Resolutions both made, checked by value so the comparison above cannot pass on empty models.
    expect(theirs.services.api.image).toBeUndefined();
    expect(theirs.services.base.image).toBe('shop/base:2.0.0');
    expect(theirs.services.api.environment.LOG_LEVEL).toBe('debug');
    expect(theirs.services.api.command).toEqual(['serve', '--inspect']);
    expect(theirs.services.worker.dns).toEqual(['1.1.1.1', '9.9.9.9']);
    expect(theirs.services.api.build.args).toEqual({ VERSION: '2.0.0', GREETING: 'hello from .env' });
    expect(theirs.services.db.volumes).toContain(`${dir}/initdb:/docker-entrypoint-initdb.d:ro`);
    expect(theirs.services.cache.depends_on).toEqual({ db: { condition: 'service_started' } });
    expect(theirs.services.cache.environment).toEqual({ MAXMEMORY: '64mb', POLICY: 'allkeys-lru' });
  });
});

/** One volume as `SOURCE:TARGET:MODE`, from either compose version's form. */
function volumeText(v: unknown): string {
  if (typeof v === 'string') {
    const [source, target, mode] = v.split(':');
    return target === undefined ? `:${source}:rw` : `${source}:${target}:${mode ?? 'rw'}`;
  }
  const o = v as Record<string, unknown>;
  return `${String(o.source ?? '')}:${String(o.target)}:${o.read_only ? 'ro' : 'rw'}`;
}

/** One port mapping as `IP:PUBLISHED:TARGET/PROTOCOL`, from either compose version's form. */
function portText(p: unknown): string {
  if (typeof p === 'string') {
    const [spec, proto = 'tcp'] = p.split('/');
    const parts = spec!.split(':');
    const target = parts.pop();
    const published = parts.pop() ?? '';
    return `${parts.join(':')}:${published}:${target}/${proto}`;
  }
  const o = p as Record<string, unknown>;
  return `${String(o.host_ip ?? '')}:${String(o.published ?? '')}:${String(o.target)}/${String(o.protocol ?? 'tcp')}`;
}

describe('tsbuild compose push', () => {
  let reg: RunningRegistry;
  beforeAll(async () => {
    reg = await startRegistry({ mode: { kind: 'open' } });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('pushes the services\' images with build --push and with push', async () => {
    const dir = path.join(work, 'pushed');
    await writeTree(dir, {
      'compose.yaml': `services:
  app:
    build:
      context: .
      tags: ["\${REG}/shop/app:extra"]
    image: \${REG}/shop/app:\${TAG:-dev}
  tool:
    build:
      context: .
      dockerfile_inline: |
        FROM busybox
        RUN echo tool > /tool
    image: \${REG}/shop/tool:1
  db:
    image: \${REG}/shop/postgres:16
`,
      Dockerfile: 'FROM busybox\nRUN echo app > /app\n',
    });
    const env = { REG: reg.host };
    const built = await tsbuild(['compose', 'build', '--push', '--progress', 'plain'], { root, cwd: dir, env });
    expect(built.stderr).not.toMatch(/error/i);
    expect(built.code).toBe(0);
    for (const ref of ['shop/app:dev', 'shop/app:extra', 'shop/tool:1']) {
      const inspected = JSON.parse((await tool('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/${ref}`])).stdout) as { Layers: string[] };
      expect(inspected.Layers, ref).toHaveLength(2);
    }
    // `compose push` pushes what the store holds under the services' names (a new TAG here).
    const tagged = await tsbuild(['tag', `${reg.host}/shop/tool:1`, `${reg.host}/shop/tool:2`], { root });
    expect(tagged.code, tagged.stderr).toBe(0);
    await fs.writeFile(path.join(dir, 'compose.override.yaml'), 'services:\n  tool:\n    image: ${REG}/shop/tool:2\n');
    const pushed = await tsbuild(['compose', 'push', 'tool'], { root, cwd: dir, env });
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.stdout).toMatch(new RegExp(`^tool ${reg.host.replace(/\./g, '\\.')}/shop/tool:2@sha256:[0-9a-f]{64}\\n$`));
    const { stdout } = await tool('skopeo', ['inspect', '--tls-verify=false', `docker://${reg.host}/shop/tool:2`]);
    expect((JSON.parse(stdout) as { Layers: string[] }).Layers).toHaveLength(2);
    // A service that is not built and not in the store: named, with the service.
    const missing = await tsbuild(['compose', 'push', 'db'], { root, cwd: dir, env });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/service "db": .*shop\/postgres:16/);
  });
});
