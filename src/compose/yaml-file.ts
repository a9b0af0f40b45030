import { isMap, isScalar, isSeq, parseDocument, Scalar, visit, YAMLMap, type Node } from 'yaml';
import { TsbuildError } from '../errors.js';

/**
 * `!reset` and `!override` (Compose Specification, merge page): `!reset` removes what earlier
 * files set for a key, `!override` replaces it instead of merging. They survive YAML-to-JS
 * conversion as these markers and are consumed by mergeComposeFiles.
 */
export const RESET = Symbol('compose !reset');
export class Override {
  constructor(readonly value: unknown) {}
}

// Sentinels placed in the YAML tree before conversion, as the yaml package has no hook that
// keeps a node's tag in the JS value. Neither can appear in a user's file (a NUL in a key).
const RESET_TEXT = '\u0000tsbuild:reset';
const OVERRIDE_KEY = '\u0000tsbuild:override';

/**
 * Parses one compose file: YAML 1.2 with merge keys (`<<:`), anchors and aliases, and the
 * compose tags. A syntax error names the file, line and column.
 */
export function parseComposeYaml(text: string, file: string): unknown {
  const doc = parseDocument(text, { merge: true, prettyErrors: true, uniqueKeys: true, strict: true });
  const first = doc.errors[0];
  if (first) {
    const pos = first.linePos?.[0];
    const where = pos ? `${file}:${pos.line}:${pos.col}` : file;
    throw new TsbuildError('COMPOSE_SYNTAX', `${where}: invalid YAML: ${first.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`, {
      hint: 'fix the YAML syntax at that place (indentation, quotes, a missing colon)',
    });
  }
  visit(doc, {
    Node(_key, node: Node) {
      if (node.tag === '!reset') return new Scalar(RESET_TEXT);
      if (node.tag === '!override' && (isMap(node) || isSeq(node) || isScalar(node))) {
        node.tag = undefined;
        const wrap = new YAMLMap();
        wrap.set(OVERRIDE_KEY, node);
        return wrap;
      }
      return undefined;
    },
  });
  return unwrap(doc.toJS({ maxAliasCount: 10_000 }));
}

function unwrap(v: unknown): unknown {
  if (v === RESET_TEXT) return RESET;
  if (Array.isArray(v)) return v.map(unwrap);
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && keys[0] === OVERRIDE_KEY) return new Override(unwrap(o[OVERRIDE_KEY]));
    const out: Record<string, unknown> = {};
    for (const k of keys) out[k] = unwrap(o[k]);
    return out;
  }
  return v;
}
