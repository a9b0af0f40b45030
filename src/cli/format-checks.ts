/**
 * `tsbuild build --check` output, in buildx's shape: a summary line, then per finding the
 * check's name and URL, its description, the message, `file:line` and the lines around it.
 */
import type { CheckReport } from '../dockerfile/index.js';

const CONTEXT_LINES = 2;

export function formatCheckReport(report: CheckReport, dockerfileText: string): string {
  const lines = dockerfileText.split(/\r?\n/);
  if (lines[lines.length - 1] === '') lines.pop();
  const n = report.hits.length;
  const out: string[] = [n === 0 ? 'Check complete, no warnings found.' : `Check complete, ${n} warning${n === 1 ? ' has' : 's have'} been found!`];
  for (const name of report.unknownNames) out.push(`WARNING: # check= names ${JSON.stringify(name)}, which is no build check: it is ignored`);
  for (const h of report.hits) {
    const { startLine, endLine, file } = h.location;
    out.push('', `WARNING: ${h.rule.name} - ${h.rule.url}`, h.rule.description, h.advice ? `${h.message}: ${h.advice}` : h.message, `${file}:${startLine}`, '--------------------');
    const from = Math.max(1, startLine - CONTEXT_LINES);
    const to = Math.min(lines.length, endLine + CONTEXT_LINES);
    const width = String(to).length + 3;
    for (let i = from; i <= to; i++) {
      const mark = i >= startLine && i <= endLine ? '>>> ' : '    ';
      out.push(`${String(i).padStart(width)} | ${mark}${lines[i - 1] ?? ''}`);
    }
    out.push('--------------------');
  }
  return `${out.join('\n')}\n`;
}
