import { Digester, type Digest } from '../oci/index.js';
import { canonicalKeyJson } from './key-json.js';

/**
 * What a step's result can depend on. A key changes exactly when the result could change
 * (DESIGN.md "Cache keys"): the parent key, the instruction after expansion, the build
 * args and env the step can see, the digests of its inputs (content and metadata of copied
 * files, the key of a source stage), the platform. Never timestamps of the context and
 * never secrets: callers must not put them here.
 */
export interface StepKeyInput {
  /** Key of the state the step starts from (base image digest or previous step key). */
  readonly parent: string;
  /** Instruction kind, e.g. COPY. */
  readonly kind: string;
  /** The instruction after expansion, in a stable textual form. */
  readonly instruction: string;
  /** Values the step can observe that are not in the instruction text (env, visible args). */
  readonly visible?: Readonly<Record<string, string>>;
  /** Digests of inputs: context content, source stage keys, fetched URLs. Iterated once. */
  readonly inputs?: Iterable<string>;
  /** e.g. linux/amd64 */
  readonly platform: string;
}

/** Version of the key scheme: bump when the meaning of any field changes. */
const KEY_SCHEME = 'tsbuild-cache-v1';

/**
 * The cache key of a step: sha256 over a canonical JSON document of its inputs. Pure.
 * Fields are named, not printed loosely into a hash (STYLE.md warns against that).
 */
export function cacheKeyFor(input: StepKeyInput): Digest {
  const doc = canonicalKeyJson({
    scheme: KEY_SCHEME,
    parent: input.parent,
    kind: input.kind,
    instruction: input.instruction,
    visible: input.visible ?? {},
    inputs: [],
    platform: input.platform,
  });
  // The inputs (one per copied file for a COPY: 20,000 of them for a big context) are hashed
  // one by one into their place in the document rather than joined into one string first.
  // "inputs" sorts first among the keys, so the document starts with it.
  if (!doc.startsWith(`${INPUTS_HEAD}]`)) throw new Error('cacheKeyFor: "inputs" must be the first key of the key document');
  const d = new Digester();
  d.update(Buffer.from(INPUTS_HEAD));
  let first = true;
  for (const value of input.inputs ?? []) {
    d.update(Buffer.from(first ? JSON.stringify(value) : `,${JSON.stringify(value)}`));
    first = false;
  }
  d.update(Buffer.from(doc.slice(INPUTS_HEAD.length)));
  return d.digest();
}

const INPUTS_HEAD = '{"inputs":[';
