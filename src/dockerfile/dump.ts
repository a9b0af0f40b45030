/**
 * BuildKit's parse-tree dump (parser.Node.Dump, printed by the dumper), the format the
 * conformance suite records: one `(keyword ["--flag"...] "arg"...)` line per instruction,
 * strings quoted like Go's strconv.Quote. testdata/conformance/parser/FORMAT.md, sections 1-2.
 */
import { goQuote, trimSpaceText } from './go-text.js';
import type { Node, ParsedDockerfile } from './parser.js';

/** One instruction without the outer parentheses; ONBUILD nests its trigger in parentheses. */
function dumpNode(node: Node): string {
  const chain: Node[] = [];
  for (let n: Node | undefined = node; n !== undefined; n = n.next) chain.push(n);
  let inner = '';
  // Built from the innermost trigger outwards: ONBUILD chains can be thousands deep.
  for (let i = chain.length - 1; i >= 0; i--) {
    const n = chain[i] as Node;
    let s = n.keyword;
    if (n.flags.length > 0) s += ` [${n.flags.map(goQuote).join(' ')}]`;
    if (i < chain.length - 1) {
      s += ` (${inner})`;
    } else {
      for (const arg of n.args) s += ` ${goQuote(arg)}`;
    }
    // Go trims each node's dump (it matters for an empty keyword: `("")`).
    inner = trimSpaceText(s);
  }
  return inner;
}

/** The whole dump: one line per instruction, ending with a newline. */
export function dumpDockerfile(parsed: ParsedDockerfile): string {
  let out = '';
  for (const child of parsed.children) out += `(${dumpNode(child)})\n`;
  return out;
}
