import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { repoRoot, storeWithBusybox, tempDir, tool, writeTree } from './support/cli.js';
import { startRegistry, type RunningRegistry } from './support/registry.js';
import { startTokenIssuer, type TokenIssuer } from './support/token-issuer.js';

// The GitHub Action run as the runner runs it: `node dist/cmd/action.cjs` (action.yml's
// runs.main) with inputs as INPUT_* variables, a GITHUB_OUTPUT file, stdin closed, and the
// registry login docker/login-action leaves behind ($DOCKER_CONFIG/config.json). The push
// goes to the real registry behind token auth; skopeo, not tsbuild, reads it back.
let work: string;
let root: string;
let issuer: TokenIssuer;
let reg: RunningRegistry;
let dockerConfig: string;
const PASSWORD = 'pw-action-s3cret';
const SECRET = 'very-secret-value-42';

beforeAll(async () => {
  work = await tempDir('action');
  root = path.join(work, 'store');
  await storeWithBusybox(root);
  issuer = await startTokenIssuer({ dir: work, users: { ci: PASSWORD }, acl: (user) => (user === 'ci' ? ['pull', 'push'] : []) });
  reg = await startRegistry({ mode: { kind: 'token', realm: issuer.realm, service: issuer.service, issuer: issuer.issuer, rootCertBundle: issuer.rootCertBundle } });
  // What docker/login-action writes (through `docker login`).
  dockerConfig = path.join(work, 'docker');
  await writeTree(dockerConfig, { 'config.json': JSON.stringify({ auths: { [reg.host]: { auth: Buffer.from(`ci:${PASSWORD}`).toString('base64') } } }) });
});
afterAll(async () => {
  await reg?.stop();
  await issuer?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

interface ActionRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Inputs by their action.yml names: INPUT_<NAME upper-cased, spaces to underscores>, as @actions/core reads them. */
function runAction(inputs: Record<string, string>, extraEnv: Record<string, string | undefined>): Promise<ActionRun> {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: path.join(work, 'home'), TSBUILD_ROOT: root, DOCKER_CONFIG: dockerConfig, REGISTRY_AUTH_FILE: '', GITHUB_ACTIONS: 'true', ...extraEnv };
  for (const [k, v] of Object.entries(inputs)) env[`INPUT_${k.replace(/ /g, '_').toUpperCase()}`] = v;
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repoRoot, 'dist', 'cmd', 'action.cjs')], { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Reads the GITHUB_OUTPUT file: `name<<DELIM\nvalue\nDELIM` entries (the runner's parser, in small). */
function parseOutputFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = /^([^<=]+)<<(.+)$/.exec(lines[i]!);
    if (!m) {
      if (lines[i] !== '') throw new Error(`not a GITHUB_OUTPUT entry: ${lines[i]}`);
      continue;
    }
    const end = lines.indexOf(m[2]!, i + 1);
    if (end < 0) throw new Error(`no closing delimiter for ${m[1]}`);
    out[m[1]!] = lines.slice(i + 1, end).join('\n');
    i = end;
  }
  return out;
}

describe('the GitHub Action', () => {
  it('declares docker/build-push-action\'s inputs and runs the bundled file on node20', async () => {
    const action = parseYaml(await fs.readFile(path.join(repoRoot, 'action.yml'), 'utf8')) as { runs: { using: string; main: string }; inputs: Record<string, unknown>; outputs: Record<string, unknown> };
    expect(action.runs).toEqual({ using: 'node20', main: 'dist/cmd/action.cjs' });
    expect(Object.keys(action.inputs).sort()).toEqual(
      ['context', 'file', 'tags', 'build-args', 'target', 'push', 'load', 'outputs', 'cache-from', 'cache-to', 'platforms', 'labels', 'secrets', 'secret-files', 'no-cache', 'pull'].sort(),
    );
    expect(Object.keys(action.outputs).sort()).toEqual(['digest', 'imageid', 'metadata']);
    await fs.access(path.join(repoRoot, action.runs.main));
  });

  it('builds and pushes with the login config, writes imageid, digest and metadata, and folds steps into groups', async () => {
    const ctx = path.join(work, 'ctx');
    await writeTree(ctx, {
      Dockerfile: 'FROM busybox\nARG GREETING\nCOPY hello.txt /hello.txt\nRUN --mount=type=secret,id=token test "$(wc -c < /run/secrets/token)" -eq 20 && echo "$GREETING" > /greeting && echo "::set-output name=imageid::forged"\n',
      'hello.txt': 'hello from the action\n',
    });
    const outputFile = path.join(work, 'github-output');
    await fs.writeFile(outputFile, '');
    const name = `${reg.host}/ci/app:1`;
    const r = await runAction(
      { context: 'ctx', tags: `${name}, ${reg.host}/ci/app:latest`, 'build-args': 'GREETING=hi there', labels: 'org.opencontainers.image.source=https://example.test/repo\nteam=ci', push: 'true', secrets: `token=${SECRET}`, 'no-cache': 'false' },
      { GITHUB_OUTPUT: outputFile },
    );
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const outputs = parseOutputFile(await fs.readFile(outputFile, 'utf8'));
    expect(Object.keys(outputs).sort()).toEqual(['digest', 'imageid', 'metadata']);
    expect(outputs.imageid).toMatch(/^sha256:[0-9a-f]{64}$/);
    const metadata = JSON.parse(outputs.metadata!) as Record<string, unknown>;
    expect(metadata['containerimage.config.digest']).toBe(outputs.imageid);
    expect(metadata['containerimage.digest']).toBe(outputs.digest);
    expect(metadata['image.name']).toBe(`${name},${reg.host}/ci/app:latest`);
    // The registry serves the pushed manifest under that digest, with the labels.
    const creds = ['--creds', `ci:${PASSWORD}`, '--tls-verify=false'];
    const inspected = JSON.parse((await tool('skopeo', ['inspect', ...creds, `docker://${name}`])).stdout) as { Digest: string; Labels: Record<string, string> };
    expect(inspected.Digest).toBe(outputs.digest);
    expect(inspected.Labels).toEqual({ 'org.opencontainers.image.source': 'https://example.test/repo', team: 'ci' });
    const config = JSON.parse((await tool('skopeo', ['inspect', '--config', ...creds, `docker://${name}`])).stdout) as { rootfs: { diff_ids: string[] } };
    expect(config.rootfs.diff_ids.length).toBeGreaterThan(1);
    // Progress: each step a group; the RUN step's output fenced so it cannot issue commands.
    expect(r.stdout).toMatch(/^::group::#\d+ \[\d\/\d\] RUN .* DONE \d+\.\ds$/m);
    // Why each step ran, on its line (a fresh store: nothing was built before).
    expect(r.stdout).toMatch(/^#\d+ \[\d\/\d\] COPY hello\.txt \/hello\.txt \(cache miss: no cache entry\) DONE \d+\.\ds$/m);
    const fence = /^::stop-commands::([0-9a-f-]+)$/m.exec(r.stdout)?.[1];
    expect(fence).toBeDefined();
    const fenced = r.stdout.slice(r.stdout.indexOf(`::stop-commands::${fence}`), r.stdout.indexOf(`::${fence}::`));
    expect(fenced).toContain('::set-output name=imageid::forged');
    expect(r.stdout.split('\n').filter((l) => l === '::endgroup::').length).toBe(r.stdout.split('\n').filter((l) => l.startsWith('::group::')).length);
    // The secret is masked before anything else, and appears nowhere but in that mask command.
    expect(r.stdout.split('\n')[0]).toBe(`::add-mask::${SECRET}`);
    expect((r.stdout + r.stderr).split(SECRET).length - 1).toBe(1);
    expect(r.stdout + r.stderr).not.toContain(PASSWORD);
  });

  it('fails clearly without GITHUB_OUTPUT, on bad lists and bad booleans, and names the Dockerfile line of a failed step', async () => {
    const ctx = path.join(work, 'ctx-bad');
    await writeTree(ctx, { Dockerfile: 'FROM busybox\nRUN exit 3\n' });
    const outputFile = path.join(work, 'github-output-bad');
    await fs.writeFile(outputFile, '');
    const cases: Array<{ inputs: Record<string, string>; env: Record<string, string | undefined>; want: RegExp }> = [
      { inputs: { context: 'ctx-bad' }, env: { GITHUB_OUTPUT: undefined }, want: /^::error title=tsbuild USAGE::GITHUB_OUTPUT is not set/m },
      { inputs: { context: 'ctx-bad', labels: 'team=ci\njust-a-word' }, env: { GITHUB_OUTPUT: outputFile }, want: /^::error title=tsbuild USAGE::input "labels": item 2 is not KEY=VALUE/m },
      { inputs: { context: 'ctx-bad', tags: 'app:1,"app:2' }, env: { GITHUB_OUTPUT: outputFile }, want: /^::error title=tsbuild USAGE::input "tags": unterminated quote/m },
      { inputs: { context: 'ctx-bad', tags: 'app:1,UPPER/Case:x' }, env: { GITHUB_OUTPUT: outputFile }, want: /^::error title=tsbuild REFERENCE_INVALID::/m },
      { inputs: { context: 'ctx-bad', push: 'yes' }, env: { GITHUB_OUTPUT: outputFile }, want: /^::error title=tsbuild USAGE::input "push" must be true or false/m },
      { inputs: { context: 'ctx-bad', secrets: 'no-equals-sign-here' }, env: { GITHUB_OUTPUT: outputFile }, want: /^::error title=tsbuild USAGE::input "secrets": item 1 is not KEY=VALUE/m },
      { inputs: { context: 'ctx-bad', 'cache-from': 'type=gha' }, env: { GITHUB_OUTPUT: outputFile }, want: /^::error title=tsbuild UNSUPPORTED::cache-from type=gha/m },
      { inputs: { context: 'ctx-bad', platforms: 'linux/amd64,linux/s390x/x/y' }, env: { GITHUB_OUTPUT: outputFile }, want: /^::error title=tsbuild USAGE::--platform: invalid platform "linux\/s390x\/x\/y"/m },
      { inputs: { context: 'ctx-bad' }, env: { GITHUB_OUTPUT: outputFile }, want: /^::error title=tsbuild BUILD_STEP_FAILED file=ctx-bad\/Dockerfile,line=2,endLine=2::/m },
    ];
    for (const c of cases) {
      const r = await runAction(c.inputs, c.env);
      expect(r.code, JSON.stringify(c.inputs)).toBe(1);
      expect(r.stdout, JSON.stringify(c.inputs)).toMatch(c.want);
      expect(r.stdout + r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
    // Nothing was written to GITHUB_OUTPUT by the failed runs.
    expect(await fs.readFile(outputFile, 'utf8')).toBe('');
  });
});
