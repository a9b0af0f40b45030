import { readFileSync } from 'node:fs';
import { SourceMap, type SourceMapPayload } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** `file:///.../x.js:LINE:COLUMN` (ES modules) or `/.../x.cjs:LINE:COLUMN` in a V8 stack frame. */
const FRAME = /((?:file:\/\/)?\/[^\s()]+?\.[cm]?js):(\d+):(\d+)/g;

/**
 * Rewrites the frames of a stack trace that point into compiled JavaScript with a linked
 * source map (`x.js` next to `x.js.map`: the bundle dist/cmd/tsbuild-bundle.cjs or tsc's dist/src/**) to
 * the TypeScript line they came from; other frames stay as they are.
 *
 * Node applies source maps itself only with --enable-source-maps from the start, which
 * parses every map while the CLI loads; an internal error is rare, so its stack is mapped
 * here, when it is rendered.
 */
export function sourceMappedStack(stack: string): string {
  const maps = new Map<string, SourceMap | undefined>();
  const mapFor = (url: string): SourceMap | undefined => {
    if (!maps.has(url)) {
      let map: SourceMap | undefined;
      try {
        map = new SourceMap(JSON.parse(readFileSync(`${fileURLToPath(url)}.map`, 'utf8')) as SourceMapPayload);
      } catch {
        map = undefined; // no map, or one we cannot read: keep the compiled position
      }
      maps.set(url, map);
    }
    return maps.get(url);
  };
  return stack.replace(FRAME, (frame, file: string, line: string, column: string) => {
    const url = file.startsWith('file:') ? file : pathToFileURL(file).href;
    const entry = mapFor(url)?.findEntry(Number(line) - 1, Number(column) - 1);
    if (!entry || !('originalSource' in entry) || typeof entry.originalSource !== 'string') return frame;
    let source: string;
    try {
      source = fileURLToPath(new URL(entry.originalSource, url));
    } catch {
      return frame;
    }
    return `${source}:${entry.originalLine + 1}:${entry.originalColumn + 1}`;
  });
}
