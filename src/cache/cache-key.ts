import { canonicalJson, Digester, plainJsonBody, plainJsonString, type Digest } from '../oci/index.js';

declare const cacheKeyBrand: unique symbol;

/**
 * The cache key of a step: a sha256 digest over its key inputs (cacheKeyFor). Branded so that a
 * layer digest or a manifest digest cannot be passed where a key is meant.
 */
export type CacheKey = Digest & { readonly [cacheKeyBrand]: true };

/**
 * The identity of a stage's state: `scratch`, `image:<manifest digest>` for a stage FROM an
 * image (or the files of an image, for COPY --from), or the key of the last step.
 */
export type StateKey = CacheKey | 'scratch' | `image:${Digest}`;

/** The state key of a stage FROM an image, by the image's manifest digest. */
export function imageStateKey(manifest: Digest): StateKey {
  return `image:${manifest}`;
}

/**
 * One destination entry of a COPY/ADD: path and metadata, and for files the content digest.
 * mtimes are left out on purpose: a touched but unchanged file must not miss the cache.
 */
export interface CopiedEntry {
  readonly path: string;
  readonly type: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly linkTarget?: string | undefined;
  readonly content?: Digest | undefined;
}

/** A source a COPY/ADD reads besides the context: where its files come from, by identity. */
export type CopySource =
  /** COPY --from a stage or image: the key of that state. */
  | { readonly kind: 'state'; readonly key: StateKey }
  /** ADD <url>, copied as downloaded. */
  | { readonly kind: 'url'; readonly url: string; readonly digest: string }
  /** ADD --unpack=true <url>: the archive's contents. */
  | { readonly kind: 'url-unpacked'; readonly url: string; readonly digest: string }
  /** ADD <git URL>: the remote (credentials redacted), the commit checked out, the subdirectory, --keep-git-dir. */
  | { readonly kind: 'git'; readonly remote: string; readonly commit: string; readonly subdir: string; readonly keepGitDir: boolean }
  /** ADD of a local archive, unpacked: its context path and content digest. */
  | { readonly kind: 'archive'; readonly path: string; readonly digest: string };

/** What a RUN step's mounts expose, by identity (never a secret or an ssh socket). */
export type MountSource =
  /** --mount=type=bind,from=STAGE|IMAGE: the key of that state (undefined: scratch). */
  | { readonly kind: 'bind-state'; readonly key: StateKey | undefined }
  /** --mount=type=bind from the context: the source path and the digest of its tree. */
  | { readonly kind: 'bind-context'; readonly path: string; readonly digest: string }
  /** `--add-host` entries, in the order given (BuildKit keeps ExtraHosts in the ExecOp's key). */
  | { readonly kind: 'extra-hosts'; readonly hosts: ReadonlyArray<{ readonly host: string; readonly ip: string }> };

export type StepKind = 'COPY' | 'ADD' | 'RUN' | 'WORKDIR' | 'SEAL' | 'LINK' | 'ENV' | 'LABEL' | 'ARG' | 'USER' | 'VOLUME' | 'EXPOSE' | 'STOPSIGNAL' | 'CMD' | 'ENTRYPOINT' | 'SHELL' | 'HEALTHCHECK' | 'ONBUILD' | 'MAINTAINER';

/**
 * What a step's result can depend on. A key changes exactly when the result could change
 * (DESIGN.md "Cache keys"): the parent key, the instruction after expansion, the build args
 * and env the step can see, the identity of what it reads, the platform. Never timestamps of
 * the context and never secrets: callers must not put them here.
 */
export interface StepKeyInputs {
  /** Key of the state the step starts from. */
  readonly parent: StateKey;
  readonly kind: StepKind;
  /** The instruction after expansion, in a stable textual form (the plan's key text). */
  readonly instruction: string;
  /** Values the step can observe that are not in the instruction text (env, visible args). */
  readonly visible?: Readonly<Record<string, string>> | undefined;
  /** COPY/ADD: sources besides the context (another state, downloads, unpacked archives). */
  readonly sources?: readonly CopySource[];
  /** SEAL: the layers of the image, bottom first. */
  readonly layers?: readonly Digest[];
  /** SOURCE_DATE_EPOCH: it changes layer bytes (mtimes are clamped). */
  readonly epoch?: number | undefined;
  /** RUN: what its mounts expose. */
  readonly mounts?: readonly MountSource[];
  /**
   * RUN: `--shm-size` and `--ulimit` (BuildKit keys an ExecOp on its /dev/shm size and its
   * ulimits); absent when the flags are not given, so a build without them keeps its keys.
   */
  readonly resources?: { readonly shmSize?: number | undefined; readonly ulimits?: ReadonlyArray<{ readonly name: string; readonly soft: number; readonly hard: number }> | undefined } | undefined;
  /** COPY/ADD: every destination entry, iterated once (20,000 of them for a big context). */
  readonly entries?: Iterable<CopiedEntry>;
  /** e.g. linux/amd64 */
  readonly platform: string;
}

/**
 * Version of the key scheme: bump when the meaning or the encoding of any field changes (every
 * key of every user's cache changes with it).
 */
export const KEY_SCHEME = 'tsbuild-cache-v1';

/**
 * The cache key of a step: sha256 over a canonical JSON document of named fields. Pure.
 *
 * Scheme v1 document: `{inputs, instruction, kind, parent, platform, scheme, visible}` where
 * `inputs` lists, in this order: the sources (`root:<key>`, then `group:url:<url>:<digest>`,
 * `group:url-unpacked:...`, `group:archive:<path>:<digest>`), the layers' diff IDs, the epoch
 * (`epoch:<n>`; the seal writes `epoch:` even without one), the mounts (`bind-from:<key>`,
 * `bind-context:<path>:<digest>`, `extra-hosts:<name>=<ip>,...`), the resources (`shm-size:<n>`,
 * `ulimits:<name>=<soft>:<hard>,...`), then one string per copied entry. These are the strings
 * earlier releases wrote; they are made here only, from typed inputs.
 */
export function cacheKeyFor(input: StepKeyInputs): CacheKey {
  const doc = keyJson({
    scheme: KEY_SCHEME,
    parent: input.parent,
    kind: input.kind,
    instruction: input.instruction,
    visible: input.visible ?? {},
    inputs: [],
    platform: input.platform,
  });
  // The inputs (one per copied file for a COPY) are hashed one by one into their place in the
  // document rather than joined into one string first. "inputs" sorts first among the keys, so
  // the document starts with it.
  if (!doc.startsWith(`${INPUTS_HEAD}]`)) throw new Error('cacheKeyFor: "inputs" must be the first key of the key document');
  // Hashed in batches of about 64 KB of text: a hash update and a Buffer per input cost more
  // than the hashing for the 20,000 entries of a big COPY.
  const d = new Digester();
  let batch = INPUTS_HEAD;
  let first = true;
  for (const value of encodeInputs(input)) {
    batch += first ? plainJsonString(value) : `,${plainJsonString(value)}`;
    first = false;
    if (batch.length >= 65536) {
      d.update(Buffer.from(batch, 'utf8'));
      batch = '';
    }
  }
  for (const e of input.entries ?? []) {
    batch += first ? quotedEntry(e) : `,${quotedEntry(e)}`;
    first = false;
    if (batch.length >= 65536) {
      d.update(Buffer.from(batch, 'utf8'));
      batch = '';
    }
  }
  d.update(Buffer.from(batch + doc.slice(INPUTS_HEAD.length), 'utf8'));
  return d.digest() as CacheKey;
}

/**
 * The state after a layer made without its parent (COPY/ADD --link: BuildKit's MergeOp of the
 * state and a copy onto scratch). The layer is looked up by its own key, which the layers below
 * do not change; the state after it is keyed by both, so the steps that follow still depend on
 * everything below.
 */
export function linkedStateKey(parent: StateKey, layer: CacheKey, platform: string): CacheKey {
  return cacheKeyFor({ parent, kind: 'LINK', instruction: '', sources: [{ kind: 'state', key: layer }], platform });
}

const INPUTS_HEAD = '{"inputs":[';

/** The key document's bytes: canonical JSON without Go's HTML escapes (scheme v1 never had them). */
function keyJson(value: unknown): string {
  return canonicalJson(value, { htmlSafe: false }).toString('utf8');
}

function* encodeInputs(input: StepKeyInputs): Generator<string> {
  for (const s of input.sources ?? []) {
    switch (s.kind) {
      case 'state':
        yield `root:${s.key}`;
        break;
      case 'url':
        yield `group:url:${s.url}:${s.digest}`;
        break;
      case 'url-unpacked':
        yield `group:url-unpacked:${s.url}:${s.digest}`;
        break;
      case 'archive':
        yield `group:archive:${s.path}:${s.digest}`;
        break;
      case 'git':
        yield `group:git:${s.remote}@${s.commit}:${s.subdir}:keep-git-dir=${s.keepGitDir}`;
        break;
      default:
        s satisfies never;
    }
  }
  yield* input.layers ?? [];
  if (input.kind === 'SEAL') yield `epoch:${input.epoch ?? ''}`;
  else if (input.epoch !== undefined) yield `epoch:${input.epoch}`;
  for (const m of input.mounts ?? []) {
    switch (m.kind) {
      case 'bind-state':
        yield `bind-from:${m.key ?? 'scratch'}`;
        break;
      case 'bind-context':
        yield `bind-context:${m.path}:${m.digest}`;
        break;
      case 'extra-hosts':
        yield `extra-hosts:${m.hosts.map((h) => `${h.host}=${h.ip}`).join(',')}`;
        break;
      default:
        m satisfies never;
    }
  }
  const r = input.resources;
  if (r?.shmSize !== undefined) yield `shm-size:${r.shmSize}`;
  if (r?.ulimits && r.ulimits.length > 0) yield `ulimits:${r.ulimits.map((u) => `${u.name}=${u.soft}:${u.hard}`).join(',')}`;
}

/**
 * A copied entry's input string, `path NUL type NUL mode NUL uid:gid NUL link NUL content`, as
 * plainJsonString writes it, each part quoted on its own (NUL is `\u0000` in JSON).
 */
function quotedEntry(e: CopiedEntry): string {
  // A Digest is plain ASCII (checked when it was made): written as it is.
  const link = e.linkTarget === undefined || e.linkTarget === '' ? '' : plainJsonBody(e.linkTarget);
  return `"${plainJsonBody(e.path)}\\u0000${plainJsonBody(e.type)}\\u0000${e.mode.toString(8)}\\u0000${e.uid}:${e.gid}\\u0000${link}\\u0000${e.content ?? ''}"`;
}
